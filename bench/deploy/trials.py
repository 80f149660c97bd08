"""A trial's way to deployment: the winners of a run or the trials named, the model its checkpoint holds, its test and
calibration images as the model takes them, the metadata its ONNX file carries, and its recorded files, checked
against their hashes before anything uses them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.core.errors import BenchError, UsageError
from bench.core.formats import trial_label
from bench.core.status import RUNNABLE, ExportStatus, Precision
from bench.core.version import __version__
from bench.data.splits import Dataset, Normalized, Normalizer
from bench.options.config import default
from bench.plugins.manager import get_registry
from bench.results.diagnosis import chance_text
from bench.results.leaderboard import rank
from bench.runtime.engines import EngineModel
from bench.store import Store
from bench.train import checkpoints
from bench.train.weights import described


def winners(ranked: list[dict], top_k: int = 1) -> list[dict]:
    """The ``top_k`` best completed trials of each architecture that learned (above chance), in leaderboard order."""
    taken: dict[str, int] = {}
    out = []
    for t in ranked:
        if t["rank"] is None or not t.get("checkpoint") or t.get("learned") is False:
            continue
        if taken.get(t["architecture"], 0) < top_k:
            taken[t["architecture"]] = taken.get(t["architecture"], 0) + 1
            out.append(t)
    return out


def unlearned_warning(ranked: list[dict], run_id: str) -> str | None:
    """One line naming the architectures none of whose trials learned (so none is deployed), or None."""
    learned_archs = {t["architecture"] for t in ranked if t.get("learned")}
    best: dict[str, dict] = {}
    for t in ranked:
        if t.get("learned") is False and t.get("checkpoint") and t["architecture"] not in learned_archs:
            best.setdefault(t["architecture"], t)
    if not best:
        return None
    named = "; ".join(f"{arch} ({trial_label(t['idx'])}: {chance_text(t)})" for arch, t in best.items())
    first = trial_label(next(iter(best.values()))["idx"])
    return (
        f"did not learn, so not deployed and left off the fronts: {named}. `bench benchmark {run_id} {first}` "
        "deploys one anyway"
    )


def select_trials(store: Store, run: dict, refs: tuple[str, ...], top_k: int) -> list[dict]:
    """Trials named by ``refs`` (3 or t003), or the winners of the run."""
    ranked = rank(store.trials(run["id"]))
    if not refs:
        chosen = winners(ranked, top_k)
        if not chosen:
            at_chance = [t for t in ranked if t.get("learned") is False and t.get("checkpoint")]
            if at_chance:
                raise BenchError(
                    f"no trial of run {run['id']} learned ({trial_label(at_chance[0]['idx'])}'s "
                    f"{chance_text(at_chance[0])}): name one to deploy it anyway, e.g. "
                    f"`bench benchmark {run['id']} {trial_label(at_chance[0]['idx'])}`"
                )
            raise BenchError(f"run {run['id']} has no completed trial with a checkpoint to export")
        return chosen
    by_idx = {t["idx"]: t for t in ranked}
    out = []
    for ref in refs:
        text = ref.lower().removeprefix("t")
        if not (text.isascii() and text.isdigit()) or int(text) not in by_idx:
            raise UsageError(  # a name the user typed, as an unknown run is
                f"run {run['id']} has no trial '{ref}' (trials: t001..{trial_label(max(by_idx, default=0))})"
            )
        trial = by_idx[int(text)]
        if not trial.get("checkpoint"):
            raise BenchError(f"trial {trial_label(trial['idx'])} has no checkpoint (status {trial['status']})")
        out.append(trial)
    return out


def load_model(store: Store, run: dict, trial: dict) -> nn.Module:
    """The trial's architecture with its best checkpoint, verified against the recorded hash."""
    registry = get_registry()
    if trial["architecture"] not in registry:
        raise BenchError(
            f"architecture '{trial['architecture']}' of trial {trial_label(trial['idx'])} is not available: "
            f"is its plugin '{trial['plugin']}' installed?"
        )
    arch = registry.get(trial["architecture"])
    model = arch.build(tuple(run["input_shape"]), len(run["classes"]), trial["variant"])
    state, _ = checkpoints.load(store.checkpoint_path(trial), trial["checkpoint_sha256"])
    model.load_state_dict(state)
    return model.eval()


def test_images(data: Dataset, trial: dict) -> tuple[Normalized, torch.Tensor]:
    """The trial's test images, normalized a slice at a time (bench.data.splits.Normalized), and their labels."""
    hp = trial["hparams"]
    test = data.split(hp["val_ratio"], hp["seed"]).test
    return Normalized(test, Normalizer(data)), test.labels


