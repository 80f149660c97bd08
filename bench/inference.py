"""Inference benchmark: latency and throughput of an ONNX file in onnxruntime and of the same model in
PyTorch eager, on the same real images, with the method recorded beside every figure."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from bench import onnxrt

PERCENTILE_METHOD = "numpy.percentile, linear interpolation between closest ranks"


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: tuple[int, ...] = (1, 64)
    providers: tuple[str, ...] = ("auto",)  # cpu, cuda; auto = cpu, plus cuda when a GPU is visible
    warmup: int = 10  # untimed runs after the first one
    min_runs: int = 100  # timed runs: at least this many...
    min_time_s: float = 1.0  # ...and for at least this long
    threads: int | None = None  # intra-op threads for both engines; None = torch.get_num_threads()
    graph_optimization: str = "all"  # onnxruntime graph optimization level

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
    status: str = "ok"  # ok | unavailable | failed
    note: str | None = None
    session_ms: float | None = None
    first_ms: float | None = None
    warmup: int = 0
    samples: list[float] = field(default_factory=list)  # ms per timed run
    total_s: float | None = None
    method: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return summarize(self.samples, self.batch_size)


def summarize(samples_ms: list[float], batch_size: int) -> dict:
    if not samples_ms:
        return {
            k: None for k in ("n", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "throughput")
        }
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
    }


def timed_runs(run: Callable[[], object], settings: BenchSettings, sync: Callable[[], None] = lambda: None):
    """(first run ms, warm samples in ms, seconds spent on the timed runs)."""
    t0 = time.perf_counter()
    run()
    sync()
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(settings.warmup):
        run()
    sync()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < settings.min_runs or time.perf_counter() - start < settings.min_time_s:
        t0 = time.perf_counter()
        run()
        sync()
        samples.append((time.perf_counter() - t0) * 1000)
    return first_ms, samples, time.perf_counter() - start


def batch_of(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first ``batch_size`` real images, repeated if the set is smaller."""
    reps = -(-batch_size // len(images))
    return images.repeat(reps, 1, 1, 1)[:batch_size].contiguous() if reps > 1 else images[:batch_size].contiguous()


def bench_onnxruntime(path, images: torch.Tensor, batch_size: int, provider: str, settings: BenchSettings,
                      threads: int) -> Measurement:  # fmt: skip
    m = Measurement("onnxruntime", onnxrt.PROVIDERS[provider], batch_size, warmup=settings.warmup)
    m.method = {
        "percentiles": PERCENTILE_METHOD, "intra_op_threads": threads, "inter_op_threads": 1,
        "graph_optimization": settings.graph_optimization, "onnxruntime": ort.__version__,
        "io_binding": provider == "cuda", "timer": "time.perf_counter",
        "warmup": settings.warmup, "min_runs": settings.min_runs, "min_time_s": settings.min_time_s,
    }  # fmt: skip
    t0 = time.perf_counter()
    try:
        sess = onnxrt.session(path, provider, threads, settings.graph_optimization)
    except onnxrt.ProviderUnavailable as exc:
        m.status, m.note = "unavailable", str(exc)
        return m
    m.session_ms = (time.perf_counter() - t0) * 1000
    x = batch_of(images, batch_size).cpu().numpy().astype(np.float32)
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    if provider == "cuda":
        # IO binding: input and output stay on the GPU, so no host<->device copy is timed.
        binding = sess.io_binding()
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output(out, "cuda")

        def run():
            sess.run_with_iobinding(binding)

        m.first_ms, m.samples, m.total_s = timed_runs(run, settings, binding.synchronize_outputs)
    else:
        feed = {name: x}
        m.first_ms, m.samples, m.total_s = timed_runs(lambda: sess.run([out], feed), settings)
    return m


def bench_torch(model: nn.Module, images: torch.Tensor, batch_size: int, device: str, settings: BenchSettings,
                threads: int) -> Measurement:  # fmt: skip
    m = Measurement("torch", device, batch_size, warmup=settings.warmup)
    m.method = {
        "percentiles": PERCENTILE_METHOD, "intra_op_threads": threads, "mode": "eager, eval, inference_mode",
        "torch": torch.__version__,
        "timer": "time.perf_counter" + (" after cuda synchronize" if device == "cuda" else ""),
        "warmup": settings.warmup, "min_runs": settings.min_runs, "min_time_s": settings.min_time_s,
    }  # fmt: skip
    if device == "cuda" and not torch.cuda.is_available():
        m.status, m.note = "unavailable", "no CUDA GPU is visible on this machine (torch.cuda.is_available() is False)"
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

    m.first_ms, m.samples, m.total_s = timed_runs(run, settings, sync)
    model.cpu()
    return m


def benchmark(model: nn.Module, onnx_path, images: torch.Tensor, settings: BenchSettings) -> list[Measurement]:
    """Every (engine, provider, batch size) of ``settings``, ORT and PyTorch eager on the same images."""
    threads = settings.threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = []
    try:
        for provider in settings.resolved_providers():
            for batch_size in settings.batch_sizes:
                out.append(bench_onnxruntime(onnx_path, images, batch_size, provider, settings, threads))
                out.append(bench_torch(model, images, batch_size, provider, settings, threads))
    finally:
        torch.set_num_threads(previous)
    return out
