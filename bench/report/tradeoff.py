"""The report's trade-off sections: test accuracy against latency and size with their Pareto fronts, and the effect of
each swept parameter (matched comparisons)."""

from __future__ import annotations

from bench.core.formats import CPU_PROVIDERS, num, pct
from bench.models.registry import format_value
from bench.options.config import AXES
from bench.report import plots as figures
from bench.report.views import TrialView
from bench.results.columns import Column, markdown
from bench.results.diagnosis import CHANCE_RULE


def tradeoff_section(views: list[TrialView], write_png) -> str:
    parts = []
    finished = [v for v in views if v.test_rank is not None]
    done = [v for v in finished if v.trial.get("learned") is not False]
    if len(done) < len(finished):
        parts.append(left_off([v for v in finished if v not in done]))
    timed = [(v, v.onnx(CPU_PROVIDERS, 1)) for v in done]
    timed = [(v, m) for v, m in timed if m]
    if timed:
        text = _tradeoff(
            write_png,
            "tradeoff_latency.png",
            [v for v, _ in timed],
            [m["p50_ms"] for _, m in timed],
            "ONNX latency",
            "ONNX Runtime CPU latency, p50 at batch 1 (ms)",
            "Test accuracy against inference latency",
            "no other benchmarked trial is both faster and more accurate",
            lambda c: f"{num(c)} ms",
        )
        if len(timed) == 1:
            text += " Only one trial is benchmarked: `bench benchmark RUN --top-k N` adds more."
        parts.append(text)
    sized = [v for v in done if v.trial["params"]]
    if sized:
        parts.append(
            _tradeoff(
                write_png,
                "tradeoff_params.png",
                sized,
                [v.trial["params"] for v in sized],
                "parameters",
                "parameters",
                "Test accuracy against model size",
                "no other trial is both smaller and more accurate",
                lambda c: f"{c} parameters",
                log_x=True,
            )
        )
    parts.append("### Effect of each swept parameter on validation accuracy\n\n" + effects(finished))
    return "\n\n".join(parts)


def left_off(views: list[TrialView]) -> str:
    """The line that says which trials no front shows, and why."""
    names = ", ".join(v.name for v in views)
    return (
        f"Left off the fronts: {names}, which did not learn ({CHANCE_RULE}; the diagnosis says more). `bench "
        "benchmark RUN TRIAL` deploys one anyway."
    )


def _tradeoff(write_png, filename, views, costs, what, xlabel, title, rule, show, log_x=False) -> str:
    """A test-accuracy-against-cost figure and its Pareto front in words; colours by architecture."""
    labels = [v.name for v in views]
    accs = [v.trial["test_acc"] for v in views]
    colors = [v.trial["architecture"] for v in views]
    png = write_png(filename, figures.tradeoff_plot(labels, costs, accs, xlabel, title, log_x=log_x, colors=colors))
    front = figures.pareto_front(list(zip(costs, accs, strict=True)))
    return (
        f"### Test accuracy against {what}\n\n![Test accuracy against {what}]({png})\n\nPareto front ({rule}): "
        + "; ".join(f"{labels[i]} ({pct(accs[i])}%, {show(costs[i])})" for i in front)
        + "."
    )


def effects(done: list[TrialView]) -> str:
    """The effect of each swept parameter on validation accuracy, from matched comparisons: trials that differ in that
    parameter alone (seeds averaged). A parameter whose values never meet in otherwise equal trials is named
    confounded, with its raw means, rather than credited with what the other parameters did."""
    params: dict[str, set[str]] = {}
    for v in done:
        for k, value in _settings(v).items():
            params.setdefault(k, set()).add(value)
    parts, confounded = [], []
    for axis in (k for k, values in params.items() if len(values) > 1):
        contexts: dict[str, dict[str, list[float]]] = {}
        for v in done:
            settings = _settings(v)
            if axis in settings:
                rest = repr(sorted((k, x) for k, x in settings.items() if k != axis))
                contexts.setdefault(rest, {}).setdefault(settings[axis], []).append(v.trial["val_acc"])
        matched = [c for c in contexts.values() if len(c) > 1]
        values = sorted(params[axis], key=_order)
        if not matched:
            confounded.append(axis)
            continue
        reference = next(x for x in values if any(x in c for c in matched))
        rows = []
        for value in values:
            pairs = [(_mean(c[value]), _mean(c[reference])) for c in matched if value in c and reference in c]
            trials = sum(len(c[value]) for c in matched if value in c)
            if trials:
                mean = _mean([x for c in matched if value in c for x in c[value]])
                delta = _mean([a - b for a, b in pairs]) if pairs and value != reference else None
                rows.append({"value": value, "trials": trials, "pairs": len(pairs), "mean": mean, "delta": delta})
        columns = (
            Column("value", lambda r: r["value"], left=True),
            Column("trials", lambda r: str(r["trials"])),
            Column(f"comparisons with {reference}", lambda r: str(r["pairs"])),
            Column("mean val %", lambda r: pct(r["mean"])),
            Column(f"Δ points vs {reference}", lambda r: "-" if r["delta"] is None else f"{100 * r['delta']:+.2f}"),
        )
        parts.append(
            f"**{axis}**: {len(matched)} matched comparison{'s' * (len(matched) != 1)}\n\n" + markdown(columns, rows)
        )
    if confounded:
        parts.append(
            "Confounded (no two trials differ in it alone, so its values cannot be compared): "
            + ", ".join(f"**{a}**" for a in confounded)
            + "."
        )
    if not parts:
        return "Nothing was swept: every completed trial used the same parameters."
    return (
        "Each parameter is compared only between trials that differ in it alone (seeds averaged): Δ is the mean "
        "difference in validation accuracy against the first value over those comparisons.\n\n" + "\n\n".join(parts)
    )


def _settings(v: TrialView) -> dict[str, str]:
    """A trial's swept settings, seed left out: its hyperparameters and its architecture's variant parameters."""
    out = {k: format_value(v.trial["hparams"].get(k)) for k in AXES if k != "seed"}
    out["architecture"] = v.trial["architecture"]
    out.update({f"{v.trial['architecture']}.{k}": format_value(x) for k, x in v.trial["variant"].items()})
    return out


def _order(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)
