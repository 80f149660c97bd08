"""How figures and names are written, in the terminal tables and the report alike: one definition each."""

from __future__ import annotations

CPU_PROVIDERS = ("CPUExecutionProvider", "cpu")
GPU_PROVIDERS = ("CUDAExecutionProvider", "cuda")


def trial_label(idx: int, run_id: str | None = None) -> str:
    """t003, or <run>/t003 where trials of several runs are listed together."""
    label = f"t{int(idx):03d}"
    return f"{run_id}/{label}" if run_id else label


def run_label(run: dict) -> str:
    """A run as tables and lines name it: its id, and its name (bench run --name) where it has one."""
    return f"{run['id']} ({run['name']})" if run.get("name") else run["id"]


def pct(x: float | None) -> str:
    """A share as a percentage with two decimals: 0.9059 -> 90.59."""
    return "-" if x is None else f"{100 * x:.2f}"


def num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def seconds(x: float | None) -> str:
    """A duration in seconds for a table: 12.3, 456."""
    return "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def duration(x: float | None) -> str:
    """A duration for a person reading a progress line: 12.3s, 4.5min."""
    if x is None:
        return "-"
    return f"{x:.1f}s" if x < 120 else f"{x / 60:.1f}min"


def count(n: int | None) -> str:
    """A parameter count: 296k, 2.21M."""
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def mflops(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:.2f}"


def times(x: float | None) -> str:
    """A ratio: 2.50x."""
    return "-" if x is None else f"{x:.2f}x"


ORT_DEVICES = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt"}


def device_of(provider: str) -> str:
    """The device a measurement ran on (cpu, cuda, tensorrt...), from an onnxruntime execution provider or an engine's
    own device name."""
    return ORT_DEVICES.get(provider, provider.lower())


def engine_short(engine: str) -> str:
    return {"onnxruntime": "ORT", "openvino": "OV"}.get(engine, engine)
