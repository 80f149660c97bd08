"""Scale: total time of a sweep against its number of trials, and what each trial costs beyond training.

For N in --sizes (4, 16, 64), `bench run --plugin cnn_baseline --dataset digits --epochs 2 --lr <N values>
--no-benchmark` runs in a fresh process with its own store (the local executor; `--ray` adds the Ray executor
at the two smallest sizes). Timed from outside: the whole command (process start, imports, data, plan, every
trial, the leaderboard). From the store: each trial's wall time (duration_s: build, FLOPs count, training,
final evaluation, checkpoint and store writes) and its epochs' time (training and validation); the in-trial
overhead is the difference. The fit is least squares: total = fixed + per_trial x N. Then the fixed costs
outside the trials are measured once: the process start (`bench --version`), and the export (with parity
check) and inference benchmark of a winner (`bench export` and `bench benchmark` with their defaults), which
run once per architecture, not per trial.

    python benchmarks/scale.py [--sizes 4,16,64] [--ray]

Writes the section "Scale" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import record

BENCH = str(Path(sys.executable).parent / "bench")


def timed(*args: str, store: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [BENCH, *args, "--store", str(store)] if args[0] != "--version" else [BENCH, *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def sweep(n: int, folder: Path, executor: str) -> dict:
    store = folder / f"{executor}{n}" / "bench.db"
    lrs = ",".join(f"{0.002 * (50 ** (i / max(n - 1, 1))):.5g}" for i in range(n))  # 0.002 .. 0.1
    total = timed(
        "run",
        "--plugin",
        "cnn_baseline",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--lr",
        lrs,
        "--no-benchmark",
        "--quiet",
        "--executor",
        executor,
        store=store,
    )
    db = sqlite3.connect(store)
    rows = db.execute(
        "SELECT t.duration_s, (SELECT SUM(time_s) FROM epochs e WHERE e.trial_id = t.id)"
        " FROM trials t WHERE t.status = 'completed'"
    ).fetchall()
    db.close()
    assert len(rows) == n, f"{len(rows)} of {n} trials completed"
    wall = sum(r[0] for r in rows) / n
    epochs = sum(r[1] for r in rows) / n
    return {"n": n, "executor": executor, "total": total, "trial_wall": wall, "epochs": epochs}


def fit(points: list[tuple[int, float]]) -> tuple[float, float, float]:
    """Least squares total = a + b n; returns (a, b, R^2)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    ss_res = sum((y - a - b * x) ** 2 for x, y in points)
    ss_tot = sum((y - my) ** 2 for y in ys)
    return a, b, 1 - ss_res / ss_tot if ss_tot else 1.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4,16,64")
    parser.add_argument("--ray", action="store_true")
    args = parser.parse_args()
    from bench.core.machine import cpu_model

    sizes = [int(s) for s in args.sizes.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        results = []
        for n in sizes:
            results.append(sweep(n, folder, "local"))
            print(results[-1], flush=True)
        ray_results = []
        if args.ray:
            for n in sizes[:2]:
                ray_results.append(sweep(n, folder, "ray"))
                print(ray_results[-1], flush=True)
        start = timed("--version", store=folder)
        store = folder / f"local{sizes[0]}" / "bench.db"
        export = timed("export", "latest", store=store)
        bench = timed("benchmark", "latest", store=store)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    a, b, r2 = fit([(r["n"], r["total"]) for r in results])
    cores = os.cpu_count() or 1
    lines = [
        "## Scale",
        "",
        f"`bench run --plugin cnn_baseline --dataset digits --epochs 2 --lr <N values> --no-benchmark` in a fresh "
        f"process per size; {cores} cores of {cpu_model()}. Command: `python benchmarks/scale.py"
        f"{' --ray' if args.ray else ''}`.",
        "",
        "| executor | trials | total (s) | total / trials (s) | trial wall time (s) | its epochs (s) | in-trial "
        "overhead (s) | total vs linear fit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results + ray_results:
        vs_fit = f"{100 * (r['total'] / (a + b * r['n']) - 1):+.1f}%" if r["executor"] == "local" else ""
        lines.append(
            f"| {r['executor']} | {r['n']} | {r['total']:.1f} | {r['total'] / r['n']:.2f} | {r['trial_wall']:.3f} | "
            f"{r['epochs']:.3f} | {r['trial_wall'] - r['epochs']:.3f} | {vs_fit} |"
        )
    last = results[-1]
    lines += [
        "",
        f"Local executor: total = {a:.1f} s + {b:.3f} s x trials (least squares, R^2 = {r2:.4f}). Each trial "
        f"costs {1000 * (last['trial_wall'] - last['epochs']):.0f} ms beyond its epochs (model build, FLOPs count, "
        f"final train/test evaluation, checkpoint and store writes) and {1000 * max(b - last['trial_wall'], 0):.0f} ms "
        "between trials (recording its start, the progress display): the slope less a trial's wall time. There is "
        "no process start per trial: the local executor trains every trial in one process.",
        "",
        f"Fixed costs, once per command or per winner, not per trial: process start (`bench --version`) "
        f"{start:.2f} s; the rest of the {a:.1f} s intercept is imports, the dataset and the plan. Export of a winner "
        f"with its parity check (`bench export`, its own process) {export:.1f} s; its inference benchmark "
        f"(`bench benchmark`: batch 1 and 64, ORT and PyTorch, >= 100 runs and 1 s each) {bench:.1f} s. Both run "
        "once per architecture (the winner), whatever the number of trials.",
        "",
    ]
    if ray_results:
        (n1, t1), (n2, t2) = [(r["n"], r["total"]) for r in ray_results]
        lines += [
            f"Ray executor (local Ray, 1 CPU per trial, so 2 trials side by side; actors are reused, so a worker "
            f"process starts once, not per trial): {t1:.1f} s at {n1} trials, {t2:.1f} s at {n2} "
            f"({(t2 - t1) / (n2 - n1):+.2f} s per extra trial against {b:.3f} s locally): Ray's start-up of about "
            f"{min(t1, t2) - n1 * b:.0f} s dominates at these sizes; the Ray executor is for sweeps whose trials take "
            "minutes.",
            "",
        ]
    section = "\n".join(lines)
    record("Scale", section)
    print(section)


if __name__ == "__main__":
    main()
