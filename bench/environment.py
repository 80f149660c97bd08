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
    """Bytes of memory available to a new allocation now (MemAvailable, else the machine's physical memory), and no
    more than this process's memory cgroup still allows (a container's limit: cgroup_room)."""
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    room = cgroup_room()
    return available if room is None else min(available, room)


def cgroup_room() -> int | None:
    """Bytes this process's memory cgroup (v2 memory.max, or v1 memory.limit_in_bytes) allows beyond the anonymous
    memory its processes hold (the page cache in it can be reclaimed), or None where no limit is set or seen."""
    from pathlib import Path

    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, limit_file, anon_key = Path("/sys/fs/cgroup") / path.lstrip("/"), "memory.max", "anon"
        elif "memory" in controllers.split(","):
            base, limit_file = Path("/sys/fs/cgroup/memory") / path.lstrip("/"), "memory.limit_in_bytes"
            anon_key = "total_rss"  # its processes' and those of the groups below it
        else:
            continue
        try:
            text = (base / limit_file).read_text().strip()
            if text == "max" or int(text) >= 1 << 60:  # v1 writes "no limit" as a huge number
                continue
            stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
            return max(0, int(text) - int(stat[anon_key]))
        except (OSError, ValueError, KeyError):
            continue
    return None
