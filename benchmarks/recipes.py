"""Training time of two sweep configs on this machine, as a ratio measured in one run: the ROB313 lab's
(configs/rob313.toml) against the fast recipe's (configs/cifar10-fast.toml), or any two --config files.

Each config's trial is built as `bench run --config FILE` builds it (plugin defaults, then the file), and its
training steps run through bench.train.loop.train_trial, exactly as in a run, on the same --images real training
images (two epochs per round); rounds alternate between the configs, and the median of each is kept (other load on
a shared machine only ever slows a round). The rate is the second epoch's; the first epoch's excess over it is the
trial's start-up (kernel warm-up, a whitening stem's fit), paid once in a real run, so counting it in every epoch
(as one-epoch rounds did) overstated the config with the larger start-up. The projected training time of a config
is its start-up + epochs x 49,000 images / its rate; their ratio is what "at most half the lab's training time on
the same machine" is judged by, next to the wall times the two full runs recorded.

    python benchmarks/recipes.py --data data/cifar10-jpeg [--images 4096] [--repeats 3]
        [--configs configs/rob313.toml configs/cifar10-fast.toml]

Writes the section "Recipes" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import tomllib
from pathlib import Path

import torch
from record import record

ROOT = Path(__file__).resolve().parent.parent
TRAIN_IMAGES = 49_000  # the lab's split: 49k training images


def trial_of(config: Path):
    """The (architecture, variant, hyperparameters) that `bench run --config FILE` trains first."""
    from bench.sweep import RunConfig, plan_run

    return plan_run(RunConfig.from_dict(tomllib.loads(config.read_text())))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "cifar10-jpeg"), help="the CIFAR-10 image folder")
    parser.add_argument("--images", type=int, default=4096, help="training images per round")
    parser.add_argument("--repeats", type=int, default=3)
    lab, fast = (str(ROOT / "configs" / name) for name in ("rob313.toml", "cifar10-fast.toml"))
    parser.add_argument("--configs", nargs=2, default=[lab, fast], help="the reference config, then the other")
    args = parser.parse_args()

    from bench.data.splits import Normalizer, Split, Splits
    from bench.models.stats import count_flops
    from bench.plugins.dataset_loading import load_dataset
    from bench.train.device import environment
    from bench.train.loop import train_trial
    from bench.train.precision import resolve_speed

    data = load_dataset(f"imagefolder:{args.data}")
    full = data.split(0.02, 42)
    n = min(args.images, len(full.train))
    splits = Splits(
        Split(full.train.images[:n], full.train.labels[:n]),
        Split(full.val.images[:256], full.val.labels[:256]),
        Split(full.test.images[:16], full.test.labels[:16]),
    )
    specs = [trial_of(Path(c)) for c in args.configs]
    rates: dict[int, list[float]] = {i: [] for i in range(len(specs))}
    startup: dict[int, list[float]] = {i: [] for i in range(len(specs))}
    for _ in range(args.repeats):
        for i, spec in enumerate(specs):
            hp = spec.hparams.__class__(**{**spec.hparams.as_dict(), "epochs": 2, "warmup_epochs": None})
            torch.manual_seed(hp.seed)
            model = spec.architecture.build(data.input_shape, data.num_classes, spec.variant)
            hp = resolve_speed(hp, model, data.input_shape, torch.device("cpu"))  # as a run's plan does
            with tempfile.TemporaryDirectory() as tmp:
                result = train_trial(model, splits, Normalizer(data), hp, Path(tmp) / "best.pt", data.num_classes)
            first, both = (e.elapsed_s for e in result.history)
            rates[i].append(n / (both - first))  # the second epoch: steady state
            startup[i].append(max(0.0, 2 * first - both))  # what the first epoch costs beyond a steady one, once
    env = environment(torch.device("cpu"))
    rows, projected = [], []
    for i, spec in enumerate(specs):
        rate = statistics.median(rates[i])
        seconds = statistics.median(startup[i]) + spec.hparams.epochs * TRAIN_IMAGES / rate
        projected.append(seconds)
        model = spec.architecture.build(data.input_shape, data.num_classes, spec.variant)
        rounds = ", ".join(f"{r:.0f}" for r in rates[i])
        rows.append(
            f"| `{Path(args.configs[i]).name}` | {spec.architecture.name} | {spec.hparams.batch_size} | "
            f"{count_flops(model, data.input_shape) / 1e6:.0f} | {rate:.0f} ({rounds}) | "
            f"{statistics.median(startup[i]):.1f} | {spec.hparams.epochs} | {seconds / 60:.1f} |"
        )
    section = "\n".join(
        [
            "## Recipes",
            "",
            f"`python benchmarks/recipes.py --images {n} --repeats {args.repeats}`: training images/s of each config's "
            f"trial on {n} real CIFAR-10 training images (JPEG archive), two epochs per round through `train_trial` "
            "(the config's batch size, precision, layout, augmentation, optimizer, data initialization; validation "
            "excluded), rounds alternating, median of the rounds; the rate is the second epoch's (steady), the "
            "start-up what the first epoch took beyond a steady one (warm-up, a whitening stem's fit), paid once per "
            "trial. Projected training time: start-up + epochs x 49,000 / rate.",
            "",
            "| config | architecture | batch | MFLOPs/image | images/s, median (rounds) | start-up s | epochs | "
            "projected min |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"**Ratio: {projected[1] / projected[0]:.2f}** ({Path(args.configs[1]).name} over "
            f"{Path(args.configs[0]).name}). Machine: {env.get('cpu')}, {env.get('torch_threads')} torch threads, "
            f"torch {env.get('torch')}.",
        ]
    )
    record("Recipes", section)
    print(section)


if __name__ == "__main__":
    main()
