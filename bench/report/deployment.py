"""The report's deployment section: every architecture x engine x precision on one accuracy-latency front, each engine
and precision against PyTorch, each variant against its fp32 export, batch-size curves, repetitions."""

from __future__ import annotations

from bench.core.formats import device_of, engine_short, num, pct, times
from bench.core.status import MeasurementStatus, Precision
from bench.report import plots
from bench.report.views import TrialView
from bench.results import deployed
from bench.results.columns import Column, markdown
from bench.results.serving import UNSTABLE_RULE, spread
from bench.results.tables import VARIANT_COLUMNS, VARIANTS_METHOD, variants_of


def deployment_section(views: list[TrialView], write_png) -> str:
    """Every benchmarked architecture x engine x precision on one accuracy-latency front, each engine and precision
    against PyTorch, each variant against its fp32 export, and the batch-size curves."""
    parts = [
        part
        for part in (
            front_part(views, write_png),
            engines_part(views),
            variants_part(views),
            curves_part(views, write_png),
        )
        if part
    ]
    if not parts:
        return (
            "No model is benchmarked: `bench benchmark RUN` times the winners, `bench quantize RUN` adds int8 "
            "and fp16 variants, `--batch-curve` the batch-size curves."
        )
    if not any(part.startswith("### Batch-size curves") for part in parts):
        parts.append("No batch-size curve was measured (`bench benchmark RUN --batch-curve`).")
    if spread := repetitions_part(views):
        parts.append(spread)
    return "\n\n".join(parts)


FRONT_COLUMNS = (
    Column("point", lambda p: p["label"], left=True, style=lambda p: "bold" if p["front"] else None),
    Column("trial", lambda p: p["view"].name, left=True),
    Column("engine", lambda p: p["engine"], left=True),
    Column("precision", lambda p: p["precision"], left=True),
    Column("p50 batch 1 (ms)", lambda p: num(p["p50_ms"]) + (" (noisy)" if p["noisy"] else "")),
    Column("test %", lambda p: pct(p["test_acc"])),
)


def front_part(views: list[TrialView], write_png) -> str | None:
    """Every architecture x engine x precision measured on the CPU at batch 1, on one accuracy-latency front."""
    points = [
        {**p, "view": v, "label": f"{v.trial['architecture']} {p['precision']} {engine_short(p['engine'])}"}
        for v in views
        if v.trial.get("learned") is not False  # a model at chance is on no front, even when deployed by name
        for p in deployed.deployment_points(v.trial, v.export, v.variants, v.latency, v.evaluations)
    ]
    if not points:
        return None
    costs, accs = [p["p50_ms"] for p in points], [p["test_acc"] for p in points]
    png = write_png(
        "deployment_front.png",
        plots.tradeoff_plot(
            [p["label"] for p in points],
            costs,
            accs,
            "CPU latency, p50 at batch 1 (ms)",
            "Test accuracy against latency: every architecture x engine x precision",
            log_x=max(costs) > 10 * min(costs),
            colors=[p["engine"] for p in points],
            markers=[p["precision"] for p in points],
        ),
    )
    front = plots.pareto_front(list(zip(costs, accs, strict=True)))
    for i, p in enumerate(points):
        p["front"] = i in front
    listed = "; ".join(
        f"{points[i]['view'].name} {points[i]['engine']} {points[i]['precision']} ({pct(accs[i])}%, {num(costs[i])} ms)"
        for i in front
    )
    return (
        "### Accuracy against latency, every architecture x engine x precision\n\n"
        f"![Accuracy against latency]({png})\n\nEach point is one engine running one precision of a trial's "
        "model on the CPU, its accuracy measured through that engine on the whole test set. Pareto front (no other "
        f"engine x precision is both faster and more accurate): {listed}. It is labelled in the figure (short "
        "labels: architecture, precision, engine); every point is here, fastest first, the front in bold:\n\n"
        + markdown(FRONT_COLUMNS, sorted(points, key=lambda p: p["p50_ms"]))
    )


def _how(row: dict) -> str:
    """An engine's own words for how it ran a precision (its precision hint, how it quantized), or its failure."""
    if row["status"] != MeasurementStatus.OK:
        return row["note"] or ""
    method = row.get("method") or {}
    return "; ".join(str(method[k]) for k in (Precision.INT8, "precision_hint") if k in method)


ENGINE_COLUMNS = (
    Column("trial", lambda r: r["name"], left=True),
    Column("engine", lambda r: r["engine"], left=True),
    Column("precision", lambda r: r["precision"], left=True),
    Column("status", lambda r: r["status"], left=True),
    Column("test %", lambda r: pct(r["test_acc"])),
    Column("Δ points", lambda r: "-" if r["delta_points"] is None else f"{r['delta_points']:+.2f}"),
    Column("top-1 agree %", lambda r: pct(r["top1_agreement"])),
    Column("vs its fp32", lambda r: f"{times(r['vs_fp32'])} (batch {r['batch']})" if r["vs_fp32"] else "-"),
    Column("vs torch", lambda r: times(r["vs_torch"])),
    Column("cold start: load / first / steady ms", lambda r: r["cold"]),
    Column("how", _how, left=True),
)


