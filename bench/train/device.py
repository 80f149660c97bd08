"""The device trials train on, and what a run ran on (versions, CPU, GPU, threads), recorded with every run."""

from __future__ import annotations

import os
import platform

import torch

from bench.core import threads
from bench.core.machine import cpu_features, cpu_model, version_of


def resolve_device(name: str) -> torch.device:
    """'auto' is the GPU when torch sees one, else the CPU."""
    from bench.core.errors import UsageError
    from bench.options.option import invalid

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
        "cnnbench": version_of("cnnbench"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": version_of("torchvision"),
        "numpy": version_of("numpy"),
        "onnxruntime": version_of("onnxruntime-gpu") or version_of("onnxruntime"),
        "onnx": version_of("onnx"),
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
