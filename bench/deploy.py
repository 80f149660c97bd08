"""From the store to deployment figures: pick the winners of a run, export them to ONNX, benchmark them,
and record everything against their trials."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench import checkpoints, inference, onnxrt
from bench.data import Dataset, Normalized, Normalizer
from bench.engines import Model
from bench.errors import BenchError, UsageError, one_line
from bench.export import ExportSettings, export_model
from bench.files import atomic_write
from bench.formats import trial_label
from bench.inference import BenchSettings
from bench.leaderboard import rank
from bench.modelstats import activation_bytes, count_flops
from bench.options import default
from bench.plugins import get_registry, load_run_dataset
from bench.quantize import QuantizeSettings, make_variants
from bench.status import RUNNABLE, ExportStatus, MeasurementStatus, VariantStatus
from bench.store import Store
from bench.transfer import described
from bench.version import __version__


def winners(ranked: list[dict], top_k: int = 1) -> list[dict]:
    """The ``top_k`` best completed trials of each architecture, in leaderboard order."""
    taken: dict[str, int] = {}
    out = []
    for t in ranked:
        if t["rank"] is None or not t.get("checkpoint"):
            continue
        if taken.get(t["architecture"], 0) < top_k:
            taken[t["architecture"]] = taken.get(t["architecture"], 0) + 1
            out.append(t)
    return out


def select_trials(store: Store, run: dict, refs: tuple[str, ...], top_k: int) -> list[dict]:
    """Trials named by ``refs`` (3 or t003), or the winners of the run."""
    ranked = rank(store.trials(run["id"]))
    if not refs:
        chosen = winners(ranked, top_k)
        if not chosen:
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


def _test_images(data: Dataset, trial: dict) -> tuple[Normalized, torch.Tensor]:
    """The trial's test images, normalized a slice at a time (bench.data.Normalized), and their labels."""
    hp = trial["hparams"]
    test = data.split(hp["val_ratio"], hp["seed"]).test
    return Normalized(test, Normalizer(data)), test.labels


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


def export_trial(store: Store, run: dict, trial: dict, data: Dataset, settings: ExportSettings) -> dict:
    """Export one trial to <run>/t<NNN>/model.onnx and record how it went. A failure is recorded, not raised,
    unless it would replace a verified export whose file is intact: then the old file, its variants and figures
    are kept and BenchError says so."""
    previous = store.export_of(trial["id"])
    model = load_model(store, run, trial)
    images, labels = _test_images(data, trial)
    result = export_model(
        model,
        data.input_shape,
        onnx_metadata(run, trial, data),
        images,
        settings.tolerance,
        settings.opset,
        settings.exporter,
    )
    row = {
        "status": result.status,
        "note": result.note,
        "exporter": result.exporter,
        "opset": result.opset,
        "tolerance": settings.tolerance,
        "parity_images": result.parity_images,
        "max_abs_diff": result.max_abs_diff,
        "top1_agreement": result.top1_agreement,
        "torch_test_acc": trial["test_acc"],
        "flops": count_flops(model, data.input_shape),
    }
    if result.status != ExportStatus.OK and _intact(store, trial, previous):
        raise BenchError(
            f"export failed ({result.status}: {result.note}); the previous verified export (opset "
            f"{previous['opset']}, {previous['exporter']}), its variants and figures are kept"
        )
    if result.data is not None:
        path = store.trial_dir(run["id"], trial["idx"]) / "model.onnx"
        atomic_write(path, result.data)
        row.update(path=path, sha256=hashlib.sha256(result.data).hexdigest(), size_bytes=len(result.data))
        if result.status == ExportStatus.OK:
            logits = onnxrt.logits(onnxrt.session(path, "cpu"), images)
            row["onnx_test_acc"] = float((logits.argmax(1) == labels.numpy()).mean())
    store.record_export(trial["id"], row)
    return store.export_of(trial["id"])


