"""Timing a trial's deployed models: every engine and precision under the protocol, recorded with the test accuracy
each engine gives (`benchmark_trial`); and one ONNX file or PyTorch module in one engine, for scripts and notebooks
(`measure_file`, `measure_module`)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from bench.core.errors import one_line
from bench.core.status import MeasurementStatus, Precision
from bench.data.splits import Dataset
from bench.deploy.trials import deployable, test_images
from bench.models.stats import activation_bytes
from bench.options.config import default
from bench.plugins.manager import get_plugins
from bench.runtime import measure
from bench.runtime.engines import EngineModel
from bench.runtime.protocol import BenchSettings, Measurement, check_batch_sizes
from bench.runtime.serve import serve_all
from bench.store import Store


def benchmark_trial(
    store: Store,
    run: dict,
    trial: dict,
    data: Dataset,
    settings: BenchSettings,
    calibration_images: int = default("calibration_images"),
) -> list[dict]:
    """Latency of the trial's verified model in every engine ``settings`` asks for (bench.runtime.engines), at every
    precision each runs (ONNX Runtime: the fp32 export and its int8/fp16 variants; PyTorch: the model itself;
    OpenVINO: the export at fp32 and bf16 and its own int8), then the test accuracy each engine gives at each
    precision, then the serving scenarios asked for (bench.runtime.serve); nothing for a failed export."""
    model = deployable(store, run, trial, data, calibration_images)
    check_batch_sizes(settings.batch_sizes, data.input_shape, activation_bytes(model.module, data.input_shape))
    engines = get_plugins().engines.select(settings.engines)
    images, labels = test_images(data, trial)
    rows, served = [], []
    for repeat in range(1, settings.repeat + 1):  # each repetition times every model once: drifts show as spread
        measured, serving = _repetition_in_its_process(model, images, settings, engines, repeat)
        rows += _rows(measured, repeat)
        served += serving
    # Recorded together once all are measured: a model has the whole benchmark or none of it (a stopped
    # benchmark is done again on resume).
    store.record_latencies(trial["id"], rows)
    store.record_evaluations(trial["id"], evaluations(model, engines, images, labels, settings))
    if settings.scenario:
        store.record_serving(trial["id"], served)
    return store.latency_of(trial["id"])


def repetition(model: EngineModel, images, settings: BenchSettings, engines: list, repeat: int, threads: int):
    """One repetition of the benchmark: every engine's measurements under the protocol and its serving scenarios
    (``engines``: their names when run in a worker process, which loads the plugins again)."""
    torch.set_num_threads(threads)
    if engines and isinstance(engines[0], str):
        engines = get_plugins().engines.select(engines)
    measured = measure.benchmark(model, images, settings, engines)
    return measured, serve_all(model, images, settings, engines, repeat) if settings.scenario else []


def _repetition_in_its_process(model, images, settings: BenchSettings, engines: list, repeat: int):
    """repetition(), with --repeat N in a fresh worker process each (pyperf's way: each its own memory layout,
    allocator and thread pools, so that the spread of the repetitions is the spread a user meets); in this process
    when N is 1, or when a fresh process cannot run it (an engine or model registered in this process only), which
    its method records."""
    threads = settings.bench_threads or torch.get_num_threads()
    where = "the benchmark's own process"
    if settings.repeat > 1:
        try:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                names = [e.name for e in engines]
                measured, served = pool.submit(repetition, model, images, settings, names, repeat, threads).result()
            where = f"a fresh worker process (spawn), repetition {repeat} of {settings.repeat}"
        except Exception as exc:  # what a fresh process cannot import or load: measured here, and said
            measured, served = None, None
            where = f"the benchmark's own process (a fresh one failed: {one_line(exc, 150)})"
    if settings.repeat == 1 or measured is None:
        measured, served = repetition(model, images, settings, engines, repeat, threads)
    for m in measured:
        m.method["process"] = where
    for row in served:
        row["method"] = {**(row.get("method") or {}), "process": where}
    return measured, served


def _rows(measurements, repeat: int) -> list[dict]:
    return [
        {
            "precision": m.precision,
            "repeat": repeat,
            "engine": m.engine,
            "provider": m.provider,
            "batch_size": m.batch_size,
            "status": m.status,
            "note": m.note,
            "session_ms": m.session_ms,
            "first_ms": m.first_ms,
            "warmup": m.warmup,
            "total_s": m.total_s,
            "peak_rss_mb": m.peak_rss_mb,
            "samples": [round(x, 4) for x in m.samples],
            "method": m.method,
            **m.summary(),
        }
        for m in measurements
    ]


def evaluations(
    model: EngineModel, engines: list, images: torch.Tensor, labels: torch.Tensor, settings: BenchSettings
) -> list[dict]:
    """The test accuracy of every engine at every precision it runs on the CPU, and its top-1 agreement with the
    PyTorch model's fp32 predictions."""
    threads = settings.bench_threads or torch.get_num_threads()
    with torch.inference_mode():
        reference = torch.cat([model.module(images[i : i + 256]) for i in range(0, len(images), 256)]).argmax(1)
    rows = []
    for entry in engines:
        try:
            devices, precisions = dict(entry.engine.devices()), dict(entry.engine.precisions(model))
        except Exception as exc:  # a broken engine plugin: recorded against it, the others go on
            rows.append(
                {
                    "engine": entry.name,
                    "precision": Precision.FP32,
                    "images": len(images),
                    "status": MeasurementStatus.FAILED,
                    "note": one_line(exc, 200),
                }
            )
            continue
        for precision, why in precisions.items():
            row = {"engine": entry.name, "precision": precision, "images": len(images)}
            why = why or devices.get("cpu", "it does not run on the CPU")
            if why:
                rows.append({**row, "status": MeasurementStatus.UNAVAILABLE, "note": why})
                continue
            try:
                logits, method = measure.evaluate(entry, model, precision, images, threads)
                predictions = torch.from_numpy(logits.argmax(1))
            except Exception as exc:  # one engine's failure is recorded, the others go on
                rows.append({**row, "status": MeasurementStatus.FAILED, "note": one_line(exc, 200)})
                continue
            rows.append(
                {
                    **row,
                    "method": method,
                    "status": MeasurementStatus.OK,
                    "test_acc": int((predictions == labels).sum()) / len(labels),
                    "top1_agreement": int((predictions == reference).sum()) / len(labels),
                }
            )
    return rows


