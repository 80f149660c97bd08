"""Training precision and memory layout: speed of fp32, channels_last, bf16 autocast and both together, and
the test accuracy of fp32 against bf16 + channels_last, on this machine's CPU.

speed:    one training epoch through bench.train.loop.train_trial (batch 64, SGD, fp32 evaluation) of each lab
          net on real images, in the four modes; images/s of the epoch, median of --repeats rounds in which
          the modes alternate. Digits (1x8x8, all 1150 training images) and Fashion-MNIST (1x28x28, 2560
          images; 640 for the VGG-like net). Also shows what `--precision auto` (the default) picks and
          what it costs against the fastest mode.
accuracy: the same nets trained on Fashion-MNIST (the first 12000 training images, 6000 for the VGG-like
          net, 20% of them for validation; the full 10000-image test set), fp32 against bf16 + channels_last,
          the same seeds (--seeds; --vgg-seeds for the VGG-like net), best checkpoint by validation loss,
          measured in fp32. Reported: test accuracy per seed, the mean paired difference and the largest one.

    python benchmarks/precision.py [--part speed|accuracy|all] [--repeats 3] [--seeds 3] [--vgg-seeds 5]
                                   [--only cnn_vgg]

Writes the section "Precision" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from record import record

MODES = {
    "fp32": ("fp32", False),
    "fp32 + channels_last": ("fp32", True),
    "bf16": ("bf16", False),
    "bf16 + channels_last": ("bf16", True),
}
# (dataset, architecture, variant index, training images for the speed part)
SPEED_NETS = [
    ("digits", "cnn_baseline", 0, None),
    ("digits", "cnn_dropout", 1, None),
    ("digits", "cnn_dropout", 3, None),
    ("digits", "resnet", 0, None),
    ("fashion-mnist", "cnn_baseline", 0, 2560),
    ("fashion-mnist", "cnn_dropout", 3, 2560),
    ("fashion-mnist", "resnet", 0, 2560),
    ("fashion-mnist", "cnn_vgg", 0, 640),
]
# (architecture, variant index, training-set images, epochs, hyperparameters)
ACCURACY_NETS = [
    ("cnn_baseline", 0, 12000, 5, {}),
    ("cnn_dropout", 3, 12000, 4, {}),
    ("resnet", 0, 12000, 4, {}),
    ("cnn_vgg", 0, 6000, 3, {}),
]


def _train(data, arch, variant, splits, hp):
    from bench.data.splits import Normalizer
    from bench.train.loop import train_trial

    torch.manual_seed(hp.seed)
    model = arch.build(data.input_shape, data.num_classes, variant)
    with tempfile.TemporaryDirectory() as tmp:
        return train_trial(model, splits, Normalizer(data), hp, Path(tmp) / "best.pt", data.num_classes)


def speed(repeats: int) -> list[str]:
    from bench.data.splits import Split, Splits
    from bench.models.stats import count_flops
    from bench.options.hparams import HParams
    from bench.plugins.dataset_loading import load_dataset
    from bench.plugins.manager import get_registry
    from bench.train.precision import resolve_speed

    registry = get_registry()
    lines = [
        "### Speed: training images/s",
        "",
        f"One epoch, batch 64, SGD; median of {repeats} rounds, modes alternating. 'auto' is what the default "
        "`--precision auto` with channels_last on picks; 'auto / best' is its speed against the fastest mode.",
        "",
        "| data | net | MFLOPs/img | " + " | ".join(MODES) + " | auto picks | auto / fp32 | auto / best |",
        "| --- | --- | --- | " + " | ".join("---" for _ in MODES) + " | --- | --- | --- |",
    ]
    datasets = {}
    for ds, name, index, n in SPEED_NETS:
        data = datasets.setdefault(ds, load_dataset(ds))
        arch = registry.get(name)
        variant = arch.variants()[index]
        n = n or len(data.train) - 64
        tr, va = data.train, data.train
        splits = Splits(
            Split(tr.images[:n], tr.labels[:n]),
            Split(va.images[-64:], va.labels[-64:]),
            Split(data.test.images[:64], data.test.labels[:64]),
        )
        rates: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(repeats):
            for mode, (precision, cl) in MODES.items():
                hp = HParams(batch_size=64, lr=0.01, epochs=1, precision=precision, channels_last=cl)
                rates[mode].append(n / _train(data, arch, variant, splits, hp).history[0].time_s)
        med = {m: statistics.median(r) for m, r in rates.items()}
        model = arch.build(data.input_shape, data.num_classes, variant)
        auto = resolve_speed(HParams(), model, data.input_shape, torch.device("cpu"))
        picked = f"{auto.precision}{' + channels_last' if auto.channels_last else ''}"
        flops = count_flops(model, data.input_shape) / 1e6
        lines.append(
            f"| {ds} | {name} v{index} | {flops:.2f} | "
            + " | ".join(f"{med[m]:.0f}" for m in MODES)
            + f" | {picked} | {med[picked] / med['fp32']:.2f}x | {med[picked] / max(med.values()):.2f} |"
        )
        print(lines[-1], flush=True)
    return lines


def accuracy(seeds: int, vgg_seeds: int, only: list[str], previous: str) -> list[str]:
    from bench.data.splits import Split
    from bench.plugins.dataset_loading import load_dataset
    from bench.plugins.manager import get_registry
    from bench.train.loop import HParams

    registry = get_registry()
    data = load_dataset("fashion-mnist")
    lines = [
        "### Accuracy: fp32 against bf16 + channels_last",
        "",
        "Fashion-MNIST, full 10000-image test set; the plugin's optimizer and learning rate, batch 64; best epoch by "
        "validation loss, measured in fp32; the same seeds (0, 1, ...) for both. 'mean difference' is bf16 minus "
        "fp32 over the seeds, 'largest' the largest one seed showed.",
        "",
        "| net | train+val images, epochs | seeds | fp32 test % | bf16 + channels_last test % | mean difference | "
        "largest |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, index, n, epochs, extra in ACCURACY_NETS:
        if only and name not in only:  # keep this net's row from the last run
            kept = next((line for line in previous.splitlines() if line.startswith(f"| {name} v{index} |")), None)
            if kept:
                lines.append(kept)
            continue
        arch = registry.get(name)
        variant = arch.variants()[index]
        subset = replace(data, train=Split(data.train.images[:n], data.train.labels[:n]))
        acc: dict[str, list[float]] = {"fp32": [], "bf16": []}
        count = vgg_seeds if name == "cnn_vgg" else seeds
        for seed in range(count):
            splits = subset.split(0.2, seed)
            for key, (precision, cl) in {"fp32": ("fp32", False), "bf16": ("bf16", True)}.items():
                hp = HParams(
                    **{
                        **arch.defaults,
                        "epochs": epochs,
                        "batch_size": 64,
                        "seed": seed,
                        "precision": precision,
                        "channels_last": cl,
                        **extra,
                    }
                )
                result = _train(data, arch, variant, splits, hp)
                acc[key].append(100 * result.test_acc)
                print(name, index, seed, key, f"{100 * result.test_acc:.2f}", flush=True)
        diffs = [b - f for f, b in zip(acc["fp32"], acc["bf16"], strict=True)]
        lines.append(
            f"| {name} v{index} | {n}, {epochs} | {count} | {', '.join(f'{a:.2f}' for a in acc['fp32'])} | "
            f"{', '.join(f'{a:.2f}' for a in acc['bf16'])} | {statistics.mean(diffs):+.2f} | "
            f"{max(diffs, key=abs):+.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["speed", "accuracy", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--vgg-seeds", type=int, default=5, help="seeds for the VGG-like net (the slowest)")
    parser.add_argument("--only", default="", help="accuracy: redo these nets (comma-separated), keep the others")
    args = parser.parse_args()
    from bench.core.machine import cpu_features, cpu_model
    from bench.train.precision import BF16_MIN_FLOPS

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    previous = (Path(__file__).parent / "RESULTS.md").read_text()
    parts = {}
    runs = {
        "speed": lambda: speed(args.repeats),
        "accuracy": lambda: accuracy(args.seeds, args.vgg_seeds, [s for s in args.only.split(",") if s], previous),
    }
    for part, fn in runs.items():
        if args.part in (part, "all"):
            parts[part] = "\n".join(fn())
        else:  # keep the other part's figures from the last run
            start = previous.find("### Speed" if part == "speed" else "### Accuracy")
            if start >= 0:
                ends = (previous.find("\n### ", start + 1), previous.find("\n## ", start + 1), len(previous))
                end = min(i for i in ends if i >= 0)
                parts[part] = previous[start:end].rstrip("\n")
    section = "\n".join(
        [
            "## Precision",
            "",
            f"{cores} cores of {cpu_model()} ({', '.join(cpu_features())}); torch {torch.__version__}, {cores} "
            "threads. Command: `python benchmarks/precision.py` (`--part speed` or `--part accuracy` redoes one "
            "table).",
            "",
            "The default these tables decide (`--precision auto`, bench.train.precision.resolve_speed): channels_last "
            "whenever the model accepts it; bf16 autocast where bf16 is measured fast "
            "(bench.train.precision.bf16_is_fast) for models of "
            f"{BF16_MIN_FLOPS / 1e6:g} MFLOPs or more per image; fp32 otherwise.",
            "",
            *(parts[p] + "\n" for p in ("speed", "accuracy") if p in parts),
        ]
    )
    record("Precision", section)
    print(section)


if __name__ == "__main__":
    main()
