"""The inference benchmark's protocol, the same for every engine (bench.engines): on real images, the model's load
(session creation) and its first run are kept apart, then warm-up runs, then timed runs until both a number of runs
and a time have passed; every sample kept, percentiles, what the machine did meanwhile (bench.noise) and the growth
of the process's peak memory recorded beside the figures; and the test accuracy each engine gives at each
precision."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from bench import onnxrt
from bench.engines import EngineEntry, Model, Unavailable
from bench.errors import one_line
from bench.noise import Watch, Window, spread
from bench.options import default
from bench.status import MeasurementStatus

PERCENTILE_METHOD = "numpy.percentile, linear interpolation between closest ranks"
AUTO_LEVELS = ("extended", "all")
PROBE_RUNS = 20  # timed runs per level when choosing one, after 3 warm-up runs
CURVE = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # batch sizes of a batch-size curve
CURVE_LIMIT_MS = 2000.0  # a curve stops after the batch whose p50 passes this (or that fails, e.g. out of memory)
CURVE_RUNS = 10  # timed runs at least, at a curve's batch sizes beyond --batch-sizes (and min_time as set)


@dataclass(frozen=True)
class BenchSettings:
    """How models are timed: RunConfig's benchmark options (bench.options), with the same names."""

    batch_sizes: tuple[int, ...] = default("batch_sizes")
    providers: tuple[str, ...] = default("providers")  # devices: cpu, cuda, tensorrt; auto = cpu, and cuda if visible
    engines: tuple[str, ...] = default("engines")  # auto: every installed engine that runs here
    warmup: int = default("warmup")  # untimed runs after the first one
    min_runs: int = default("min_runs")  # timed runs: at least this many...
    min_time: float = default("min_time")  # ...and for at least this many seconds
    bench_threads: int | None = default("bench_threads")  # intra-op threads of every engine; None: torch's count
    # onnxruntime graph optimization level, or auto: the faster of AUTO_LEVELS in a short probe, per model and
    # batch size ('all' adds NCHWc layouts and won 7 of 8 cases in benchmarks/inference.py, often by 2x;
    # 'extended' won the smallest net at batch 64)
    graph_optimization: str = default("graph_optimization")
    batch_curve: bool = default("batch_curve")  # also every batch size of CURVE, until time or memory runs out
    repeat: int = default("repeat")  # times every model is measured (bench.deploy.benchmark_trial)

    def sizes(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.batch_sizes) | set(CURVE))) if self.batch_curve else tuple(self.batch_sizes)

    def for_batch(self, batch_size: int) -> BenchSettings:
        """The timing of one batch size: a curve's own points take fewer runs (CURVE_RUNS, warm-up 3)."""
        if batch_size in self.batch_sizes:
            return self
        return replace(self, warmup=min(self.warmup, 3), min_runs=min(self.min_runs, CURVE_RUNS))

    def resolved_providers(self) -> list[str]:
        out: list[str] = []
        for p in self.providers:
            for q in (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])) if p == "auto" else [p]:
                if q not in out:
                    out.append(q)
        return out


@dataclass
class Measurement:
    engine: str  # onnxruntime, torch, openvino... (bench.engines)
    provider: str  # the device as the engine names it: CPUExecutionProvider, CUDAExecutionProvider, cpu, cuda
    batch_size: int
    status: str = MeasurementStatus.OK  # or unavailable, failed, skipped
    note: str | None = None
    precision: str = "fp32"  # of the model run: fp32, int8, fp16, bf16
    session_ms: float | None = None  # loading the model: session creation, compilation
    first_ms: float | None = None
    warmup: int = 0
    samples: list[float] = field(default_factory=list)  # ms per timed run
    total_s: float | None = None
    method: dict = field(default_factory=dict)
    window: Window = field(default_factory=Window)  # what the machine did during the timed runs
    peak_rss_mb: float | None = None  # growth of the process's peak resident memory while loading and running it

    def summary(self) -> dict:
        """The statistics of the samples, what the machine did meanwhile, and whether that makes them noisy."""
        stats = summarize(self.samples, self.batch_size)
        return {**stats, **self.window.as_dict(), "noisy": self.window.noisy(stats["spread"]) if self.samples else None}


def check_batch_sizes(batch_sizes, input_shape, activations: int = 0) -> None:
    """Refuse (UsageError, before any timing) a batch size whose float32 inputs and intermediate results
    (``activations``: bytes per image, bench.modelstats.activation_bytes; 0 when the model is not known yet) would
    take more than half of the memory available now: the engine would fail, or the process be killed."""
    from bench.environment import available_memory
    from bench.options import invalid

    available = available_memory()
    per_image = 4 * int(np.prod(input_shape)) + activations
    largest = max(batch_sizes, default=0)
    if largest * per_image > available / 2:
        what = "inputs and intermediate results" if activations else "inputs"
        raise invalid(
            "batch_sizes",
            largest,
            f"a batch of {largest} {'x'.join(map(str, input_shape))} images: its float32 {what} take "
            f"{largest * per_image / 1e9:.1f} GB, more than half of the {available / 1e9:.1f} GB of memory available "
            f"here; at most {max(1, int(available / 2 // per_image))}",
        )


