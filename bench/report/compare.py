"""`bench compare A B`: two runs on the same test set side by side. Trials are matched by architecture and variant;
each side's best configuration of it (best mean validation accuracy over its seeds) gives the test accuracy (mean,
spread over seeds) and the fp32 ONNX Runtime latency on the CPU at batch 1 (p50, with its noise); the differences
are B minus A, and a latency ratio only where neither measurement is noisy; each difference is tested (Welch's
t-test at 95%, bench.results.significance) on the seeds' test accuracies and on the quiet repetitions' p50s."""

from __future__ import annotations

import json

from bench.core.errors import UsageError
from bench.core.formats import CPU_PROVIDERS, run_label
from bench.core.status import MeasurementStatus, Precision
from bench.models.registry import format_value, format_variant
from bench.report.sections import mean_std
from bench.report.views import comparable
from bench.results.columns import Column, markdown
from bench.results.deployed import RATIO_RULE, representative, speedup
from bench.results.leaderboard import configurations, rank
from bench.results.significance import LATENCY_MARGIN, verdict_text, welch
from bench.store import Store


def _compare_accuracy(stats: dict) -> str:
    return mean_std(stats) + (f" (n={stats['n']})" if stats["n"] > 1 else "")


def _compare_p50(latency: dict | None, noisy: str) -> str:
    return "-" if latency is None else f"{latency['p50_ms']:.3f}" + (noisy if latency["noisy"] else "")


def compare_columns(noisy: str = " (noisy)") -> tuple[Column, ...]:
    """The columns of `bench compare` and of the combined report's run-against-run tables; ``noisy``: the mark of a
    noisy latency."""
    return (
        Column("architecture", lambda r: r["architecture"], left=True),
        Column("variant", lambda r: format_variant(r["variant"]) or "-", left=True),
        Column(
            "differs (A -> B)",
            lambda r: (
                " ".join(f"{k}={format_value(x)}->{format_value(y)}" for k, (x, y) in r["differs"].items()) or "-"
            ),
            left=True,
            wrap=True,
        ),
        Column("A test %", lambda r: _compare_accuracy(r["a"]["test_acc"])),
        Column("B test %", lambda r: _compare_accuracy(r["b"]["test_acc"])),
        Column("Δ points", lambda r: "-" if r["test_acc_change"] is None else f"{100 * r['test_acc_change']:+.2f}"),
        Column("accuracy Δ", lambda r: verdict_text(r["test_acc_significance"]), left=True, wrap=True),
        Column("A p50 ms", lambda r: _compare_p50(r["a"]["latency"], noisy)),
        Column("B p50 ms", lambda r: _compare_p50(r["b"]["latency"], noisy)),
        Column("B/A latency", lambda r: "-" if r["latency_ratio"] is None else f"{r['latency_ratio']:.2f}x"),
        Column("latency Δ", lambda r: verdict_text(r["latency_significance"]), left=True, wrap=True),
    )


COMPARE_METHOD = (
    "test %: mean ± standard deviation over seeds (n); p50: ONNX Runtime fp32, CPU, batch 1, of the best trial; "
    + RATIO_RULE
    + "; Δ: Welch's t-test at 95% on the seeds' test accuracies and on the quiet repetitions' p50s (bench "
    "benchmark --repeat N; the calls of one measurement are not independent), a latency change significant only when "
    f"its 95% interval lies beyond ±{LATENCY_MARGIN:.0%} of A's"
)


def compare_section(store: Store, runs: list[dict]) -> str | None:
    """The combined report's run against run: each run of a group of comparable runs against the first, per
    architecture and variant trained in both, each difference tested."""
    if len(runs) < 2:
        return None
    parts = [f"Each run against {run_label(runs[0])}, as `bench compare` shows them. {COMPARE_METHOD}."]
    for b in runs[1:]:
        rows = compare(store, runs[0], b)
        table = markdown(compare_columns(), rows) if rows else "No architecture and variant was trained in both."
        parts += [f"### B = {run_label(b)} against A = {run_label(runs[0])}", table]
    return "\n\n".join(parts)