def _verified(
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


def _intact(store: Store, trial: dict, exp: dict | None) -> bool:
    """Whether ``exp`` is a verified export whose file still has its recorded bytes."""
    if exp is None or exp["status"] != ExportStatus.OK:
        return False
    try:
        _verified(store, trial, exp["path"], exp["sha256"])
    except BenchError:
        return False
    return True


def _verified_export(store: Store, trial: dict) -> Path:
    exp = store.export_of(trial["id"])
    if exp is None or exp["status"] != ExportStatus.OK:
        raise BenchError(
            f"trial {trial_label(trial['idx'])} has no verified ONNX export"
            + (f" ({exp['status']}: {exp['note']})" if exp else " (run `bench export` first)")
        )
    return _verified(store, trial, exp["path"], exp["sha256"])


def unexported(run: dict, trial: dict, exp: dict) -> str:
    """Why a trial's export cannot be benchmarked, and the command that changes it."""
    again = f"bench export {run['id']} {trial_label(trial['idx'])}"
    if exp["status"] == ExportStatus.PARITY_FAILED:
        return (
            f"its ONNX export differs from PyTorch beyond the tolerance ({exp['note']}); if that difference is "
            f"acceptable, `{again} --tolerance {max(1e-3, 10 * (exp['tolerance'] or 1e-4)):g}` exports it again"
        )
    return f"its ONNX export failed ({exp['note']}); `{again} --exporter torchscript` or another --opset may work"


def calibration_and_test(data: Dataset, trial: dict, n: int) -> tuple[np.ndarray, Normalized, np.ndarray]:
    """The first ``n`` images of the trial's own training split (calibration, a float32 array) and its test images
    (normalized a slice at a time), preprocessed as the model takes them, with the test labels."""
    hp = trial["hparams"]
    splits = data.split(hp["val_ratio"], hp["seed"])
    normalize = Normalizer(data)
    with torch.no_grad():
        calibration = normalize(splits.train.take(slice(0, n))).numpy().astype(np.float32)
    return calibration, Normalized(splits.test, normalize), splits.test.labels.numpy()


def quantize_trial(
    store: Store, run: dict, trial: dict, data: Dataset, settings: QuantizeSettings, threads: int | None = None
) -> list[dict]:
    """Make and check the int8 and fp16 variants of the trial's verified ONNX export (bench.quantize), write
    them to <run>/t<NNN>/model-<precision>.onnx and record each, failed ones with their reason."""
    fp32_path = _verified_export(store, trial)
    calibration, test, labels = calibration_and_test(data, trial, settings.calibration_images)
    for variant in make_variants(fp32_path, calibration, test, labels, settings, threads):
        row = variant.row(settings.max_accuracy_drop)
        path = store.trial_dir(run["id"], trial["idx"]) / f"model-{variant.precision}.onnx"
        if variant.data is not None and variant.status != VariantStatus.FAILED:
            atomic_write(path, variant.data)
            row.update(path=path, sha256=hashlib.sha256(variant.data).hexdigest())
        store.record_variant(trial["id"], row)
        if "path" not in row:  # a failed variant leaves no file of an earlier one behind to be mistaken for it
            path.unlink(missing_ok=True)
    return store.variants_of(trial["id"])


def _rows(measurements, repeat: int) -> list[dict]:
    return [
        {
            "precision": m.precision,
            "repeat": repeat,
            "engine": m.engine,
            "provider": m.provider,
            "batch_size": m.batch_size,
            "status": m.status,
            "note": m.note,
            "session_ms": m.session_ms,
            "first_ms": m.first_ms,
            "warmup": m.warmup,
            "total_s": m.total_s,
            "peak_rss_mb": m.peak_rss_mb,
            "samples": [round(x, 4) for x in m.samples],
            "method": m.method,
            **m.summary(),
        }
        for m in measurements
    ]


def deployable(store: Store, run: dict, trial: dict, data: Dataset, calibration_images: int) -> Model:
    """The trial's verified model as engines receive it: its fp32 export and the variants that run, its PyTorch
    model, and calibration images for engines that quantize themselves."""
    path = _verified_export(store, trial)
    files = {"fp32": path}
    for variant in store.variants_of(trial["id"]):
        if variant["status"] in RUNNABLE:
            again = "make it again (`bench quantize`)"
            files[variant["precision"]] = _verified(store, trial, variant["path"], variant["sha256"], again, "made")
    calibration, _, _ = calibration_and_test(data, trial, calibration_images)
    return Model(
        path,
        files,
        load_model(store, run, trial),
        tuple(run["input_shape"]),
        calibration,
        store.trial_dir(run["id"], trial["idx"]),
    )


def benchmark_trial(
    store: Store,
    run: dict,
    trial: dict,
    data: Dataset,
    settings: BenchSettings,
    calibration_images: int = default("calibration_images"),
) -> list[dict]:
    """Latency of the trial's verified model in every engine ``settings`` asks for (bench.engines), at every
    precision each runs (ONNX Runtime: the fp32 export and its int8/fp16 variants; PyTorch: the model itself;
    OpenVINO: the export at fp32 and bf16 and its own int8), then the test accuracy each engine gives at each
    precision; nothing for a failed export."""
    from bench.plugins import get_plugins

    model = deployable(store, run, trial, data, calibration_images)
    inference.check_batch_sizes(
        settings.batch_sizes, data.input_shape, activation_bytes(model.module, data.input_shape)
    )
    engines = get_plugins().engines.select(settings.engines)
    images, labels = _test_images(data, trial)
    rows = []
    for repeat in range(1, settings.repeat + 1):  # each repetition times every model once: drifts show as spread
        rows += _rows(inference.benchmark(model, images, settings, engines), repeat)
    # Recorded together once all are measured: a model has the whole benchmark or none of it (a stopped
    # benchmark is done again on resume).
    store.record_latencies(trial["id"], rows)
    store.record_evaluations(trial["id"], evaluations(model, engines, images, labels, settings))
    return store.latency_of(trial["id"])


def evaluations(
    model: Model, engines: list, images: torch.Tensor, labels: torch.Tensor, settings: BenchSettings
) -> list[dict]:
    """The test accuracy of every engine at every precision it runs on the CPU, and its top-1 agreement with the
    PyTorch model's fp32 predictions."""
    threads = settings.bench_threads or torch.get_num_threads()
    with torch.inference_mode():
        reference = torch.cat([model.module(images[i : i + 256]) for i in range(0, len(images), 256)]).argmax(1)
    rows = []
    for entry in engines:
        try:
            devices, precisions = dict(entry.engine.devices()), dict(entry.engine.precisions(model))
        except Exception as exc:  # a broken engine plugin: recorded against it, the others go on
            rows.append(
                {
                    "engine": entry.name,
                    "precision": "fp32",
                    "images": len(images),
                    "status": MeasurementStatus.FAILED,
                    "note": one_line(exc, 200),
                }
            )
            continue
        for precision, why in precisions.items():
            row = {"engine": entry.name, "precision": precision, "images": len(images)}
            why = why or devices.get("cpu", "it does not run on the CPU")
            if why:
                rows.append({**row, "status": MeasurementStatus.UNAVAILABLE, "note": why})
                continue
            try:
                logits, method = inference.evaluate(entry, model, precision, images, threads)
                predictions = torch.from_numpy(logits.argmax(1))
            except Exception as exc:  # one engine's failure is recorded, the others go on
                rows.append({**row, "status": MeasurementStatus.FAILED, "note": one_line(exc, 200)})
                continue
            rows.append(
                {
                    **row,
                    "method": method,
                    "status": MeasurementStatus.OK,
                    "test_acc": int((predictions == labels).sum()) / len(labels),
                    "top1_agreement": int((predictions == reference).sum()) / len(labels),
                }
            )
    return rows


def export_and_benchmark(
    store: Store,
    run: dict,
    trials: list[dict],
    *,
    export: ExportSettings | None = None,
    benchmark: BenchSettings | None = None,
    quantize: QuantizeSettings | None = None,
    reuse_exports: bool = False,
    reuse_variants: bool | None = None,
    on_event: Callable[[str, dict, dict | list], None] | None = None,
    notes: list[str] | None = None,
    data: Dataset | None = None,
) -> list[str]:
    """Export every trial (with ``reuse_exports``, only those never exported), make the ``quantize`` variants of
    those whose export is verified (with ``reuse_variants``, default ``reuse_exports``, only the precisions not made
    yet), then ``benchmark`` them. One trial's failure never stops the others: export and variant failures are
    recorded in the store; problems with what is already there (a changed file, a missing checkpoint) are
    returned, and so is a trial asked to be benchmarked whose export cannot be (why, and the option that changes
    it), unless ``notes`` collects those (a run's winners: they were not asked for by name). ``data``: the run's
    dataset, when the caller has loaded it (bench.plugins.load_run_dataset)."""
    if benchmark is not None:
        from bench.plugins import get_plugins

        get_plugins().engines.select(benchmark.engines)  # an unknown engine is the user's error, before any work
        inference.check_batch_sizes(benchmark.batch_sizes, run["input_shape"])
    data = data or load_run_dataset(run)
    problems = []
    for trial in trials:
        try:
            exp = store.export_of(trial["id"]) if reuse_exports else None
            if exp is None:
                exp = export_trial(store, run, trial, data, export or ExportSettings())
                if on_event:
                    on_event("exported", trial, exp)
            if exp["status"] != ExportStatus.OK and (not reuse_exports or (quantize and benchmark is None)):
                # asked for by `bench export`, or `bench quantize --no-benchmark`: nothing was made, say why
                why = f"{trial_label(trial['idx'])} {trial['architecture']}: " + unexported(run, trial, exp)
                (notes if notes is not None else problems).append(why)
            if quantize is not None and quantize.quantize and exp["status"] == ExportStatus.OK:
                reuse = reuse_exports if reuse_variants is None else reuse_variants
                made = {v["precision"] for v in store.variants_of(trial["id"])} if reuse else set()
                missing = tuple(p for p in quantize.quantize if p not in made)
                if missing:
                    rows = quantize_trial(
                        store,
                        run,
                        trial,
                        data,
                        replace(quantize, quantize=missing),
                        benchmark.bench_threads if benchmark else None,
                    )
                    if on_event:
                        on_event("quantized", trial, rows)
            if benchmark is not None and exp["status"] == ExportStatus.OK:
                calibration = quantize.calibration_images if quantize else default("calibration_images")
                rows = benchmark_trial(store, run, trial, data, benchmark, calibration)
                if on_event:
                    on_event("benchmarked", trial, rows)
            elif benchmark is not None:
                why = f"{trial_label(trial['idx'])} {trial['architecture']}: not benchmarked: " + unexported(
                    run, trial, exp
                )
                (notes if notes is not None else problems).append(why)
        except BenchError as exc:
            problems.append(f"{trial_label(trial['idx'])} {trial['architecture']}: {exc}")
    return problems