def summarize(samples_ms: list[float], batch_size: int) -> dict:
    if not samples_ms:
        keys = (
            "n",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "mean_ms",
            "std_ms",
            "min_ms",
            "max_ms",
            "throughput",
            "spread",
            "cv",
        )
        return dict.fromkeys(keys)
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    mean = float(a.mean())
    return {
        "n": len(a),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": mean,
        "std_ms": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "throughput": batch_size / (mean / 1000) if mean > 0 else None,
        "spread": spread(float(p50), float(p99)),  # p99 / p50
        "cv": float(a.std(ddof=1)) / mean if len(a) > 1 and mean > 0 else 0.0,  # coefficient of variation
    }


def timed_runs(
    run: Callable[[], object],
    settings: BenchSettings,
    sync: Callable[[], None] = lambda: None,
    watch: Watch | None = None,
):
    """(first run ms, warm samples in ms, seconds spent on the timed runs); ``watch`` watches the timed runs."""
    t0 = time.perf_counter()
    run()
    sync()
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(settings.warmup):
        run()
    sync()
    samples: list[float] = []
    with watch or Watch(1):
        start = time.perf_counter()
        while len(samples) < settings.min_runs or time.perf_counter() - start < settings.min_time:
            t0 = time.perf_counter()
            run()
            sync()
            samples.append((time.perf_counter() - t0) * 1000)
        total = time.perf_counter() - start
    return first_ms, samples, total


def probe(run: Callable[[], object]) -> tuple[float, float]:
    """(first run ms, median of PROBE_RUNS warm runs ms): to choose between an engine's options on the batch timed."""
    first_ms, samples, _ = timed_runs(run, BenchSettings(warmup=3, min_runs=PROBE_RUNS, min_time=0.0))
    return first_ms, float(np.median(samples))


def graph_levels(methods: list[dict]) -> str:
    """The ORT graph optimization levels that ``methods`` (recorded with measurements) used, and how chosen."""
    ort_methods = [m for m in methods if m and "graph_optimization" in m]
    used = ", ".join(f"'{v}'" for v in sorted({m["graph_optimization"] for m in ort_methods}))
    if any("graph_optimization_probe_p50_ms" in m for m in ort_methods):
        used += f" (auto: the faster of {' and '.join(AUTO_LEVELS)} in a {PROBE_RUNS}-run probe, per model and batch)"
    return used or "-"


def batch_of(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first ``batch_size`` real images, repeated if the set is smaller."""
    first = images[:batch_size]  # a slice: of a tensor, or made by bench.data.Normalized
    reps = -(-batch_size // len(first))
    return first.repeat(reps, 1, 1, 1)[:batch_size].contiguous() if reps > 1 else first.contiguous()


class PeakMemory:
    """The growth of this process's peak resident memory over its level when created (Linux: the kernel's peak,
    reset through /proc/self/clear_refs; None elsewhere)."""

    def __init__(self):
        self.start = _status_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM, the peak, to the current resident size
        except OSError:
            self.start = None

    def growth_mb(self) -> float | None:
        peak = _status_kb("VmHWM")
        return None if self.start is None or peak is None else round(max(0, peak - self.start) / 1024, 1)


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith(key + ":")), None)
    except (OSError, ValueError):
        return None


def device_name(engine: str, device: str) -> str:
    """The device as the store names it: onnxruntime's execution provider, else the device itself."""
    return onnxrt.PROVIDERS.get(device, device) if engine == "onnxruntime" else device


def measure(
    entry: EngineEntry,
    model: Model,
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


def _targets(entry: EngineEntry, model: Model, settings: BenchSettings) -> list[tuple[str, str, str | None]]:
    """(device, precision, why it cannot run or None) that ``entry`` is asked for: the devices of settings it
    has, each precision it knows for the model. A precision it cannot make is recorded as unavailable."""
    try:
        devices, precisions = dict(entry.engine.devices()), dict(entry.engine.precisions(model))
    except Exception as exc:  # a broken engine plugin: recorded against it, the others go on
        why = f"engine {entry.name} failed: {one_line(exc, 200)}"
        return [(device, "fp32", why) for device in settings.resolved_providers()]
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


def benchmark(
    model: Model, images: torch.Tensor, settings: BenchSettings, engines: list[EngineEntry]
) -> list[Measurement]:
    """Every (engine, device, precision, batch size) of ``settings`` on the same images. A curve (``batch_curve``)
    stops after a batch that fails or whose p50 passes CURVE_LIMIT_MS; the larger batch sizes are recorded as
    skipped, with the reason."""
    threads = settings.bench_threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = []
    try:
        for entry in engines:
            for device, precision, why in _targets(entry, model, settings):
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
    finally:
        torch.set_num_threads(previous)
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
    entry: EngineEntry, model: Model, precision: str, images: torch.Tensor, threads: int, chunk: int = 256
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


def measure_file(
    path,
    images: torch.Tensor,
    batch_size: int,
    device: str,
    settings: BenchSettings,
    threads: int,
    engine: str = "onnxruntime",
    precision: str = "fp32",
) -> Measurement:
    """One ONNX file at one batch size in one engine, under the protocol (for scripts and notebooks: a trial's
    files are measured by bench.deploy.benchmark_trial)."""
    from pathlib import Path

    model = Model(Path(path), {precision: Path(path)}, None, tuple(images.shape[1:]))
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
    from pathlib import Path

    model = Model(Path(), {}, module.eval(), tuple(images.shape[1:]))
    return _measure_in(engine, model, device, "fp32", batch_size, images, settings, threads)


def _measure_in(engine: str, model: Model, device, precision, batch_size, images, settings, threads) -> Measurement:
    from bench.plugins import get_plugins

    (entry,) = get_plugins().engines.select([engine])
    return measure(entry, model, device, precision, batch_size, images, settings, threads)
