"""The tables `bench run`/`bench quantize` show and the report writes alike, one column spec each
(bench.results.columns): every int8/fp16 variant against its fp32 export."""

from __future__ import annotations

from bench.core.formats import pct, times, trial_label
from bench.core.status import VariantStatus
from bench.results.columns import Column
from bench.results.deployed import variant_rows

VARIANT_STYLE = {VariantStatus.FLAGGED: "yellow", VariantStatus.FAILED: "red"}


def variants_of(results) -> list[dict]:
    """One row per (trial, variant) of ``results`` (bench.deploy.steps.DeployResult, or anything with their trial,
    export, variants and latency): the variant against its fp32 export (bench.results.deployed.variant_rows), with
    the trial's ``name`` (its label unless the result has one)."""
    return [
        {**row, "name": getattr(r, "name", "") or trial_label(r.trial["idx"]), "architecture": r.trial["architecture"]}
        for r in results
        for row in variant_rows(r.export, r.variants, r.latency)
    ]


def _largest(row: dict) -> str:
    if row["speedup_largest"] is None:
        return "-"
    return f"{times(row['speedup_largest'])} (batch {row['largest_batch']})"


VARIANT_COLUMNS = (
    Column("trial", lambda r: r["name"], left=True),
    Column("architecture", lambda r: r["architecture"], left=True),
    Column("precision", lambda r: r["precision"], left=True),
    Column("status", lambda r: r["status"], left=True, style=lambda r: VARIANT_STYLE.get(r["status"])),
    Column("test %", lambda r: pct(r["test_acc"]), lambda r: r["test_acc"]),
    Column(
        "Δ points",
        lambda r: "-" if r["delta_points"] is None else f"{r['delta_points']:+.2f}",
        lambda r: r["delta_points"],
    ),
    Column("top-1 agree %", lambda r: pct(r["top1_agreement"]), lambda r: r["top1_agreement"]),
    Column("size ratio", lambda r: times(r["size_ratio"]), lambda r: r["size_ratio"]),
    Column("speedup b1", lambda r: times(r["speedup_batch1"]), lambda r: r["speedup_batch1"]),
    Column("speedup largest", _largest, lambda r: r["speedup_largest"]),
    Column("how made", lambda r: r["how"], left=True, wrap=True),
)
VARIANTS_METHOD = (
    "Test accuracy through onnxruntime (CPU) on the whole test set; Δ in points against the fp32 export measured the "
    "same way; size and speedup (ORT CPU p50, batch 1 and the largest batch both were measured at) as variant over "
    "fp32. A variant is *flagged* when it loses more than its allowed points, and kept."
)
