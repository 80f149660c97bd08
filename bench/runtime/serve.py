"""The serving scenarios (bench.runtime.scenarios) of one engine, device and precision, on one session: rows as the
store keeps them (bench.store: the serving table), one per scenario and server configuration."""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.core.errors import one_line
from bench.core.status import MeasurementStatus
from bench.results.percentiles import RULE, needed
from bench.runtime import scenarios
from bench.runtime.engines import EngineEntry, EngineModel, Unavailable
from bench.runtime.measure import bench_threads, device_name, targets
from bench.runtime.protocol import BenchSettings, batch_of


def server_configs(settings: BenchSettings) -> list[scenarios.ServerConfig]:
    """Every server configuration asked for: each worker count, alone and with dynamic batching if asked."""
    out = []
    for workers in settings.server_workers:
        out.append(scenarios.ServerConfig(workers))
        if settings.dynamic_batch > 1:
            out.append(scenarios.ServerConfig(workers, settings.dynamic_batch, settings.batch_wait_ms))
    return out


def serve(
    entry: EngineEntry,
    model: EngineModel,
    device: str,
    precision: str,
    images: torch.Tensor,
    settings: BenchSettings,
    threads: int,
) -> list[dict]:
    """The scenarios of ``settings`` for one engine, device and precision; single-stream is measured for the server's
    first guess of its capacity even when not asked for (then not recorded)."""
    base = {"engine": entry.name, "provider": device_name(entry.name, device), "precision": precision}
    asked = [s for s in scenarios.SCENARIOS if s in settings.scenario]
    method = {
        "intra_op_threads": threads,
        "queries": settings.queries,
        "warmup": settings.warmup,
        "percentiles": RULE,
        "timer": "time.perf_counter, after the engine's sync",
    }
    x = batch_of(images, 1).cpu().numpy().astype(np.float32)
    t0 = time.perf_counter()
    try:
        session = entry.engine.load(model, device, precision, threads, settings, x)
    except Unavailable as exc:
        return [{**base, "scenario": s, "status": MeasurementStatus.UNAVAILABLE, "note": str(exc)} for s in asked]
    method["session_ms"] = round(getattr(session, "load_ms", None) or (time.perf_counter() - t0) * 1000, 3)
    method.update(getattr(session, "method", {}) or {})
    sync = getattr(session, "sync", lambda: None)
    rows = []
    try:
        queries, warmup = settings.queries, settings.warmup
        single = scenarios.single_stream(session, images, queries, settings.min_time, warmup, threads, sync)
        if scenarios.SINGLE_STREAM in asked:
            rows.append({**base, "scenario": scenarios.SINGLE_STREAM, "result": single})
        if scenarios.OFFLINE in asked:
            result = scenarios.offline(session, images, threads, sync)
            rows.append({**base, "scenario": scenarios.OFFLINE, "result": result})
        if scenarios.SERVER in asked:
            for config in server_configs(settings):
                rows.append(_server(session, images, config, settings, single, sync, base, threads))
    except Exception as exc:  # the engine's own failure: recorded, the others go on
        return [{**base, "scenario": s, "status": MeasurementStatus.FAILED, "note": one_line(exc, 200)} for s in asked]
    finally:
        if callable(getattr(session, "close", None)):
            session.close()
    return [{"status": MeasurementStatus.OK, "note": None, "setup": "", **row, "method": method} for row in rows]


def _server(session, images, config, settings: BenchSettings, single: dict, sync, base: dict, threads: int) -> dict:
    row = {**base, "scenario": scenarios.SERVER, "setup": config.label()}
    bound = settings.latency_bound_ms
    alone = single.get("p99_ms")
    result = {"bound_ms": bound, **config.as_dict(), "max_qps": None, "rates": []}
    if settings.queries < needed(99):
        return {**row, "result": result, "note": f"a p99 needs {needed(99)} queries per rate: --queries {needed(99)}"}
    if alone is not None and alone > bound and config.max_batch == 1:
        return {**row, "result": result, "note": f"one query alone takes {alone:.3g} ms at p99: over the bound"}
    runners = [
        {b: session.bind(batch_of(images, b).cpu().numpy().astype(np.float32)) for b in range(1, config.max_batch + 1)}
        for _ in range(config.workers)
    ]
    for runs in runners:  # every bound call warmed: an engine's first call at a new batch size plans its memory
        for run in runs.values():
            for _ in range(max(2, min(settings.warmup, 10))):
                run()
    sync()
    guess = config.workers * 1000 / single["mean_ms"]
    result = scenarios.server(runners, config, bound, settings.queries, guess, sync, threads, settings.min_time)
    note = None
    if result["max_qps"] is None:
        tried = min(r["rate"] for r in result["rates"])
        note = f"the p99 bound of {bound:g} ms is not met even at {tried:g} queries/s"
    return {**row, "result": result, "note": note}


def serve_all(
    model: EngineModel, images: torch.Tensor, settings: BenchSettings, engines: list[EngineEntry], repeat: int = 1
) -> list[dict]:
    """Every engine, device and precision of ``settings``: their serving rows, each marked with ``repeat``."""
    rows = []
    with bench_threads(settings) as threads:
        for entry in engines:
            for device, precision, why in targets(entry, model, settings):
                if why:
                    base = {"engine": entry.name, "provider": device_name(entry.name, device), "precision": precision}
                    status = MeasurementStatus.UNAVAILABLE
                    rows += [{**base, "scenario": s, "status": status, "note": why} for s in settings.scenario]
                    continue
                rows += serve(entry, model, device, precision, images, settings, threads)
    return [{**row, "repeat": repeat} for row in rows]
