"""The report's Search section: for runs whose trials a search chose (random, TPE), each trial's selection metric
in the order the search ran them, and the best so far."""

from __future__ import annotations

from bench.core.formats import pct
from bench.core.status import TrialStatus
from bench.report import plots as figures
from bench.report.views import TrialView

SEARCH_WORDS = {"random": "random draws without repeats", "tpe": "Optuna's TPE sampler"}


def search_section(views: list[TrialView], write_png) -> str | None:
    """For runs whose trials a search chose (random or TPE): each trial's selection metric in the order the search
    ran them, and the best so far. None when every run is a grid."""
    searched: dict[str, list[TrialView]] = {}
    for v in views:
        config = v.run.get("config") or {}
        if config.get("search", "grid") != "grid":
            searched.setdefault(v.run["id"], []).append(v)
    if not searched:
        return None
    series, lines = [], []
    metric = "val_acc"
    for run_id, trials in searched.items():
        config = trials[0].run["config"]
        metric = trials[0].trial["hparams"].get("select") or "val_loss"
        trials = sorted(trials, key=lambda v: v.trial["idx"])
        series.append((run_id, [v.trial["idx"] for v in trials], [v.trial.get(metric) for v in trials]))
        pruned = sum(v.trial["status"] == TrialStatus.PRUNED for v in trials)
        values = [v.trial.get(metric) for v in trials if v.trial.get(metric) is not None]
        best = (min if metric == "val_loss" else max)(values) if values else None
        shown = "-" if best is None else f"{best:.4g}" if metric == "val_loss" else f"{pct(best)}%"
        at = next((v.trial["idx"] for v in trials if v.trial.get(metric) == best), None)
        lines.append(
            f"- {run_id}: {SEARCH_WORDS.get(config['search'], config['search'])}, {len(trials)} trials"
            + (f" ({pruned} pruned by {config.get('pruner')})" if pruned else "")
            + f"; best {metric.replace('_', ' ')} {shown}"
            + (f" at trial {at}" if at else "")
        )
    lower = metric == "val_loss"
    title = "Search progress: " + ("validation loss (lower is better)" if lower else "validation accuracy")
    png = write_png("search.png", figures.search_plot(series, metric, title))
    return (
        f"![{title}]({png})\n\nEach dot is a trial's selection metric (its best checkpoint's), in the order the search "
        "ran them; the line is the best so far.\n\n" + "\n".join(lines)
    )
