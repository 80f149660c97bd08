"""What a run's records become as MLflow metrics, named in groups that MLflow's chart view shows as sections (the
part before '/'), the curves first: ``curves/val_acc`` (per epoch, the epoch as step), ``final/test_acc``,
``latency/onnxruntime.fp32.cpu.b1.p50_ms`` (the repetition as step) for a trial; ``best/test_acc``... for the run:
the summary of its best trial (ranked first by validation accuracy), so the experiment's chart view compares runs."""

from __future__ import annotations

from bench.core.formats import CPU_PROVIDERS
from bench.core.status import MeasurementStatus, Precision
from bench.results.percentiles import supported

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "elapsed_s")
FINAL_METRICS = (
    "test_acc",
    "test_loss",
    "val_acc",
    "val_loss",
    "train_acc",
    "train_loss",
    "best_epoch",
    "epochs_run",
    "params",
    "duration_s",
)
LATENCY_METRICS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput")
BEST_METRICS = ("test_acc", "val_acc", "train_acc", "params", "duration_s", "epochs_run")


def curve(key: str) -> str:
    return f"curves/{key}"


def epoch_values(record: dict) -> dict[str, list[tuple[int, float]]]:
    """Per curve metric, its (epoch, value) points."""
    out: dict[str, list[tuple[int, float]]] = {}
    for key in EPOCH_METRICS:
        points = [(e["epoch"], float(e[key])) for e in record.get("history") or [] if e.get(key) is not None]
        if points:
            out[curve(key)] = points
    return out


def final_values(record: dict) -> dict[str, float]:
    """A trial's final figures, and its variants' test accuracy."""
    finals = {f"final/{k}": record.get(k) for k in FINAL_METRICS}
    for variant in record.get("variants") or []:
        finals[f"final/test_acc_{variant['precision']}"] = variant.get("test_acc")
    return {k: float(v) for k, v in finals.items() if v is not None}


def latency_values(record: dict) -> list[tuple[str, float, int]]:
    """Every latency figure of a trial: (name, value, repetition)."""
    out = []
    for m in record.get("latency") or []:
        if m.get("status") != MeasurementStatus.OK:
            continue
        provider = str(m["provider"]).replace("ExecutionProvider", "").lower()
        where = f"{m['engine']}.{m['precision']}.{provider}.b{m['batch_size']}"
        out += [
            (f"latency/{where}.{key}", float(m[key]), int(m.get("repeat") or 1))
            for key in LATENCY_METRICS
            if m.get(key) is not None and _supported(key, m.get("n"))
        ]
    return out + serving_values(record)


def _supported(key: str, n: int | None) -> bool:
    """A percentile is logged only with the samples its early-stopping bound needs (bench.results.percentiles)."""
    return key not in ("p90_ms", "p99_ms") or supported(int(key[1:3]), n)


SERVING_METRICS = {"single-stream": ("p50_ms", "p90_ms", "p99_ms"), "offline": ("throughput",), "server": ("max_qps",)}


def serving_values(record: dict) -> list[tuple[str, float, int]]:
    """Every serving figure of a trial (``serving/onnxruntime.fp32.cpu.server.max_qps``, the repetition as step);
    a server configuration other than one worker alone is named by its workers and batching (w2.b8)."""
    out = []
    for r in record.get("serving") or []:
        if r.get("status") != MeasurementStatus.OK or not r.get("result"):
            continue
        provider = str(r["provider"]).replace("ExecutionProvider", "").lower()
        result, scenario = r["result"], r["scenario"]
        if scenario == "server" and (result.get("workers", 1), result.get("max_batch", 1)) != (1, 1):
            scenario += f".w{result['workers']}.b{result['max_batch']}"
        where = f"{r['engine']}.{r['precision']}.{provider}.{scenario}"
        out += [
            (f"serving/{where}.{key}", float(result[key]), int(r.get("repeat") or 1))
            for key in SERVING_METRICS.get(r["scenario"], ())
            if result.get(key) is not None
        ]
    return out


def best_values(records: list[dict]) -> dict[str, float]:
    """The run's summary: its best trial's figures (ranked first by validation accuracy), with that trial's number
    and its ONNX Runtime fp32 CPU latency at batch 1 where measured; empty while no trial has finished."""
    best = next((r for r in records if r.get("rank") == 1), None)
    if best is None:
        return {}
    out = {f"best/{k}": best.get(k) for k in BEST_METRICS}
    out["best/trial"] = best["trial"]
    out["best/onnx_test_acc"] = (best.get("onnx") or {}).get("onnx_test_acc")
    timed = [
        m
        for m in best.get("latency") or []
        if m.get("status") == MeasurementStatus.OK
        and m["engine"] == "onnxruntime"
        and m["provider"] in CPU_PROVIDERS
        and m["precision"] == Precision.FP32
        and m["batch_size"] == 1
    ]
    if timed:
        out["best/onnx_cpu_b1_p50_ms"] = min(timed, key=lambda m: m.get("repeat") or 1)["p50_ms"]
    return {k: float(v) for k, v in out.items() if v is not None}