def measure_file(
    path,
    images: torch.Tensor,
    batch_size: int,
    device: str,
    settings: BenchSettings,
    threads: int,
    engine: str = "onnxruntime",
    precision: str = Precision.FP32,
) -> Measurement:
    """One ONNX file at one batch size in one engine, under the protocol (for scripts and notebooks: a trial's
    files are measured by benchmark_trial)."""
    model = EngineModel(Path(path), {precision: Path(path)}, None, tuple(images.shape[1:]))
    return _measure_in(engine, model, device, precision, batch_size, images, settings, threads)


def measure_module(
    module,
    images: torch.Tensor,
    batch_size: int,
    device: str,
    settings: BenchSettings,
    threads: int,
    engine: str = "torch",
) -> Measurement:
    """A PyTorch module at one batch size in a PyTorch engine (eager, or torch-compile), under the protocol."""
    model = EngineModel(Path(), {}, module.eval(), tuple(images.shape[1:]))
    return _measure_in(engine, model, device, Precision.FP32, batch_size, images, settings, threads)


def _measure_in(
    engine: str, model: EngineModel, device, precision, batch_size, images, settings, threads
) -> Measurement:
    (entry,) = get_plugins().engines.select([engine])
    return measure.measure(entry, model, device, precision, batch_size, images, settings, threads)
