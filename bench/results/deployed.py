"""Deployment figures derived from stored rows, for the terminal tables and the report alike: each int8/fp16
variant against its fp32 export, the accuracy-latency points of every model x precision, and where a
batch-size curve stops paying. Nothing is measured here; every number comes from the store."""

from __future__ import annotations

from bench.core.formats import CPU_PROVIDERS as CPU
from bench.core.status import MeasurementStatus, Precision, VariantStatus

CPU_DEVICES = CPU  # onnxruntime's CPU provider, and every other engine's cpu

SATURATION = 1.10  # throughput has saturated at a batch when no larger batch is more than 10% faster


def representative(latency: list[dict]) -> list[dict]:
    """One row per (precision, engine, provider, batch size), in their order: of several repetitions (`bench
    benchmark --repeat N`), the one whose p50 is the median of those that ran, with ``repeats`` (how many were
    measured) and ``p50_min_ms``/``p50_max_ms`` (their range). The store keeps every repetition."""
    groups: dict[tuple, list[dict]] = {}
    for r in latency:
        groups.setdefault((r["precision"], r["engine"], r["provider"], r["batch_size"]), []).append(r)
    out = []
    for rows in groups.values():
        ran = sorted(
            (r for r in rows if r["status"] == MeasurementStatus.OK and r["p50_ms"] is not None),
            key=lambda r: r["p50_ms"],
        )
        chosen = ran[(len(ran) - 1) // 2] if ran else rows[-1]
        p50s = [r["p50_ms"] for r in ran]
        out.append(
            {
                **chosen,
                "repeats": len(rows),
                "p50_min_ms": min(p50s, default=None),
                "p50_max_ms": max(p50s, default=None),
            }
        )
    return out


def trustworthy(row: dict | None) -> bool:
    """A measurement that ran and is not marked noisy (bench.core.noise)."""
    return bool(row) and row["status"] == MeasurementStatus.OK and not row.get("noisy")


RATIO_RULE = "a ratio of two timings is given only where neither is noisy (else -)"


def speedup(before: dict | None, after: dict | None) -> float | None:
    """How many times faster ``after`` ran than ``before`` (their p50s' ratio): None unless both ran and neither is
    noisy. The one rule for every ratio of timings cnnbench shows (RATIO_RULE)."""
    if not (trustworthy(before) and trustworthy(after)):
        return None
    return before["p50_ms"] / after["p50_ms"]


def ort_cpu(latency: list[dict], precision: str, batch: int | None = None) -> dict | None:
    """The ONNX Runtime CPU measurement of ``precision`` at ``batch`` (None: the largest batch measured)."""
    rows = [
        r
        for r in latency
        if r["engine"] == "onnxruntime"
        and r["provider"] in CPU
        and r["status"] == MeasurementStatus.OK
        and r["precision"] == precision
    ]
    if batch is None:
        return max(rows, key=lambda r: r["batch_size"], default=None)
    return next((r for r in rows if r["batch_size"] == batch), None)


def how_made(variant: dict) -> str:
    """The method of a variant in a few words, with the operators left in float and any note."""
    m = variant.get("method") or {}
    if variant["status"] == VariantStatus.FAILED or not m:
        return variant.get("note") or ""
    if m.get("kind") == "static":
        words = f"static {m['format']}, {m['calibration_method']} on {m['calibration_images']} images"
    elif m.get("kind") == "dynamic":
        words = "dynamic"
    else:
        words = m.get("io", m.get("kind", ""))
    floats = (m.get("operators") or {}).get("float")
    if floats:
        words += "; left in float: " + ", ".join(f"{k} {v}" for k, v in sorted(floats.items()))
    return words + (f"; {variant['note']}" if variant.get("note") else "")


def variant_rows(export: dict | None, variants: list[dict], latency: list[dict]) -> list[dict]:
    """Each variant against the fp32 export: accuracy change (points), top-1 agreement, size ratio and ORT CPU
    speedup at batch 1 and at the largest batch both were measured at (None where either figure is noisy)."""
    out = []
    fp32_size = export.get("size_bytes") if export else None
    for v in variants:
        p = v["precision"]
        b1 = [ort_cpu(latency, x, 1) for x in (Precision.FP32, p)]
        common = {r["batch_size"] for r in latency if r["precision"] == p and r["status"] == MeasurementStatus.OK} & {
            r["batch_size"] for r in latency if r["precision"] == Precision.FP32 and r["status"] == MeasurementStatus.OK
        }
        big = [ort_cpu(latency, x, max(common)) for x in (Precision.FP32, p)] if common else [None, None]
        out.append(
            {
                "precision": p,
                "status": v["status"],
                "test_acc": v["test_acc"],
                "fp32_test_acc": v["fp32_test_acc"],
                "delta_points": None
                if v["test_acc"] is None or v["fp32_test_acc"] is None
                else 100 * (v["test_acc"] - v["fp32_test_acc"]),
                "top1_agreement": v["top1_agreement"],
                "size_ratio": v["size_bytes"] / fp32_size if v["size_bytes"] and fp32_size else None,
                "speedup_batch1": speedup(*b1),
                "speedup_largest": speedup(*big),
                "largest_batch": max(common) if common else None,
                "how": how_made(v),
            }
        )
    return out


def accuracies(trial: dict, export: dict | None, variants: list[dict], evaluations: list[dict]) -> dict:
    """(engine, precision) -> the test accuracy that engine gives at that precision, on the CPU over the whole test
    set (stores from before engines were evaluated: the ONNX files' accuracy through onnxruntime, PyTorch's own)."""
    accuracy = {
        (e["engine"], e["precision"]): e["test_acc"] for e in evaluations if e["status"] == MeasurementStatus.OK
    }
    if export and export.get("onnx_test_acc") is not None:
        accuracy.setdefault(("onnxruntime", Precision.FP32), export["onnx_test_acc"])
    for v in variants:
        if v["status"] != VariantStatus.FAILED and v["test_acc"] is not None:
            accuracy.setdefault(("onnxruntime", v["precision"]), v["test_acc"])
    if trial.get("test_acc") is not None:
        accuracy.setdefault(("torch", Precision.FP32), trial["test_acc"])
    return accuracy


def too_lossy(reference_correct: int, correct: int, images: int, allowed_points: float) -> bool:
    """Whether a model that classifies ``correct`` of ``images`` test images right, where the reference does
    ``reference_correct``, loses more than ``allowed_points`` points of accuracy: counted in images (lost x 100 >
    allowed x images), never in rounded shares, so a drop of exactly the allowance (1.00 points: 0.44 -> 0.43) is
    allowed."""
    return (reference_correct - correct) * 100 > allowed_points * images


def deployment_points(
    trial: dict, export: dict | None, variants: list[dict], latency: list[dict], evaluations: list[dict], batch: int = 1
) -> list[dict]:
    """Every (engine, precision) of a trial measured on the CPU at ``batch`` with a test accuracy: the points of the
    deployment trade-off, with that engine's accuracy at that precision (stores from before engines were evaluated:
    the ONNX files' accuracy through onnxruntime, and PyTorch's own)."""
    accuracy = accuracies(trial, export, variants, evaluations)
    out = []
    for r in latency:
        key = (r["engine"], r["precision"])
        if (
            r["status"] == MeasurementStatus.OK
            and r["provider"] in CPU_DEVICES
            and r["batch_size"] == batch
            and key in accuracy
        ):
            out.append(
                {
                    "engine": key[0],
                    "precision": key[1],
                    "p50_ms": r["p50_ms"],
                    "test_acc": accuracy[key],
                    "noisy": bool(r.get("noisy")),
                }
            )
    return out


def engine_rows(trial: dict, latency: list[dict], evaluations: list[dict]) -> list[dict]:
    """Each (engine, precision) against PyTorch's fp32 model: its test accuracy and the change in points, and its
    speedup (CPU p50 at the largest batch both measured) over PyTorch eager fp32 and over its own engine's fp32
    (None where either figure is noisy)."""

    def p50(engine, precision, batch):
        return next(
            (
                r
                for r in latency
                if r["engine"] == engine
                and r["precision"] == precision
                and r["batch_size"] == batch
                and r["provider"] in CPU_DEVICES
                and r["status"] == MeasurementStatus.OK
            ),
            None,
        )

    out = []
    for e in evaluations:
        batches = [r["batch_size"] for r in latency if r["engine"] == e["engine"] and r["provider"] in CPU_DEVICES]
        batch = max(batches, default=None)
        own, base, own_fp32 = (
            p50(e["engine"], e["precision"], batch),
            p50("torch", Precision.FP32, batch),
            p50(e["engine"], Precision.FP32, batch),
        )
        out.append(
            {
                "engine": e["engine"],
                "precision": e["precision"],
                "status": e["status"],
                "note": e["note"],
                "test_acc": e["test_acc"],
                "top1_agreement": e["top1_agreement"],
                "batch": batch,
                "delta_points": None
                if e["test_acc"] is None or trial.get("test_acc") is None
                else 100 * (e["test_acc"] - trial["test_acc"]),
                "vs_torch": speedup(base, own),
                "vs_fp32": speedup(own_fp32, own),
                "method": e.get("method"),
            }
        )
    return out


def curves(latency: list[dict]) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
    """(precision, engine, provider) -> [(batch size, images/s)] for every series measured at 3 or more batch
    sizes, in batch order."""
    series: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for r in latency:
        if r["status"] == MeasurementStatus.OK and r["throughput"]:
            key = (r["precision"], r["engine"], r["provider"])
            series.setdefault(key, []).append((r["batch_size"], r["throughput"]))
    return {k: sorted(v) for k, v in series.items() if len(v) >= 3}


def saturation(points: list[tuple[int, float]]) -> int | None:
    """The smallest batch size whose throughput is within 10% of the best at it or any larger batch measured:
    past it, larger batches add less than 10%. None when only the largest batch is (throughput may still grow
    beyond it). Robust to one noisy point, which a first-doubling-under-10% rule is not."""
    for i, (batch, rate) in enumerate(points[:-1]):
        if max(r for _, r in points[i:]) <= SATURATION * rate:
            return batch
    return None
