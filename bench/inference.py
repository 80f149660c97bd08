"""Inference benchmark: latency and throughput of an ONNX file in onnxruntime and of the same model in
PyTorch eager, on the same real images, with the method recorded beside every figure."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail
from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException as OrtRuntimeError
from torch import nn

from bench import onnxrt
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
    providers: tuple[str, ...] = default("providers")  # cpu, cuda; auto = cpu, plus cuda when a GPU is visible
    warmup: int = default("warmup")  # untimed runs after the first one
    min_runs: int = default("min_runs")  # timed runs: at least this many...
    min_time: float = default("min_time")  # ...and for at least this many seconds
    bench_threads: int | None = default("bench_threads")  # intra-op threads for both engines; None: torch's count
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
    engine: str  # onnxruntime | torch
    provider: str  # CPUExecutionProvider | CUDAExecutionProvider | cpu | cuda
    batch_size: int
    status: str = MeasurementStatus.OK  # or unavailable, failed, skipped
    note: str | None = None
    session_ms: float | None = None
    first_ms: float | None = None
    warmup: int = 0
    samples: list[float] = field(default_factory=list)  # ms per timed run
    total_s: float | None = None
    method: dict = field(default_factory=dict)
    window: Window = field(default_factory=Window)  # what the machine did during the timed runs

    def summary(self) -> dict:
        """The statistics of the samples, what the machine did meanwhile, and whether that makes them noisy."""
        stats = summarize(self.samples, self.batch_size)
        return {**stats, **self.window.as_dict(), "noisy": self.window.noisy(stats["spread"]) if self.samples else None}


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


def graph_levels(methods: list[dict]) -> str:
    """The ORT graph optimization levels that ``methods`` (recorded with measurements) used, and how chosen."""
    ort_methods = [m for m in methods if m and "graph_optimization" in m]
    used = ", ".join(f"'{v}'" for v in sorted({m["graph_optimization"] for m in ort_methods}))
    if any("graph_optimization_probe_p50_ms" in m for m in ort_methods):
        used += f" (auto: the faster of {' and '.join(AUTO_LEVELS)} in a {PROBE_RUNS}-run probe, per model and batch)"
    return used or "-"


def batch_of(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first ``batch_size`` real images, repeated if the set is smaller."""
    reps = -(-batch_size // len(images))
    return images.repeat(reps, 1, 1, 1)[:batch_size].contiguous() if reps > 1 else images[:batch_size].contiguous()


def bench_onnxruntime(
    path, images: torch.Tensor, batch_size: int, provider: str, settings: BenchSettings, threads: int
) -> Measurement:
    m = Measurement("onnxruntime", onnxrt.PROVIDERS[provider], batch_size, warmup=settings.warmup)
    m.method = {
        "percentiles": PERCENTILE_METHOD,
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "graph_optimization": settings.graph_optimization,
        "onnxruntime": ort.__version__,
        "io_binding": provider == "cuda",
        "timer": "time.perf_counter",
        "warmup": settings.warmup,
        "min_runs": settings.min_runs,
        "min_time_s": settings.min_time,
    }
    x = batch_of(images, batch_size).cpu().numpy().astype(np.float32)
    levels = AUTO_LEVELS if settings.graph_optimization == "auto" else (settings.graph_optimization,)
    probe: dict[str, float] = {}
    first_ms = None
    for level in levels:
        t0 = time.perf_counter()
        try:
            candidate = onnxrt.session(path, provider, threads, level)
        except onnxrt.ProviderUnavailable as exc:
            m.status, m.note = MeasurementStatus.UNAVAILABLE, str(exc)
            return m
        session_ms = (time.perf_counter() - t0) * 1000
        if len(levels) > 1:  # auto: keep the faster session in a short probe
            first, probe[level] = _probe(candidate, x)
            if min(probe.values()) < probe[level]:
                continue
            first_ms = first
        sess, m.session_ms, m.method["graph_optimization"] = candidate, session_ms, level
    if probe:
        m.method["graph_optimization_probe_p50_ms"] = probe
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    if provider == "cuda":
        # IO binding: input and output stay on the GPU, so no host<->device copy is timed.
        binding = sess.io_binding()
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output(out, "cuda")

        def run():
            sess.run_with_iobinding(binding)

        watch = Watch(threads)
        m.first_ms, m.samples, m.total_s = timed_runs(run, settings, binding.synchronize_outputs, watch)
        m.window = watch.window
    else:
        feed = {name: x}
        watch = Watch(threads)
        m.first_ms, m.samples, m.total_s = timed_runs(lambda: sess.run([out], feed), settings, watch=watch)
        m.window = watch.window
    if first_ms is not None:  # the session's real first run was in the probe
        m.first_ms = first_ms
    return m


def _probe(sess, x: np.ndarray) -> tuple[float, float]:
    """(first run ms, median of PROBE_RUNS warm runs ms) of ``sess`` on ``x``, to choose between sessions."""
    feed = {sess.get_inputs()[0].name: x}
    first_ms, samples, _ = timed_runs(
        lambda: sess.run(None, feed), BenchSettings(warmup=3, min_runs=PROBE_RUNS, min_time=0.0)
    )
    return first_ms, float(np.median(samples))


def bench_torch(
    model: nn.Module, images: torch.Tensor, batch_size: int, device: str, settings: BenchSettings, threads: int
) -> Measurement:
    m = Measurement("torch", device, batch_size, warmup=settings.warmup)
    m.method = {
        "percentiles": PERCENTILE_METHOD,
        "intra_op_threads": threads,
        "mode": "eager, eval, inference_mode",
        "torch": torch.__version__,
        "timer": "time.perf_counter" + (" after cuda synchronize" if device == "cuda" else ""),
        "warmup": settings.warmup,
        "min_runs": settings.min_runs,
        "min_time_s": settings.min_time,
    }
    if device == "cuda" and not torch.cuda.is_available():
        m.status, m.note = (
            MeasurementStatus.UNAVAILABLE,
            "no CUDA GPU is visible on this machine (torch.cuda.is_available() is False)",
        )
        return m
    t0 = time.perf_counter()
    model = model.to(device).eval()
    x = batch_of(images, batch_size).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    m.session_ms = (time.perf_counter() - t0) * 1000

    def run():
        with torch.inference_mode():
            model(x)

    watch = Watch(threads)
    m.first_ms, m.samples, m.total_s = timed_runs(run, settings, sync, watch)
    m.window = watch.window
    model.cpu()
    return m


def benchmark(model: nn.Module | None, onnx_path, images: torch.Tensor, settings: BenchSettings) -> list[Measurement]:
    """Every (engine, provider, batch size) of ``settings``, ORT and PyTorch eager (unless ``model`` is None) on
    the same images. A curve (``settings.batch_curve``) stops after a batch that fails or whose p50 passes
    CURVE_LIMIT_MS; the larger batch sizes are recorded as skipped, with the reason."""
    threads = settings.bench_threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = []
    try:
        for provider in settings.resolved_providers():
            engines = [("onnxruntime", lambda b, s, p=provider: bench_onnxruntime(onnx_path, images, b, p, s, threads))]
            if model is not None:
                engines.append(("torch", lambda b, s, p=provider: bench_torch(model, images, b, p, s, threads)))
            for engine, measure in engines:
                stop = None
                for batch_size in settings.sizes():
                    if stop:
                        out.append(
                            Measurement(
                                engine, _provider_name(engine, provider), batch_size, MeasurementStatus.SKIPPED, stop
                            )
                        )
                        continue
                    m = _measure(measure, engine, provider, batch_size, settings)
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
    order = {"onnxruntime": 0, "torch": 1}
    return sorted(
        out, key=lambda m: (settings.resolved_providers().index(_plain(m.provider)), m.batch_size, order[m.engine])
    )


def _measure(measure, engine: str, provider: str, batch_size: int, settings: BenchSettings) -> Measurement:
    try:
        return measure(batch_size, settings.for_batch(batch_size))
    except (MemoryError, RuntimeError, OrtFail, OrtRuntimeError) as exc:  # out of memory, mostly
        if not settings.batch_curve or batch_size in settings.batch_sizes:
            raise
        return Measurement(
            engine, _provider_name(engine, provider), batch_size, MeasurementStatus.FAILED, one_line(exc, 200)
        )


def _provider_name(engine: str, provider: str) -> str:
    return onnxrt.PROVIDERS[provider] if engine == "onnxruntime" else provider


def _plain(provider: str) -> str:
    return next((k for k, v in onnxrt.PROVIDERS.items() if v == provider), provider)
