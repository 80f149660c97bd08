"""The report's trade-off sections: test accuracy against latency and size with their Pareto fronts, the effect of each
swept parameter, and deployment (every model x precision, each variant against fp32, batch-size curves)."""

from __future__ import annotations

from bench import figures, tradeoffs
from bench.architectures import format_value
from bench.formats import CPU_PROVIDERS, device_of, engine_short, num, pct, times
from bench.options import AXES
from bench.report.views import TrialView, md_table


def tradeoff_section(views: list[TrialView], write_png) -> str:
    parts = []
    done = [v for v in views if v.test_rank is not None]
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
    parts.append("### Effect of each swept parameter on validation accuracy\n\n" + effects(done))
    return "\n\n".join(parts)


def _tradeoff(write_png, filename, views, costs, what, xlabel, title, rule, show, log_x=False) -> str:
    """A test-accuracy-against-cost figure and its Pareto front in words."""
    labels = [v.name for v in views]
    accs = [v.trial["test_acc"] for v in views]
    png = write_png(filename, figures.tradeoff_plot(labels, costs, accs, xlabel, title, log_x=log_x))
    front = figures.pareto_front(list(zip(costs, accs, strict=True)))
    return (
        f"### Test accuracy against {what}\n\n![Test accuracy against {what}]({png})\n\nPareto front ({rule}): "
        + "; ".join(f"{labels[i]} ({pct(accs[i])}%, {show(costs[i])})" for i in front)
        + "."
    )


def deployment_section(views: list[TrialView], write_png) -> str:
    """Every benchmarked model x precision on one accuracy-latency front, each variant against its fp32 export,
    and the batch-size curves."""
    parts = []
    points = [p for v in views for p in tradeoffs.accuracy_latency_points(v.name, v.export, v.variants, v.latency)]
    if points:
        labels, costs, accs = (list(x) for x in zip(*points, strict=True))
        png = write_png(
            "deployment_front.png",
            figures.tradeoff_plot(
                labels,
                costs,
                accs,
                "ONNX Runtime CPU latency, p50 at batch 1 (ms)",
                "Test accuracy (ONNX Runtime) against latency: every model x precision",
                point="model x precision",
            ),
        )
        front = figures.pareto_front(list(zip(costs, accs, strict=True)))
        parts.append(
            "### Accuracy against latency, every model x precision\n\n"
            f"![Accuracy against latency, every model x precision]({png})\n\nPareto front (no other model x "
            "precision is both faster and more accurate): "
            + "; ".join(f"{labels[i]} ({pct(accs[i])}%, {num(costs[i])} ms)" for i in front)
            + "."
        )
    rows = []
    ratio = times
    for v in views:
        for r in tradeoffs.variant_rows(v.export, v.variants, v.latency):
            delta = "-" if r["delta_points"] is None else f"{r['delta_points']:+.2f}"
            largest = f"{ratio(r['speedup_largest'])} (batch {r['largest_batch']})" if r["largest_batch"] else "-"
            rows.append(
                [
                    v.name,
                    v.trial["architecture"],
                    r["precision"],
                    r["status"],
                    pct(r["test_acc"]),
                    delta,
                    pct(r["top1_agreement"]),
                    ratio(r["size_ratio"]),
                    ratio(r["speedup_batch1"]),
                    largest,
                    r["how"],
                ]
            )
    if rows:
        parts.append(
            "### Variants against fp32\n\nTest accuracy through onnxruntime (CPU) on the whole test set; Δ in points "
            "against the fp32 export measured the same way; size and speedup (ORT CPU p50) as variant over fp32. "
            "A variant is *flagged* when it loses more than its allowed points, and kept.\n\n"
            + md_table(
                [
                    "trial",
                    "architecture",
                    "precision",
                    "status",
                    "test %",
                    "Δ points",
                    "top-1 agree %",
                    "size ratio",
                    "speedup b1",
                    "speedup largest",
                    "how made",
                ],
                rows,
            )
        )
    curve_series, saturated = [], []
    for v in views:
        by_batch = {(r.get("precision") or "fp32", r["engine"], r["provider"], r["batch_size"]): r for r in v.latency}
        for (precision, engine, provider), pts in tradeoffs.curves(v.latency).items():
            label = f"{v.name} {precision} {engine_short(engine)} {device_of(provider)}"
            p50s = [by_batch[(precision, engine, provider, b)]["p50_ms"] for b, _ in pts]
            curve_series.append((label, [b for b, _ in pts], [r for _, r in pts], p50s))
            stop = tradeoffs.saturation(pts)
            saturated.append(
                f"{label}: "
                + (f"batch {stop} ({dict(pts)[stop]:,.0f} images/s)" if stop else f"none up to batch {pts[-1][0]}")
            )
    if curve_series:
        png = write_png(
            "batch_curves.png", figures.batch_curve_plot(curve_series, "Throughput and latency against batch size")
        )
        parts.append(
            f"### Batch-size curves\n\n![Throughput and latency against batch size]({png})\n\nSaturation (the "
            f"smallest batch no larger batch beats by more than {100 * (tradeoffs.SATURATION - 1):.0f}% in images/s): "
            + "; ".join(saturated)
            + "."
        )
    if not parts:
        return (
            "No model is benchmarked: `bench benchmark RUN` times the winners, `bench quantize RUN` adds int8 "
            "and fp16 variants, `--batch-curve` the batch-size curves."
        )
    if not curve_series:
        parts.append("No batch-size curve was measured (`bench benchmark RUN --batch-curve`).")
    if spread := repetitions_table(views):
        parts.append(spread)
    return "\n\n".join(parts)


