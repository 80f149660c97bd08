"""Search that learns, measured: on cnn_dropout's whole variant space (120 variants), N trials chosen by Optuna's TPE
sampler (`--search tpe`) against N drawn at random (`--search random`), over several seeds of the search. Each seed
runs both searches with the same seed (the same split and initial weights for a variant), so they differ only in
which variants they choose. The figure compared is the best validation accuracy among each search's trials (the
checkpoint `--select val_acc` keeps), and the best-so-far after each trial.

    python benchmarks/search.py [--dataset digits] [--limit-train N] [--trials 20] [--epochs 3]
        [--seeds 0 1 2] [--store /tmp/search.db]

The default is the embedded digits at 3 epochs: a few seconds a trial, and far from saturated (a variant's
validation accuracy after 3 epochs ranges from chance to 98%). Fashion-MNIST at 28x28 costs cnn_dropout's larger
variants about 25 s an epoch on 2 cores.

Writes the section "Search: TPE against random" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from record import cpu_name, record


def best_so_far(trials: list[dict]) -> list[float]:
    """The best validation accuracy after each trial, in the order the search ran them."""
    out, best = [], 0.0
    for t in sorted(trials, key=lambda t: t["trial"]):
        best = max(best, t["val_acc"] or 0.0)
        out.append(best)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--limit-train", type=int, default=None, help="training (and validation) images")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--store", default=None, help="results store (default: a temporary one)")
    args = parser.parse_args()

    import optuna

    import bench
    from bench.sweep.search import startup_trials

    store = Path(args.store) if args.store else Path(tempfile.mkdtemp()) / "search.db"
    common = {
        "plugin": ["cnn_dropout"],
        "variants": "all",
        "dataset": args.dataset,
        "limit_train": args.limit_train,
        "epochs": [args.epochs],
        "trials": args.trials,
        "select": "val_acc",
        "no_benchmark": True,
        "threads": torch.get_num_threads(),
    }
    rows, curves, runs = [], {"random": [], "tpe": []}, []
    for seed in args.seeds:
        best = {}
        for search in ("random", "tpe"):
            t0 = time.perf_counter()
            result = bench.run(**common, search=search, seed=[seed], store_path=store)
            seconds = time.perf_counter() - t0
            curve = best_so_far(result.trials)
            curves[search].append(curve)
            best[search] = curve[-1]
            runs.append(result.run_id)
            print(f"seed {seed} {search}: best val acc {curve[-1]:.2%}, {seconds:.0f} s ({result.run_id})", flush=True)
        rows.append((seed, best["random"], best["tpe"]))

    n = args.trials
    lines = [
        "## Search: TPE against random",
        "",
        f"`python benchmarks/search.py --dataset {args.dataset}"
        + (f" --limit-train {args.limit_train}" if args.limit_train else "")
        + f" --trials {n} --epochs {args.epochs} --seeds {' '.join(map(str, args.seeds))}` on {cpu_name()}, torch "
        f"{torch.__version__}, optuna {optuna.__version__}, {torch.get_num_threads()} threads; store {store} (runs "
        f"{', '.join(runs)}).",
        "",
        f"cnn_dropout, all 120 variants, {args.epochs} epochs each, `--select val_acc`, on "
        + (f"{args.limit_train} images of " if args.limit_train else "")
        + f"{args.dataset} (80/20 train/validation). Each seed runs both searches with the same seed (same split and "
        f"initial weights for a variant). TPE: Optuna's TPESampler, {startup_trials(n)} random start-up trials, then "
        "guided; random: cnnbench's draw without repeats.",
        "",
        f"| search seed | best of {n} random | best of {n} TPE | TPE - random (points) |",
        "| --- | --- | --- | --- |",
    ]
    for seed, r, t in rows:
        lines.append(f"| {seed} | {r:.2%} | {t:.2%} | {100 * (t - r):+.2f} |")
    mean_r = statistics.mean(r for _, r, _ in rows)
    mean_t = statistics.mean(t for _, _, t in rows)
    lines.append(f"| mean | {mean_r:.2%} | {mean_t:.2%} | {100 * (mean_t - mean_r):+.2f} |")
    wins = sum(t >= r for _, r, t in rows)
    lines += [
        "",
        f"TPE at least as good as random in {wins} of {len(rows)} seeds. Mean best-so-far validation accuracy after "
        "k trials (the search's progress, as `bench report` draws it per run):",
        "",
        "| after k trials | " + " | ".join(str(k) for k in range(1, n + 1) if k in (1, 5, 10, 15, 20) or k == n) + " |",
        "| --- |" + " --- |" * len([k for k in range(1, n + 1) if k in (1, 5, 10, 15, 20) or k == n]),
    ]
    for search in ("random", "tpe"):
        means = [statistics.mean(c[k - 1] for c in curves[search]) for k in range(1, n + 1)]
        shown = [f"{means[k - 1]:.2%}" for k in range(1, n + 1) if k in (1, 5, 10, 15, 20) or k == n]
        lines.append(f"| {search} | " + " | ".join(shown) + " |")
    section = "\n".join(lines) + "\n"
    record("Search: TPE against random", section)
    print(section)


if __name__ == "__main__":
    main()
