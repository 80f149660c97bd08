"""`bench predict RUN IMAGES...`: classify image files with a run's shipped model, the way the README's snippet does
by hand. By default the model the report recommends for ONNX Runtime on the CPU (bench.results.recommend); any
trial, engine, precision and device the run measured otherwise. An image file is 8-bit: a pixel p is read as p / 255
(the dataset's scaled pixels span the same 0..1), resized to the model's input as image folders are (bilinear), then
normalized with the run's recorded mean and std."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.core.errors import BenchError, UsageError
from bench.core.formats import trial_label
from bench.core.status import Precision
from bench.data.folders import IMAGE_SUFFIXES, eight_bit
from bench.deploy.steps import DeployResult
from bench.deploy.trials import select_trials, verified, verified_export
from bench.options.config import default
from bench.results.recommend import Choice, recommend
from bench.store import Store

TOP = 3  # the classes a prediction lists


@dataclass(frozen=True)
class Shipped:
    """The model that classifies: its trial, engine, precision, device, and why it was chosen."""

    run: dict
    trial: dict
    engine: str
    precision: str
    device: str
    why: str


def choose(store: Store, run: dict, trial_ref: str | None, engine: str | None, precision: str | None) -> Shipped:
    """The model ``bench predict`` runs: the one asked for, else the recommendation for ONNX Runtime on the CPU,
    else the run's best trial's fp32 export."""
    if trial_ref is None and engine is None and precision is None:
        entries = [SimpleNamespace(run=run, **vars(DeployResult.read(store, t))) for t in store.trials(run["id"])]
        allowed = (run["config"] or {}).get("max_accuracy_drop", default("max_accuracy_drop"))
        choices: list[Choice] = recommend(entries, allowed, (run["split"] or {}).get("test") or 0)
        cpu = [c for c in choices if c.device == "cpu"]
        pick = next((c for c in cpu if c.engine == "onnxruntime"), cpu[0] if cpu else None)
        if pick is not None:
            why = f"the report's recommendation for {pick.target} (within {pick.allowed_points:g} points)"
            return Shipped(run, pick.trial, pick.engine, pick.precision, pick.device, why)
    trial = select_trials(store, run, (trial_ref,) if trial_ref else (), 1)[0]
    why = "as asked" if trial_ref or engine or precision else "the run's best trial (nothing was benchmarked)"
    return Shipped(run, trial, engine or "onnxruntime", precision or Precision.FP32, "cpu", why)


def read_images(paths: list[Path], input_shape: tuple[int, int, int]) -> tuple[list[Path], np.ndarray]:
    """The image files of ``paths`` (a folder: its image files, recursively, sorted) as a uint8 batch of
    ``input_shape``."""
    from PIL import Image, UnidentifiedImageError

    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"no such image file or folder: {path}")
    if not files:
        raise UsageError(f"no image files in {', '.join(map(str, paths))} ({', '.join(sorted(IMAGE_SUFFIXES))})")
    channels, height, width = input_shape
    out = np.empty((len(files), channels, height, width), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as im:
                im.load()
                image = eight_bit(im, path).convert("L" if channels == 1 else "RGB")
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            raise BenchError(f"cannot read image {path}: {exc}") from None
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
        out[i] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return files, out


def predict(
    run_ref: str = "latest",
    images=(),
    *,
    trial: str | None = None,
    engine: str | None = None,
    precision: str | None = None,
    device: str = "cpu",
    store_path=None,
    threads: int | None = None,
) -> tuple[Shipped, list[dict]]:
    """Classify ``images`` (files or folders) with run ``run_ref``'s shipped model (or the trial, engine, precision
    and device asked for): for each file, its class, probability and the top classes."""
    with Store(store_path, create=False, readonly=True) as store:
        run = store.run(None if run_ref == "latest" else run_ref)
        shipped = choose(store, run, trial, engine, precision)
        device = shipped.device if (trial, engine, precision) == (None, None, None) else device
        shipped = Shipped(run, shipped.trial, shipped.engine, shipped.precision, device, shipped.why)
        files, pixels = read_images([Path(p) for p in images], tuple(run["input_shape"]))
        logits = _logits(store, shipped, _normalized(run, pixels), threads)
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    probabilities = shifted / shifted.sum(1, keepdims=True)
    classes = run["classes"]
    out = []
    for path, p in zip(files, probabilities, strict=True):
        order = np.argsort(-p)[:TOP]
        out.append(
            {
                "image": str(path),
                "class": classes[order[0]],
                "probability": float(p[order[0]]),
                "top": [[classes[i], float(p[i])] for i in order],
            }
        )
    return shipped, out


def _normalized(run: dict, pixels: np.ndarray) -> np.ndarray:
    data = run.get("data") or {}
    if not data.get("mean"):
        raise BenchError(f"run {run['id']} did not record its normalization (a store from before schema 8)")
    mean = np.asarray(data["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(data["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    return ((pixels.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def _logits(store: Store, shipped: Shipped, x: np.ndarray, threads: int | None) -> np.ndarray:
    """The logits of the shipped model's engine for the batch ``x``."""
    import torch

    from bench.plugins.manager import get_plugins
    from bench.runtime.engines import EngineModel, Unavailable
    from bench.runtime.protocol import BenchSettings

    (entry,) = get_plugins().engines.select([shipped.engine])
    trial, run = shipped.trial, shipped.run
    path = verified_export(store, trial)
    files = {Precision.FP32: path}
    for v in store.variants_of(trial["id"]):
        if v["precision"] == shipped.precision and v.get("path"):
            files[v["precision"]] = verified(store, trial, v["path"], v["sha256"], "make it again (`bench quantize`)")
    workdir = store.trial_dir(run["id"], trial["idx"])
    model = EngineModel(path, files, None, tuple(run["input_shape"]), None, workdir)
    name = f"{trial_label(trial['idx'])} at {shipped.precision} in {shipped.engine} on {shipped.device}"
    why = _cannot(entry, model, shipped)
    if why:  # an engine that runs the PyTorch model, or quantizes itself, gets what benchmark gives it
        from bench.deploy.trials import deployable
        from bench.plugins.dataset_loading import load_run_dataset

        calibration_images = (run["config"] or {}).get("calibration_images", default("calibration_images"))
        model = deployable(store, run, trial, load_run_dataset(run), calibration_images)
        why = _cannot(entry, model, shipped)
    if why:
        raise BenchError(f"cannot run {name}: {why}")
    try:
        session = entry.engine.load(
            model, shipped.device, shipped.precision, threads or torch.get_num_threads(), BenchSettings(), x[:1]
        )
        logits = np.asarray(session.predict(x))
    except Unavailable as exc:
        raise BenchError(f"cannot run {name}: {exc}") from None
    if callable(getattr(session, "close", None)):
        session.close()
    return logits


def _cannot(entry, model, shipped: Shipped) -> str | None:
    """Why ``entry`` cannot run ``model`` at the shipped precision and device (None: it can)."""
    why = dict(entry.engine.precisions(model)).get(shipped.precision, "not a precision of this engine")
    return why or dict(entry.engine.devices()).get(shipped.device, "not a device of this engine")