def compare(store: Store, a: dict, b: dict) -> list[dict]:
    """One row per (architecture, variant) trained in both runs ``a`` and ``b`` (run rows of ``store``); an
    architecture trained with one other variant in each run is compared too, its variant among what differs (a
    bigger variant against a smaller one)."""
    if comparable(a) != comparable(b):
        raise UsageError(
            f"runs {a['id']} and {b['id']} test on different sets ({comparable(a)}; {comparable(b)}): their "
            "accuracies cannot be compared (`bench report A B` shows each on its own)"
        )
    sides = [_best_by_variant(store, run) for run in (a, b)]
    rows = []
    for key_a, key_b in _pairs(*sides):
        (ca, la, accs_a, reps_a), (cb, lb, accs_b, reps_b) = sides[0][key_a], sides[1][key_b]
        acc_a, acc_b = ca["test_acc"], cb["test_acc"]
        rows.append(
            {
                "architecture": ca["architecture"],
                "variant": ca["variant"],
                "differs": {**_differs(ca["variant"], cb["variant"]), **_differs(ca["hparams"], cb["hparams"])},
                "a": {"trials": ca["trials"], "test_acc": acc_a, "latency": la},
                "b": {"trials": cb["trials"], "test_acc": acc_b, "latency": lb},
                "test_acc_change": (
                    acc_b["mean"] - acc_a["mean"] if acc_a["mean"] is not None and acc_b["mean"] is not None else None
                ),
                "latency_ratio": speedup(lb, la),  # B's p50 over A's
                "test_acc_significance": welch(accs_a, accs_b, "seeds").asdict(),
                "latency_significance": welch(reps_a, reps_b, "quiet repetitions", LATENCY_MARGIN).asdict(),
            }
        )
    return rows


def _pairs(a: dict[str, tuple], b: dict[str, tuple]) -> list[tuple[str, str]]:
    """The keys of ``a`` and ``b`` compared: the same (architecture, variant), then an architecture left with one
    variant on each side."""
    pairs = [(k, k) for k in a if k in b]
    left_a, left_b = [k for k in a if k not in b], [k for k in b if k not in a]
    for arch in dict.fromkeys(json.loads(k)[0] for k in left_a):
        mine = [k for k in left_a if json.loads(k)[0] == arch]
        theirs = [k for k in left_b if json.loads(k)[0] == arch]
        if len(mine) == len(theirs) == 1:
            pairs.append((mine[0], theirs[0]))
    return pairs


def _differs(a: dict, b: dict) -> dict[str, list]:
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _best_by_variant(store: Store, run: dict) -> dict[str, tuple]:
    """Per (architecture, variant): the run's best configuration of it, the fp32 CPU batch-1 ONNX Runtime
    measurement of its best trial (None when not measured), the test accuracies of the configuration's seeds, and
    the p50s of that measurement's quiet repetitions."""
    ranked = rank(store.trials(run["id"]))
    by_idx = {t["idx"]: t for t in ranked}
    out: dict[str, tuple] = {}
    for config in configurations(ranked):  # best mean validation accuracy first: the first of a variant wins
        key = json.dumps([config["architecture"], config["variant"]], sort_keys=True)
        if key in out or config["test_acc"]["n"] == 0:
            continue
        trial = max((by_idx[i] for i in config["trials"]), key=lambda t: t["val_acc"] or 0)
        accuracies = [by_idx[i]["test_acc"] for i in config["trials"] if by_idx[i]["rank"] is not None]
        out[key] = (config, _latency(store, trial), accuracies, [r["p50_ms"] for r in _timed(store, trial)])
    return out


def _timed(store: Store, trial: dict) -> list[dict]:
    """Every repetition of the trial's fp32 CPU batch-1 ONNX Runtime measurement that ran and is not noisy."""
    return [
        r
        for r in store.latency_of(trial["id"])
        if r["engine"] == "onnxruntime"
        and r["provider"] in CPU_PROVIDERS
        and r["precision"] == Precision.FP32
        and r["batch_size"] == 1
        and r["status"] == MeasurementStatus.OK
        and not r["noisy"]
    ]


def _latency(store: Store, trial: dict) -> dict | None:
    rows = [
        r
        for r in representative(store.latency_of(trial["id"]))
        if r["engine"] == "onnxruntime"
        and r["provider"] in CPU_PROVIDERS
        and r["precision"] == Precision.FP32
        and r["batch_size"] == 1
        and r["status"] == MeasurementStatus.OK
    ]
    if not rows:
        return None
    r = rows[0]
    keep = ("status", "p50_ms", "p99_ms")
    return {**{k: r[k] for k in keep}, "noisy": bool(r["noisy"]), "trial": trial["idx"]}
