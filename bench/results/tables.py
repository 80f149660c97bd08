"""The tables `bench run`/`bench quantize` show and the report writes alike, one column spec each
(bench.results.columns): every int8/fp16 variant against its fp32 export; the swept hyperparameters of every trial
table."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bench.core.formats import pct, times, trial_label
from bench.core.status import VariantStatus
from bench.results.columns import Column
from bench.results.deployed import variant_rows

VARIANT_STYLE = {VariantStatus.FLAGGED: "yellow", VariantStatus.FAILED: "red"}

# The hyperparameters every trial table has a column of; the others appear where they vary (swept).
SHOWN_HPARAMS = ("optimizer", "lr", "batch_size")


def swept(rows: list, hparams: Callable[[Any], dict]) -> list[str]:
    """The hyperparameters beside SHOWN_HPARAMS that take more than one value among ``rows`` (``hparams(row)``: its
    hyperparameters), in the order trials record them: `--freeze none,backbone --head-lr 1,10` makes 4 trials that
    differ only there, and every trial table shows those columns so that no two of its rows read the same."""
    values: dict[str, set[str]] = {}
    for row in rows:
        for k, v in hparams(row).items():
            values.setdefault(k, set()).add(json.dumps(v, sort_keys=True, default=str))
    return [
        k
        for k, vs in values.items()
        if k not in SHOWN_HPARAMS and (len(vs) > 1 or any(k not in hparams(r) for r in rows))
    ]


def hparam_text(key: str, value) -> str:
    """A hyperparameter as a table cell: 0.001, backbone, a weights file without its pinned hash."""
    if value is None:
        return "-"
    if key == "weights" and isinstance(value, str):
        return value.split("#sha256=")[0]
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "-".join(map(str, value))
    return str(value)


def swept_columns(rows: list, hparams: Callable[[Any], dict]) -> list[Column]:
    """A column for each swept hyperparameter of ``rows``."""
    return [Column(k, lambda r, k=k: hparam_text(k, hparams(r).get(k)), left=True) for k in swept(rows, hparams)]


def swept_text(row_hparams: dict, keys: list[str]) -> str:
    """The swept hyperparameters of one trial, as a line of text: freeze=backbone head_lr=10."""
    return " ".join(f"{k}={hparam_text(k, row_hparams.get(k))}" for k in keys)


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
