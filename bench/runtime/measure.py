"""Measuring engines under the protocol (bench.runtime.protocol): one engine, device, precision and batch size
(`measure`), every one a model's engines can run (`benchmark`), and the logits an engine gives for the test accuracy
(`evaluate`). One engine's failure is recorded against it; the others go on."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import torch

from bench.core.errors import one_line
from bench.core.noise import Watch
from bench.core.status import MeasurementStatus, Precision
from bench.runtime import onnxrt
from bench.runtime.engines import EngineEntry, EngineModel, Unavailable
from bench.runtime.protocol import (
    CURVE_LIMIT_MS,
    PERCENTILE_METHOD,
    BenchSettings,
    Measurement,
    PeakMemory,
    batch_of,
    timed_runs,
)


def device_name(engine: str, device: str) -> str:
    """The device as the store names it: onnxruntime's execution provider, else the device itself."""
    return onnxrt.PROVIDERS.get(device, device) if engine == "onnxruntime" else device


def measure(
    entry: EngineEntry,
    model: EngineModel,
    device: str,
    precision: str,
    batch_size: int,
    images: torch.Tensor,
    settings: BenchSettings,
    threads: int,
) -> Measurement:
    """One engine, device, precision and batch size under the protocol."""
    m = Measurement(
        entry.name, device_name(entry.name, device), batch_size, precision=precision, warmup=settings.warmup
    )
    m.method = {
        "percentiles": PERCENTILE_METHOD,
        "timer": "time.perf_counter, after the engine's sync",
        "warmup": settings.warmup,
        "min_runs": settings.min_runs,
        "min_time_s": settings.min_time,
    }
    x = batch_of(images, batch_size).cpu().numpy().astype(np.float32)
    memory = PeakMemory()
    t0 = time.perf_counter()
    try:
        session = entry.engine.load(model, device, precision, threads, settings, x)
    except Unavailable as exc:
        m.status, m.note = MeasurementStatus.UNAVAILABLE, str(exc)
        return m
    try:
        m.session_ms = getattr(session, "load_ms", None) or (time.perf_counter() - t0) * 1000
        run = session.bind(x)
        watch = Watch(threads)
        m.first_ms, m.samples, m.total_s = timed_runs(run, settings, getattr(session, "sync", lambda: None), watch)
        m.first_ms = getattr(session, "first_ms", None) or m.first_ms  # an engine that ran it first while loading
        m.window, m.peak_rss_mb = watch.window, memory.growth_mb()
        m.method.update(getattr(session, "method", {}) or {})
    finally:
        if callable(getattr(session, "close", None)):
            session.close()
    return m


def targets(entry: EngineEntry, model: EngineModel, settings: BenchSettings) -> list[tuple[str, str, str | None]]:
    """(device, precision, why it cannot run or None) that ``entry`` is asked for: the devices of settings it
    has, each precision it knows for the model. A precision it cannot make is recorded as unavailable."""
    try:
        devices, precisions = dict(entry.engine.devices()), dict(entry.engine.precisions(model))
    except Exception as exc:  # a broken engine plugin: recorded against it, the others go on
        why = f"engine {entry.name} failed: {one_line(exc, 200)}"
        return [(device, Precision.FP32, why) for device in settings.resolved_providers()]
    out = []
    for device in settings.resolved_providers():
        if device not in devices:
            continue  # not this engine's device (openvino has no CUDA): nothing to record
        for precision, why in precisions.items():
            if devices[device] is None and why is None and callable(getattr(entry.engine, "prepare", None)):
                try:
                    entry.engine.prepare(model, precision)  # untimed: what load needs (an engine's own int8)
                except Unavailable as exc:
                    why = str(exc)
                except Exception as exc:  # the engine's own failure: recorded, the others go on
                    why = f"{entry.name} could not prepare {precision}: {one_line(exc, 200)}"
            out.append((device, precision, devices[device] or why))
    return out


@contextmanager
def bench_threads(settings: BenchSettings):
    """torch's intra-op threads set to the benchmark's (``--bench-threads``, else torch's own) while measuring, and
    restored after; yields that count, which every engine is given."""
    threads = settings.bench_threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


def benchmark(
    model: EngineModel, images: torch.Tensor, settings: BenchSettings, engines: list[EngineEntry]
) -> list[Measurement]:
    """Every (engine, device, precision, batch size) of ``settings`` on the same images. A curve (``batch_curve``)
    stops after a batch that fails or whose p50 passes CURVE_LIMIT_MS; the larger batch sizes are recorded as
    skipped, with the reason."""
    out = []
    with bench_threads(settings) as threads:
        for entry in engines:
            for device, precision, why in targets(entry, model, settings):
                stop = why
                status = MeasurementStatus.UNAVAILABLE if why else MeasurementStatus.SKIPPED
                for batch_size in settings.sizes():
                    if stop:
                        out.append(
                            Measurement(
                                entry.name,
                                device_name(entry.name, device),
                                batch_size,
                                status,
                                stop,
                                precision=precision,
                            )
                        )
                        continue
                    m = _measure(entry, model, device, precision, batch_size, images, settings, threads)
                    out.append(m)
                    if settings.batch_curve and m.status == MeasurementStatus.FAILED:
                        stop = f"the curve stopped after batch {batch_size} failed"
                    elif settings.batch_curve and m.samples and (p50 := float(np.median(m.samples))) > CURVE_LIMIT_MS:
                        stop = (
                            f"the curve stopped after batch {batch_size} took {p50:,.0f} ms (limit "
                            f"{CURVE_LIMIT_MS:,.0f} ms)"
                        )
    return out


def _measure(entry, model, device, precision, batch_size, images, settings, threads) -> Measurement:
    """measure(), with whatever an engine raises recorded as the measurement's failure (out of memory at a large
    batch, mostly; a broken engine plugin too): one engine never stops the others."""
    try:
        return measure(entry, model, device, precision, batch_size, images, settings.for_batch(batch_size), threads)
    except Exception as exc:
        return Measurement(
            entry.name,
            device_name(entry.name, device),
            batch_size,
            MeasurementStatus.FAILED,
            one_line(exc, 200),
            precision=precision,
        )


def evaluate(
    entry: EngineEntry, model: EngineModel, precision: str, images: torch.Tensor, threads: int, chunk: int = 256
) -> tuple[np.ndarray, dict]:
    """The logits ``entry`` gives at ``precision`` on the CPU for ``images`` (normalized), in chunks, and what the
    session recorded of itself: for the test accuracy of each engine and precision."""
    session = entry.engine.load(
        model, "cpu", precision, threads, BenchSettings(graph_optimization="all"), images[:1].numpy().astype(np.float32)
    )
    try:
        logits = np.concatenate(
            [
                np.asarray(session.predict(images[i : i + chunk].numpy().astype(np.float32)))
                for i in range(0, len(images), chunk)
            ]
        )
        return logits, dict(getattr(session, "method", {}) or {})
    finally:
        if callable(getattr(session, "close", None)):
            session.close()
