"""onnxruntime sessions with the provider really used, or the reason the requested one is unavailable.
ORT falls back to the CPU silently when CUDA cannot be used; this module never lets that pass unseen."""

from __future__ import annotations

import contextlib

import onnxruntime as ort

from bench.core.errors import BenchError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
ort.set_default_logger_severity(3)  # errors only: ORT's warnings are about choices recorded elsewhere


class ProviderUnavailable(Exception):
    """The requested execution provider cannot run here; the message says why."""


_preloaded = False


def cuda_unavailable_reason() -> str | None:
    """Why ORT's CUDA provider cannot run on this machine, or None if it may."""
    if PROVIDERS["cuda"] not in ort.get_available_providers():
        return f"this onnxruntime build ({ort.__version__}) has no CUDAExecutionProvider: install onnxruntime-gpu"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible on this machine (torch.cuda.is_available() is False)"
    return None


def tensorrt_unavailable_reason() -> str | None:
    """Why ORT's TensorRT provider cannot run here, or None if it may (it also needs the CUDA provider)."""
    if PROVIDERS["tensorrt"] not in ort.get_available_providers():
        return f"this onnxruntime build ({ort.__version__}) has no TensorrtExecutionProvider"
    return cuda_unavailable_reason()


def ort_session(
    path, provider: str = "cpu", threads: int | None = None, graph_optimization: str = "all", spinning: bool = True
):
    """An InferenceSession on ``provider`` ('cpu' or 'cuda'); ``spinning``: whether its idle intra-op threads spin
    for work (ORT's default) or sleep at once (session.intra_op.allow_spinning). Raises ProviderUnavailable with the
    reason if that provider cannot be used, BenchError if the file is not a loadable model."""
    global _preloaded
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.graph_optimization_level = GRAPH_OPTIMIZATION[graph_optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    providers = [PROVIDERS["cpu"]]
    if provider in ("cuda", "tensorrt"):
        reason = cuda_unavailable_reason() if provider == "cuda" else tensorrt_unavailable_reason()
        if reason:
            raise ProviderUnavailable(reason)
        if not _preloaded and hasattr(ort, "preload_dlls"):
            with contextlib.suppress(Exception):  # find the CUDA and cuDNN libraries the torch wheel ships
                ort.preload_dlls()
            _preloaded = True
        providers = [PROVIDERS[provider]] + ([PROVIDERS["cuda"]] if provider == "tensorrt" else []) + [PROVIDERS["cpu"]]
        ort.set_default_logger_severity(4)  # the fallback is reported below, not as a C++ log line
    try:
        sess = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:
        raise BenchError(f"onnxruntime cannot load {path}: {' '.join(str(exc).split())[:300]}") from exc
    finally:
        ort.set_default_logger_severity(3)
    if provider != "cpu" and sess.get_providers()[0] != PROVIDERS[provider]:
        raise ProviderUnavailable(
            f"onnxruntime fell back to {sess.get_providers()[0]}: {PROVIDERS[provider]} could not be created "
            "(the CUDA/cuDNN or TensorRT libraries this onnxruntime was built for were not found)"
        )
    return sess


def logits(sess: ort.InferenceSession, images, chunk: int = 256):
    """Logits for ``images`` (normalized NCHW: an array, a tensor, or bench.data.splits.Normalized) through ``sess``, a
    chunk at a time, each made float32 as it is run."""
    import numpy as np

    name = sess.get_inputs()[0].name
    batches = (np.asarray(images[i : i + chunk], np.float32) for i in range(0, len(images), chunk))
    runs = [sess.run(None, {name: x})[0] for x in batches]
    return np.concatenate(runs)
