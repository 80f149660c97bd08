"""The lab report, generated from the store: leaderboard, every parameter, loss plots, confusion matrices, trade-offs,
diagnosis and method. Every figure in it is read from the store, never recomputed.

    views.py       what a report shows of each trial, read from the store
    sections.py    the training sections: leaderboard, parameters, top trials, time to accuracy, diagnosis
    tradeoff.py    accuracy against cost, and each parameter's effect
    deployment.py  engines, precisions, variants and batch curves
    serving.py     serving scenarios: single-stream, offline, server QPS under a p99 bound
    search.py      a search's progress
    ship.py        what to ship: the fastest model per target within the accepted loss
    method.py      how every figure was measured
    data.py        the report as data: JSON and CSV
    compare.py     two runs side by side (bench compare)
    plots.py       the figures (matplotlib)"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.core.files import atomic_write
from bench.core.formats import GPU_PROVIDERS, pct, run_label
from bench.core.status import MeasurementStatus
from bench.report.compare import compare_section
from bench.report.data import history_csv, measurements, measurements_csv, records, serving_csv, serving_records, to_csv
from bench.report.deployment import deployment_section
from bench.report.method import method_section
from bench.report.search import search_section
from bench.report.sections import (
    configurations_section,
    diagnosis_section,
    header_section,
    leaderboard_columns,
    parameters_section,
    time_section,
    top_section,
)
from bench.report.serving import serving_section
from bench.report.ship import ship_section
from bench.report.tradeoff import tradeoff_section
from bench.report.views import TrialView, choose_target, comparable, gather, groups_of, select_runs
from bench.results.columns import markdown
from bench.store import Store, safe_component

__all__ = [
    "TrialView",
    "gather",
    "measurements",
    "measurements_csv",
    "history_csv",
    "records",
    "select_runs",
    "to_csv",
    "serving_records",
    "serving_csv",
    "write_report",
]


def output_dir(out_root: Path, runs: list[dict]) -> Path:
    if len(runs) == 1:
        return Path(out_root) / safe_component(runs[0]["id"])
    digest = hashlib.sha1(",".join(r["id"] for r in runs).encode()).hexdigest()[:8]
    return Path(out_root) / f"combined-{digest}"


def write_report(
    store: Store, runs: list[dict], out_root: Path, top: int = 3, target_acc: float | None = None
) -> tuple[Path, list[TrialView]]:
    """Write report.md and its PNG figures under ``out_root``/<run>/; return the report's path. ``target_acc``
    (a fraction) is the validation accuracy that time to accuracy is measured to (default: choose_target)."""
    from matplotlib import rc_context

    from bench.report import plots as figures

    families, note = figures.fonts_for(c for r in runs for c in r["classes"])
    with rc_context({"font.family": families}):  # class names in any script the machine has a font for
        return _write_report(store, runs, out_root, top, target_acc, note)


def _write_report(store, runs, out_root, top, target_acc, font_note) -> tuple[Path, list[TrialView]]:
    views = gather(store, runs)
    folder = output_dir(out_root, runs)
    groups = groups_of(runs)
    title = run_label(runs[0]) if len(runs) == 1 else f"{len(runs)} runs"
    parts = [f"# cnnbench report: {title}", header_section(runs, store)]
    if len(groups) > 1:  # never one ranking, front or figure over different test sets
        parts.append(
            f"These runs test on {len(groups)} different test sets ({', '.join(comparable(g[0]) for g in groups)}): "
            "each has its own leaderboard, figures and fronts below; accuracies of different test sets are not "
            "compared."
        )
    for i, group in enumerate(groups, 1):
        names = {r["id"] for r in group}
        mine = [v for v in views if v.run["id"] in names]
        prefix = "" if len(groups) == 1 else f"set{i}_"  # a dataset's name may be a path: not part of file names
        body = _body(mine, top, target_acc, folder, prefix, gpu_of(mine))
        if against := compare_section(store, group):
            body += f"\n\n## Run against run\n\n{against}"
        parts.append(body if len(groups) == 1 else f"# {comparable(group[0])}\n\n{body}")
    parts += ["## Method", method_section(runs, views) + (f"\n\nFigures: {font_note}." if font_note else "")]
    path = folder / "report.md"
    atomic_write(path, ("\n\n".join(parts) + "\n").encode())
    return path, views


def gpu_of(views: list[TrialView]) -> bool:
    return any(r["provider"] in GPU_PROVIDERS and r["status"] == MeasurementStatus.OK for v in views for r in v.latency)


def _body(views: list[TrialView], top: int, target_acc, folder: Path, prefix: str, gpu: bool) -> str:
    """The report's sections for one group of comparable runs; its figures' names start with ``prefix``."""
    target = target_acc if target_acc is not None else choose_target(views)

    def write_png(name: str, data: bytes) -> str:
        atomic_write(folder / (prefix + name), data)
        return prefix + name

    return "\n\n".join(
        [
            "## Leaderboard",
            "Ranked by test accuracy; trials that did not complete follow. ★: selected by validation accuracy "
            "for its architecture. Accuracies in %; training s: the training steps' wall time (validation "
            f"excluded); time to {pct(target)}% val: see Time to accuracy; latency and throughput from ONNX "
            "Runtime (see Method).",
            markdown(leaderboard_columns(views, gpu, target), views),
            *(["## Configurations over seeds", configs] if (configs := configurations_section(views)) else []),
            "## Every parameter",
            parameters_section(views),
            f"## Top {top}",
            top_section(views, top, write_png),
            "## Time to accuracy",
            time_section(views, target, target_acc is None, write_png),
            *(["## Search", searched] if (searched := search_section(views, write_png)) else []),
            "## Trade-offs",
            tradeoff_section(views, write_png),
            "## Deployment: precisions and batch sizes",
            deployment_section(views, write_png),
            *(["## Serving", served] if (served := serving_section(views, write_png)) else []),
            "## Diagnosis of every trial",
            diagnosis_section(views),
            "## What to ship",
            ship_section(views),
        ]
    )