def repetitions_table(views: list[TrialView]) -> str | None:
    """Where models were measured several times (`bench benchmark --repeat N`): the spread of p50 across the
    repetitions of each figure, and how many of them were noisy."""
    rows = []
    for v in views:
        for r in v.latency:
            if (r.get("repeats") or 1) < 2 or r["status"] != "ok":
                continue
            same = [
                x
                for x in v.repetitions
                if (x.get("precision") or "fp32", x["engine"], x["provider"], x["batch_size"])
                == (r.get("precision") or "fp32", r["engine"], r["provider"], r["batch_size"])
            ]
            noisy = sum(bool(x.get("noisy")) for x in same)
            rows.append(
                [
                    v.name,
                    r.get("precision") or "fp32",
                    engine_short(r["engine"]),
                    device_of(r["provider"]),
                    str(r["batch_size"]),
                    str(len(same)),
                    num(r["p50_ms"]),
                    f"{num(r['p50_min_ms'])} - {num(r['p50_max_ms'])}",
                    times(r["p50_max_ms"] / r["p50_min_ms"]),
                    str(noisy),
                ]
            )
    if not rows:
        return None
    header = [
        "trial",
        "precision",
        "engine",
        "device",
        "batch",
        "repetitions",
        "median p50 (ms)",
        "p50 range (ms)",
        "max / min",
        "noisy",
    ]
    return (
        "### Repetitions\n\nEach figure measured several times, one repetition after the other: the tables above "
        "show the repetition with the median p50; here its range.\n\n" + md_table(header, rows)
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
            if not trials:
                continue
            mean = _mean([x for c in matched if value in c for x in c[value]])
            delta = _mean([a - b for a, b in pairs]) if pairs and value != reference else None
            rows.append(
                [value, str(trials), str(len(pairs)), pct(mean), "-" if delta is None else f"{100 * delta:+.2f}"]
            )
        parts.append(
            f"**{axis}**: {len(matched)} matched comparison{'s' * (len(matched) != 1)}\n\n"
            + md_table(
                ["value", "trials", f"comparisons with {reference}", "mean val %", f"Δ points vs {reference}"], rows
            )
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