def calibration_and_test(data: Dataset, trial: dict, n: int) -> tuple[np.ndarray, Normalized, np.ndarray]:
    """The first ``n`` images of the trial's own training split (calibration, a float32 array) and its test images
    (normalized a slice at a time), preprocessed as the model takes them, with the test labels."""
    hp = trial["hparams"]
    splits = data.split(hp["val_ratio"], hp["seed"])
    normalize = Normalizer(data)
    with torch.no_grad():
        calibration = normalize(splits.train.take(slice(0, n))).numpy().astype(np.float32)
    return calibration, Normalized(splits.test, normalize), splits.test.labels.numpy()


def onnx_metadata(run: dict, trial: dict, data: Dataset) -> dict:
    """What someone holding only the ONNX file needs to feed it raw images and name its predictions."""
    return {
        "classes": data.classes,
        "input_shape": list(data.input_shape),
        "pixel_scale": data.pixel_scale,
        "mean": list(data.mean),
        "std": list(data.std),
        "channel_order": "RGB" if data.input_shape[0] == 3 else "grayscale" if data.input_shape[0] == 1 else None,
        "resize": data.resize or f"none: the dataset's images are {data.input_shape[1]}x{data.input_shape[2]}",
        "preprocessing": "x = (raw_pixel * pixel_scale - mean[c]) / std[c]; float32, NCHW; input 'input', "
        "output 'logits'",
        "architecture": trial["architecture"],
        "plugin": trial["plugin"],
        "variant": trial["variant"],
        "dataset": data.name,
        "initial_weights": described(trial["hparams"].get("weights"))
        or f"random (torch.manual_seed({trial['hparams']['seed']}))",
        "run": run["id"],
        "trial": trial_label(trial["idx"], run["id"]),
        "cnnbench_version": __version__,
    }


def verified(
    store: Store,
    trial: dict,
    relative: str,
    sha256: str,
    again: str = "export it again (`bench export`)",
    made: str = "exported",
) -> Path:
    """The path of a recorded ONNX file whose bytes still hash to ``sha256``."""
    path = store.artifact_path(relative)
    try:
        data_bytes = path.read_bytes()
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror}") from exc
    if hashlib.sha256(data_bytes).hexdigest() != sha256:
        raise BenchError(f"{path} changed since it was {made} and checked: {again}")
    return path


def intact(store: Store, trial: dict, exp: dict | None) -> bool:
    """Whether ``exp`` is a verified export whose file still has its recorded bytes."""
    if exp is None or exp["status"] != ExportStatus.OK:
        return False
    try:
        verified(store, trial, exp["path"], exp["sha256"])
    except BenchError:
        return False
    return True


def verified_export(store: Store, trial: dict) -> Path:
    exp = store.export_of(trial["id"])
    if exp is None or exp["status"] != ExportStatus.OK:
        raise BenchError(
            f"trial {trial_label(trial['idx'])} has no verified ONNX export"
            + (f" ({exp['status']}: {exp['note']})" if exp else " (run `bench export` first)")
        )
    return verified(store, trial, exp["path"], exp["sha256"])


def unexported(run: dict, trial: dict, exp: dict) -> str:
    """Why a trial's export cannot be benchmarked, and the command that changes it."""
    again = f"bench export {run['id']} {trial_label(trial['idx'])}"
    if exp["status"] == ExportStatus.PARITY_FAILED:
        wider = max(default("tolerance"), 10 * (exp["tolerance"] or 0))
        return (
            f"its ONNX export differs from PyTorch beyond the tolerance ({exp['note']}); if that difference is "
            f"acceptable, `{again} --tolerance {wider:g}` exports it again"
        )
    return f"its ONNX export failed ({exp['note']}); `{again} --exporter torchscript` or another --opset may work"


def deployable(store: Store, run: dict, trial: dict, data: Dataset, calibration_images: int) -> EngineModel:
    """The trial's verified model as engines receive it: its fp32 export and the variants that run, its PyTorch
    model, and calibration images for engines that quantize themselves."""
    path = verified_export(store, trial)
    files = {Precision.FP32: path}
    for variant in store.variants_of(trial["id"]):
        if variant["status"] in RUNNABLE:
            again = "make it again (`bench quantize`)"
            files[variant["precision"]] = verified(store, trial, variant["path"], variant["sha256"], again, "made")
    calibration, _, _ = calibration_and_test(data, trial, calibration_images)
    return EngineModel(
        path,
        files,
        load_model(store, run, trial),
        tuple(run["input_shape"]),
        calibration,
        store.trial_dir(run["id"], trial["idx"]),
    )
