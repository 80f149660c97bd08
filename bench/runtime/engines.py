"""Inference engines: what runs a trial's verified model for its latency and accuracy figures. Engines are plugins
(the `register_engines` hook, docs/plugins.md), like architectures and datasets; cnnbench's own (onnxruntime, torch,
openvino) are registered the same way, by plugins/engines.py. Every engine is timed under one protocol
(bench.runtime.protocol) and evaluated on the same test images.

An engine is an object with::

    devices()                          -> {device: None, or the reason it cannot run here}   (cpu, cuda, ...)
    precisions(model)                  -> {precision: None, or the reason it cannot run it}  (fp32, int8, ...)
    prepare(model, precision)          -> None   (optional: make what load needs, untimed: its own int8 file)
    load(model, device, precision, threads) -> a session:
        session.bind(x)                -> a function running one inference on the float32 NCHW batch x, placed
                                          once where the engine keeps its inputs (no host copy timed)
        session.predict(x)             -> logits, a numpy array (batch, classes): for the test accuracy
        session.method                 -> dict: what to record beside its figures (version, options)
        session.sync()                 -> optional: wait until the device has finished
        session.close()                -> optional
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.core.errors import check_registration, unknown


class Unavailable(Exception):
    """This engine cannot run this model, precision or device here; the message says why, in one line."""


@dataclass(frozen=True)
class EngineModel:
    """A trial's verified model, as engines receive it."""

    onnx: Path  # the fp32 ONNX export, checked against PyTorch
    files: dict[str, Path]  # precision -> an ONNX file cnnbench made and checked: fp32, and the variants (int8, fp16)
    module: object | None  # the PyTorch model (fp32, eval mode), for engines that run it
    input_shape: tuple[int, int, int]
    calibration: np.ndarray | None = None  # training images, normalized: for engines that quantize themselves
    workdir: Path | None = None  # the trial's folder: where an engine may keep files it makes for a precision


@dataclass(frozen=True)
class EngineEntry:
    name: str
    engine: object
    description: str
    plugin: str

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "devices": self.engine.devices(),
        }


@dataclass
class EngineRegistry:
    entries: dict[str, EngineEntry] = field(default_factory=dict)

    def register_callback(self, plugin: str) -> Callable:
        def register(name, engine, description=""):
            check_registration("engine", name, plugin, self.entries, getattr(engine, "load", None))
            for method in ("devices", "precisions"):
                if not callable(getattr(engine, method, None)):
                    from bench.core.errors import PluginError

                    raise PluginError(f"plugin '{plugin}': engine '{name}' has no {method}() method")
            self.entries[name] = EngineEntry(name, engine, " ".join(str(description).split()), plugin)

        return register

    def drop_plugin(self, plugin: str) -> None:
        for name in [n for n, e in self.entries.items() if e.plugin == plugin]:
            del self.entries[name]

    def select(self, names: list[str] | tuple[str, ...]) -> list[EngineEntry]:
        """The engines named; ``auto`` stands for every registered engine that runs on some device here, but those with
        ``default = False``, which run only when named (``auto,torch-compile``)."""
        out = []
        if not names or "auto" in names:
            out = [
                e
                for e in self.entries.values()
                if getattr(e.engine, "default", True) and any(r is None for r in _devices(e).values())
            ]
        for name in (n for n in names if n != "auto"):
            if name not in self.entries:
                raise unknown("engine", name, self.entries)
            if self.entries[name] not in out:
                out.append(self.entries[name])
        return out


def _devices(entry: EngineEntry) -> dict[str, str | None]:
    try:
        return dict(entry.engine.devices())
    except Exception as exc:  # a broken engine plugin: it runs nowhere, and says why
        return {"cpu": f"{entry.name}.devices() failed: {exc.__class__.__name__}: {exc}"}
