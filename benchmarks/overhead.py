"""Harness overhead: cnnbench's trainer against a minimal hand-written PyTorch loop doing the same work.

Both train the same model (same initial weights) on the same in-memory Fashion-MNIST images (real, 28x28,
--images training + 1280 validation), batch 64, SGD momentum 0.9, lr 0.01, fp32, standard layout, the same
torch threads, for --epochs epochs. Each epoch both shuffle, train, compute the validation loss and, when
it improved, write the weights to disk (what keeping the best checkpoint needs). The hand-written loop gets
its images already normalized as float32 (its best case); cnnbench's trainer normalizes uint8 batches as it
goes (what lets it augment on the device and hold 4x less memory), and also records accuracy, divergence
and the epoch history. Timed: bench.train.loop.train_trial up to the end of its last epoch
(TrialResult.train_time_s; the final train/test measurement is outside it) against the loop's wall time.
Many short rounds alternate the two. The overhead is taken from the fastest round of each (on a shared machine other
work only ever adds time, so the fastest round is the closest to the code's own cost); the median of the
rounds' ratios is shown beside it.

    python benchmarks/overhead.py [--images 3200] [--epochs 1] [--repeats 15]

Writes the section "Harness overhead" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from record import record

NETS = [("cnn_baseline", 0), ("cnn_dropout", 1), ("cnn_dropout", 3)]


def minimal_loop(model, x, y, xv, yv, epochs: int, batch_size: int, seed: int, path: Path) -> float:
    """The loop a notebook would have: shuffle, step, validate, save the best weights."""
    start = time.perf_counter()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    best = math.inf
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val = sum(
                float(F.cross_entropy(model(xv[j : j + 1024]), yv[j : j + 1024], reduction="sum"))
                for j in range(0, len(yv), 1024)
            ) / len(yv)
        if val < best:
            best = val
            torch.save(model.state_dict(), path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3200)
    parser.add_argument("--epochs", type=int, default=1)
    # Many short rounds: other work on a shared machine comes in bursts of seconds.
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from bench.core.machine import cpu_model
    from bench.data.splits import Normalizer, Split, Splits
    from bench.plugins.dataset_loading import load_dataset
    from bench.plugins.manager import get_registry
    from bench.train.loop import HParams, train_trial

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    data = load_dataset("fashion-mnist")
    n = args.images
    tr = data.train
    splits = Splits(
        Split(tr.images[:n], tr.labels[:n]),
        Split(tr.images[n : n + 1280], tr.labels[n : n + 1280]),
        Split(data.test.images[:64], data.test.labels[:64]),
    )
    normalize = Normalizer(data)
    with torch.no_grad():
        x, xv = normalize(splits.train.images), normalize(splits.val.images)
    hp = HParams(batch_size=64, lr=0.01, epochs=args.epochs, optimizer="sgd", precision="fp32", channels_last=False)
    lines = [
        "## Harness overhead",
        "",
        f"cnnbench's trainer against a minimal hand-written loop doing the same work: {args.epochs} epochs over "
        f"{n} Fashion-MNIST images (28x28) + 1280 validation images, batch 64, SGD, fp32, standard layout, "
        f"validation loss and best-weights save every epoch; {cores} cores of {cpu_model()}, torch "
        f"{torch.__version__}, {cores} threads. {args.repeats} alternating rounds; overhead = fastest trainer round "
        "over fastest loop round (other work on a shared machine only adds time). Command: "
        "`python benchmarks/overhead.py`.",
        "",
        "| net | hand-written loop, fastest (s) | cnnbench trainer, fastest (s) | overhead | median of the rounds' "
        "ratios | each round's ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    registry = get_registry()
    worst = 0.0
    for name, index in NETS:
        arch = registry.get(name)
        variant = arch.variants()[index]
        rounds = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                torch.manual_seed(0)
                model = arch.build(data.input_shape, data.num_classes, variant)
                hand = minimal_loop(
                    model, x, splits.train.labels, xv, splits.val.labels, args.epochs, 64, 0, Path(tmp) / "hand.pt"
                )
                torch.manual_seed(0)
                model = arch.build(data.input_shape, data.num_classes, variant)
                ours = train_trial(model, splits, normalize, hp, Path(tmp) / "best.pt", data.num_classes).train_time_s
            rounds.append((hand, ours))
        ratios = [o / h - 1 for h, o in rounds]
        hand, ours = min(h for h, _ in rounds), min(o for _, o in rounds)
        overhead = ours / hand - 1
        worst = max(worst, overhead)
        lines.append(
            f"| {name} v{index} | {hand:.2f} | {ours:.2f} | {100 * overhead:+.1f}% | "
            f"{100 * statistics.median(ratios):+.1f}% | {', '.join(f'{100 * r:+.0f}%' for r in ratios)} |"
        )
        print(lines[-1], flush=True)
    lines += ["", f"Largest overhead: {100 * worst:+.1f}% (target: under 5%).", ""]
    section = "\n".join(lines)
    record("Harness overhead", section)
    print(section)


if __name__ == "__main__":
    main()
