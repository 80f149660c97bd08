"""The inference benchmark's protocol, the same for every engine (bench.runtime.engines): on real images, the model's
load (session creation) and its first run are kept apart, then warm-up runs, then timed runs until both a number of
runs and a time have passed; every sample kept, percentiles, what the machine did meanwhile (bench.core.noise) and
the growth of the process's peak memory recorded beside the figures (`Measurement`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from bench.core.noise import Watch, Window, spread
from bench.core.status import MeasurementStatus, Precision
from bench.options.choices import BENCHMARK
from bench.options.config import stage_settings

PERCENTILE_METHOD = "numpy.percentile, linear interpolation between closest ranks"
AUTO_LEVELS = ("extended", "all")
PROBE_RUNS = 20  # timed runs per level when choosing one, after 3 warm-up runs
CURVE = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # batch sizes of a batch-size curve
CURVE_LIMIT_MS = 2000.0  # a curve stops after the batch whose p50 passes this (or that fails, e.g. out of memory)
CURVE_RUNS = 10  # timed runs at least, at a curve's batch sizes beyond --batch-sizes (and min_time as set)


@stage_settings(BENCHMARK)
class BenchSettings:
    """How models are timed: RunConfig's benchmark options (bench.options), with the same names and defaults."""

    batch_sizes: tuple[int, ...]
    engines: tuple[str, ...]  # auto: every installed engine that runs here
    providers: tuple[str, ...]  # devices: cpu, cuda, tensorrt; auto = cpu, and cuda if visible
    warmup: int  # untimed runs after the first one
    min_runs: int  # timed runs: at least this many...
    min_time: float  # ...and for at least this many seconds
    bench_threads: int | None  # intra-op threads of every engine; None: torch's count
    # onnxruntime graph optimization level, or auto: the faster of AUTO_LEVELS in a short probe, per model and
    # batch size ('all' adds NCHWc layouts and won 7 of 8 cases in benchmarks/inference.py, often by 2x;
    # 'extended' won the smallest net at batch 64)
    graph_optimization: str
    batch_curve: bool  # also every batch size of CURVE, until time or memory runs out
    repeat: int  # times every model is measured (bench.deploy.steps.benchmark_trial)
    ort_spinning: str  # on: onnxruntime's idle intra-op threads spin (its default); off: they sleep
    openvino_pinning: str  # on: OpenVINO pins its threads to cores (its default); off: the OS places them
    scenario: tuple[str, ...]  # serving scenarios (bench.runtime.scenarios), beside the protocol
    latency_bound_ms: float  # the server scenario's p99 bound
    queries: int  # single-stream queries; queries per rate the server scenario tries
    server_workers: tuple[int, ...]  # each measured
    dynamic_batch: int  # > 1: the server also measured with dynamic batches of up to this many queries
    batch_wait_ms: float  # how long a query waits for others to join its batch

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
    engine: str  # onnxruntime, torch, openvino... (bench.runtime.engines)
    provider: str  # the device as the engine names it: CPUExecutionProvider, CUDAExecutionProvider, cpu, cuda
    batch_size: int
    status: str = MeasurementStatus.OK  # or unavailable, failed, skipped
    note: str | None = None
    precision: str = Precision.FP32  # of the model run: fp32, int8, fp16, bf16
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
    (``activations``: bytes per image, bench.models.stats.activation_bytes; 0 when the model is not known yet) would
    take more than half of the memory available now: the engine would fail, or the process be killed."""
    from bench.core.machine import available_memory
    from bench.options.option import invalid

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
    first = images[:batch_size]  # a slice: of a tensor, or made by bench.data.splits.Normalized
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
