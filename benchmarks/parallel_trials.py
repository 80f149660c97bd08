"""Side by side or one at a time? Small trials on a few cores.

Measures the same four trials (cnnbench's default cnn_dropout variants on digits, 5 epochs each, the
plugin's hyperparameters) two ways, on this machine's cores:
  A. one trial at a time with every core as torch threads (one process, N threads);
  B. N trials side by side with one thread each (N processes, each taking every N-th trial).
Each way runs in fresh processes, `--repeats` times, alternating A and B; the figure is the median wall
time of the training phase (imports and data loading excluded, both ways). Writes the table to
benchmarks/RESULTS.md (section "Parallel trials") and prints it.

    python benchmarks/parallel_trials.py [--repeats 3] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import record


def worker(threads: int, indices: list[int], epochs: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from bench.data.splits import Normalizer
    from bench.plugins.dataset_loading import load_dataset
    from bench.plugins.manager import get_registry
    from bench.train.loop import HParams, train_trial
    from bench.train.precision import resolve_speed

    data = load_dataset("digits")
    arch = get_registry().get("cnn_dropout")
    variants = arch.variants()
    splits = data.split(0.2, 0)
    norm = Normalizer(data)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for i in indices:
            hp = HParams(**{**arch.defaults, "epochs": epochs})
            torch.manual_seed(0)
            model = arch.build(data.input_shape, data.num_classes, variants[i])
            hp = resolve_speed(hp, model, data.input_shape, torch.device("cpu"))  # as a run's plan does
            train_trial(model, splits, norm, hp, Path(tmp) / "best.pt", data.num_classes)
        print(json.dumps({"train_s": time.perf_counter() - start}))


def launch(threads: int, indices: list[int], epochs: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", str(threads), ",".join(map(str, indices)), "--epochs", str(epochs)],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/tmp",
    )


def one_round(cores: int, trials: int, epochs: int) -> tuple[float, float]:
    a = launch(cores, list(range(trials)), epochs)
    a_s = json.loads(a.communicate()[0])["train_s"]
    procs = [launch(1, list(range(k, trials, cores)), epochs) for k in range(cores)]
    b_s = max(json.loads(p.communicate()[0])["train_s"] for p in procs)
    return a_s, b_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        worker(int(args.worker[0]), [int(i) for i in args.worker[1].split(",") if i], args.epochs)
        return
    import torch

    from bench.core.machine import cpu_model

    cores = os.cpu_count() or 1
    trials = 4
    rounds = [one_round(cores, trials, args.epochs) for _ in range(args.repeats)]
    a = statistics.median(r[0] for r in rounds)
    b = statistics.median(r[1] for r in rounds)
    faster = "side by side" if b < a else "one at a time"
    table = "\n".join(
        [
            "## Parallel trials",
            "",
            f"{trials} small trials (cnn_dropout default variants, {args.epochs} epochs, digits) on {cores} cores of "
            f"{cpu_model()}; torch {torch.__version__}. Training-phase wall time, median of {args.repeats} rounds "
            "(A and B alternate; fresh processes; imports and data loading excluded).",
            "",
            "| way | processes x threads | wall time (s) | rounds (s) |",
            "| --- | --- | --- | --- |",
            f"| A. one trial at a time | 1 x {cores} | {a:.2f} | {', '.join(f'{r[0]:.2f}' for r in rounds)} |",
            f"| B. trials side by side | {cores} x 1 | {b:.2f} | {', '.join(f'{r[1]:.2f}' for r in rounds)} |",
            "",
            f"Ratio A/B = {a / b:.2f}: {faster} is faster for small models. cnnbench's Ray executor therefore "
            f"defaults to --cpus-per-trial {1 if b < a else cores} (torch threads per trial = its CPUs).",
            "",
        ]
    )
    record("Parallel trials", table)
    print(table)


if __name__ == "__main__":
    main()