def _cold(latency: list[dict], engine: str, precision: str) -> str:
    """The engine's cold start at batch 1 on the CPU: loading (session creation, compilation), the first
    inference, and the steady state (p50)."""
    row = next(
        (
            r
            for r in latency
            if (r["engine"], r["precision"], r["batch_size"]) == (engine, precision, 1)
            and r["provider"] in deployed.CPU_DEVICES
            and r["status"] == MeasurementStatus.OK
        ),
        None,
    )
    if row is None:
        return "-"
    return " / ".join("-" if row.get(k) is None else f"{row[k]:,.2f}" for k in ("session_ms", "first_ms", "p50_ms"))


def engines_part(views: list[TrialView]) -> str | None:
    rows = [
        {**r, "name": v.name, "cold": _cold(v.latency, r["engine"], r["precision"])}
        for v in views
        for r in deployed.engine_rows(v.trial, v.latency, v.evaluations)
    ]
    if not rows:
        return None
    return (
        "### Engines and precisions against PyTorch\n\nTest accuracy through each engine at each precision on "
        "the CPU over the whole test set; Δ in points and top-1 agreement against the PyTorch model (fp32); "
        "speedup as CPU p50 at the largest batch measured, over the same engine's fp32 and over PyTorch eager "
        "fp32; cold start at batch 1 on the CPU: loading the model (session creation, compilation), its first "
        "inference, then the steady p50.\n\n" + markdown(ENGINE_COLUMNS, rows)
    )


def variants_part(views: list[TrialView]) -> str | None:
    rows = variants_of(views)  # TrialView has a DeployResult's fields, and its report name
    if not rows:
        return None
    return f"### Variants against fp32\n\n{VARIANTS_METHOD}\n\n" + markdown(VARIANT_COLUMNS, rows)


def curves_part(views: list[TrialView], write_png) -> str | None:
    series, saturated = [], []
    for v in views:
        by_batch = {(r["precision"], r["engine"], r["provider"], r["batch_size"]): r for r in v.latency}
        for (precision, engine, provider), pts in deployed.curves(v.latency).items():
            label = f"{v.name} {precision} {engine_short(engine)} {device_of(provider)}"
            p50s = [by_batch[(precision, engine, provider, b)]["p50_ms"] for b, _ in pts]
            series.append((label, [b for b, _ in pts], [r for _, r in pts], p50s))
            stop = deployed.saturation(pts)
            saturated.append(
                f"{label}: "
                + (f"batch {stop} ({dict(pts)[stop]:,.0f} images/s)" if stop else f"none up to batch {pts[-1][0]}")
            )
    if not series:
        return None
    png = write_png("batch_curves.png", plots.batch_curve_plot(series, "Throughput and latency against batch size"))
    return (
        f"### Batch-size curves\n\n![Throughput and latency against batch size]({png})\n\nSaturation (the "
        f"smallest batch no larger batch beats by more than {100 * (deployed.SATURATION - 1):.0f}% in images/s): "
        + "; ".join(saturated)
        + "."
    )


REPETITION_COLUMNS = (
    Column("trial", lambda r: r["name"], left=True),
    Column("precision", lambda r: r["precision"], left=True),
    Column("engine", lambda r: engine_short(r["engine"]), left=True),
    Column("device", lambda r: device_of(r["provider"]), left=True),
    Column("batch", lambda r: str(r["batch_size"])),
    Column("repetitions", lambda r: str(len(r["same"]))),
    Column("median p50 (ms)", lambda r: num(r["p50_ms"])),
    Column("p50 range (ms)", lambda r: f"{num(r['p50_min_ms'])} - {num(r['p50_max_ms'])}"),
    Column("max / min", lambda r: times(r["p50_max_ms"] / r["p50_min_ms"])),
    Column("p50 mean ± std (ms)", lambda r: f"{num(r['spread']['mean'])} ± {num(r['spread']['std'])}"),
    Column("cv", lambda r: f"{r['spread']['cv']:.1%}"),
    Column("unstable", lambda r: "unstable" if r["spread"]["unstable"] else "no"),
    Column("noisy", lambda r: str(sum(bool(x.get("noisy")) for x in r["same"]))),
)


def repetitions_part(views: list[TrialView]) -> str | None:
    """Where models were measured several times (`bench benchmark --repeat N`): the spread of p50 across the
    repetitions of each figure, and how many of them were noisy."""

    def key(r: dict) -> tuple:
        return r["precision"], r["engine"], r["provider"], r["batch_size"]

    rows = [
        {**r, "name": v.name, "same": [x for x in v.repetitions if key(x) == key(r)]}
        for v in views
        for r in v.latency
        if (r.get("repeats") or 1) >= 2 and r["status"] == MeasurementStatus.OK
    ]
    if not rows:
        return None
    for r in rows:
        r["spread"] = spread([x["p50_ms"] for x in r["same"] if x["status"] == MeasurementStatus.OK])
    return (
        "### Repetitions\n\nEach figure measured several times, each repetition in a fresh worker process (its "
        "method says where it ran): the tables above show the repetition with the median p50; here its range, the "
        f"mean ± standard deviation of the repetitions' p50s and their coefficient of variation (cv); {UNSTABLE_RULE}."
        "\n\n" + markdown(REPETITION_COLUMNS, rows)
    )
