"""What a run ran on: versions, CPU, GPU, threads. Recorded with every run."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

import torch

from bench import threads


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The CPU features that decide which precisions are fast (x86 flags from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def resolve_device(name: str) -> torch.device:
    """'auto' is the GPU when torch sees one, else the CPU."""
    from bench.errors import UsageError
    from bench.options import invalid

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise invalid("device", name, "auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU is visible to torch"
        raise UsageError(f"--device {name}: CUDA is not available ({why}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise invalid("device", name, "auto, cpu, cuda or cuda:N")
    return device


def environment(device: torch.device | None = None) -> dict:
    gpu = None
    if torch.cuda.is_available():
        index = device.index if device is not None and device.type == "cuda" and device.index else 0
        gpu = torch.cuda.get_device_name(index)
    return {
        "cnnbench": _version("cnnbench"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "numpy": _version("numpy"),
        "onnxruntime": _version("onnxruntime-gpu") or _version("onnxruntime"),
        "onnx": _version("onnx"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_features": cpu_features(),
        "torch_threads": torch.get_num_threads(),
        "openmp_wait": threads.described(),
        "cuda": torch.version.cuda,
        "gpu": gpu,
        "device": str(device) if device is not None else None,
        "hostname": platform.node(),
    }


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (MemAvailable), else the machine's physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
