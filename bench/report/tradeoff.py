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
    return "\n\n".join(parts)


def effects(done: list[TrialView]) -> str:
    axes: dict[str, dict[str, list[TrialView]]] = {}
    for v in done:
        for k in AXES:
            axes.setdefault(k, {}).setdefault(format_value(v.trial["hparams"].get(k)), []).append(v)
        for k, value in v.trial["variant"].items():
            axes.setdefault(f"{v.trial['architecture']}.{k}", {}).setdefault(format_value(value), []).append(v)
    parts = []
    for axis, groups in axes.items():
        if len(groups) < 2:
            continue
        rows = []
        for value, group in groups.items():
            vals = [g.trial["val_acc"] for g in group]
            tests = [g.trial["test_acc"] for g in group]
            rows.append(
                [value, str(len(group)), pct(sum(vals) / len(vals)), pct(max(vals)), pct(sum(tests) / len(tests))]
            )
        parts.append(f"**{axis}**\n\n" + md_table(["value", "trials", "mean val %", "best val %", "mean test %"], rows))
    return "\n\n".join(parts) or "Nothing was swept: every completed trial used the same parameters."
