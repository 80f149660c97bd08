"""The report's last section, what to ship: per deployment target measured, the fastest model within the accuracy
loss the run accepts (bench.results.recommend), the file its engine reads and the command that loads it."""

from __future__ import annotations

from bench.core.formats import num, pct, trial_label
from bench.options.config import default
from bench.report.views import TrialView
from bench.results.columns import Column, markdown
from bench.results.recommend import recommend

SHIP_COLUMNS = (  # rows: (Choice, the trial's name in the report: t003, or RUN/t003 over several runs)
    Column("target", lambda r: r[0].target, left=True),
    Column("trial", lambda r: f"{r[1]} {r[0].trial['architecture']}", left=True),
    Column("precision", lambda r: r[0].precision, left=True),
    Column("test %", lambda r: pct(r[0].test_acc)),
    Column("best on target %", lambda r: pct(r[0].best_acc)),
    Column("p50 batch 1 (ms)", lambda r: num(r[0].p50_ms) + (" (noisy)" if r[0].noisy else "")),
    Column("file", lambda r: f"`{r[0].file}`" if r[0].file else "-", left=True),
    Column("load with", lambda r: f"`{r[0].command()}`", left=True),
)


def allowed_points(views: list[TrialView]) -> float:
    """The accuracy loss the runs accept (the strictest of their --max-accuracy-drop)."""
    return min((v.run["config"] or {}).get("max_accuracy_drop", default("max_accuracy_drop")) for v in views)


def ship_section(views: list[TrialView]) -> str:
    if not views:
        return "Nothing was measured."
    allowed = allowed_points(views)
    test_images = (views[0].run.get("split") or {}).get("test") or 0
    choices = recommend(views, allowed, test_images) if test_images else []
    if not choices:
        return "No model was timed at batch 1 with a test accuracy: nothing to recommend (`bench benchmark RUN`)."
    names = {(v.run["id"], v.trial["idx"]): v.name for v in views}
    rows = [(c, names.get((c.run["id"], c.trial["idx"]), trial_label(c.trial["idx"]))) for c in choices]
    noisy = any(c.noisy for c in choices)
    return (
        f"For each deployment target measured, the fastest model at batch 1 whose test accuracy is within "
        f"{allowed:g} points (--max-accuracy-drop, counted in test images) of the most accurate model measured on "
        "that target. Test accuracy through that engine at that precision on the CPU over the whole test set; "
        "latency: p50 at batch 1 (the representative repetition); files relative to the store's folder. "
        "`bench predict` loads the same model and "
        "classifies image files; for an ONNX file, `onnxruntime.InferenceSession(FILE)` as in the README does too."
        + (" A noisy latency may have chosen another model on a quiet machine." if noisy else "")
        + "\n\n"
        + markdown(SHIP_COLUMNS, rows)
    )
