"""The report's deployment section: every architecture x engine x precision on one accuracy-latency front, each engine
and precision against PyTorch, each variant against its fp32 export, batch-size curves, repetitions."""

from __future__ import annotations

from bench.core.formats import device_of, engine_short, num, pct, times
from bench.report import plots as figures
from bench.report.views import TrialView, md_table
from bench.results import deployed as tradeoffs


def deployment_section(views: list[TrialView], write_png) -> str:
    """Every benchmarked architecture x engine x precision on one accuracy-latency front, each engine and precision
    against PyTorch, each variant against its fp32 export, and the batch-size curves."""
    parts = []
    points = [
        {**p, "view": v}
        for v in views
        for p in tradeoffs.deployment_points(v.trial, v.export, v.variants, v.latency, v.evaluations)
    ]
    if points:
        labels = [f"{p['view'].trial['architecture']} {p['precision']} {engine_short(p['engine'])}" for p in points]
        costs, accs = [p["p50_ms"] for p in points], [p["test_acc"] for p in points]
        png = write_png(
            "deployment_front.png",
            figures.tradeoff_plot(
                labels,
                costs,
                accs,
                "CPU latency, p50 at batch 1 (ms)",
                "Test accuracy against latency: every architecture x engine x precision",
                log_x=max(costs) > 10 * min(costs),
                colors=[p["engine"] for p in points],
                markers=[p["precision"] for p in points],
            ),
        )
        front = set(figures.pareto_front(list(zip(costs, accs, strict=True))))
        rows = [
            [
                ("**" if i in front else "") + labels[i] + ("**" if i in front else ""),
                p["view"].name,
                p["engine"],
                p["precision"],
                num(p["p50_ms"]) + (" (noisy)" if p["noisy"] else ""),
                pct(p["test_acc"]),
            ]
            for i, p in sorted(enumerate(points), key=lambda x: x[1]["p50_ms"])
        ]
        listed = "; ".join(
            f"{points[i]['view'].name} {points[i]['engine']} {points[i]['precision']} ({pct(accs[i])}%, "
            f"{num(costs[i])} ms)"
            for i in figures.pareto_front(list(zip(costs, accs, strict=True)))
        )
        parts.append(
            "### Accuracy against latency, every architecture x engine x precision\n\n"
            f"![Accuracy against latency]({png})\n\nEach point is one engine running one precision of a trial's "
            "model on the CPU, its accuracy measured through that engine on the whole test set. Pareto front (no other "
            f"engine x precision is both faster and more accurate): {listed}. It is labelled in the figure (short "
            "labels: architecture, precision, engine); every point is here, fastest first, the front in bold:\n\n"
            + md_table(["point", "trial", "engine", "precision", "p50 batch 1 (ms)", "test %"], rows)
        )
    engines = [
        [
            v.name,
            r["engine"],
            r["precision"],
            r["status"],
            pct(r["test_acc"]),
            "-" if r["delta_points"] is None else f"{r['delta_points']:+.2f}",
            pct(r["top1_agreement"]),
            f"{times(r['vs_fp32'])} (batch {r['batch']})" if r["vs_fp32"] else "-",
            times(r["vs_torch"]),
            _how(r),
        ]
        for v in views
        for r in tradeoffs.engine_rows(v.trial, v.latency, v.evaluations)
    ]
    if engines:
        parts.append(
            "### Engines and precisions against PyTorch\n\nTest accuracy through each engine at each precision on "
            "the CPU over the whole test set; Δ in points and top-1 agreement against the PyTorch model (fp32); "
            "speedup as CPU p50 at the largest batch measured, over the same engine's fp32 and over PyTorch eager "
            "fp32.\n\n"
            + md_table(
                [
                    "trial",
                    "engine",
                    "precision",
                    "status",
                    "test %",
                    "Δ points",
                    "top-1 agree %",
                    "vs its fp32",
                    "vs torch",
                    "how",
                ],
                engines,
            )
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


def _how(row: dict) -> str:
    """An engine's own words for how it ran a precision (its precision hint, how it quantized), or its failure."""
    if row["status"] != "ok":
        return row["note"] or ""
    method = row.get("method") or {}
    return "; ".join(str(method[k]) for k in ("int8", "precision_hint") if k in method)
