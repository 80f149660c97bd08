"""The deploy stage in three steps, each recorded in the store as it ends: export a trial to ONNX (checked against
PyTorch), make its int8/fp16 variants (checked on the test set), benchmark every engine and precision; and `deploy`,
which `bench run`, `export`, `benchmark` and `quantize` call with the steps they ask for, in that order."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bench.core.errors import BenchError
from bench.core.files import atomic_write
from bench.core.formats import trial_label
from bench.core.status import ExportStatus, VariantStatus
from bench.data.splits import Dataset
from bench.deploy.export import ExportSettings, export_model
from bench.deploy.quantize import QuantizeSettings, make_variants
from bench.deploy.timing import benchmark_trial
from bench.deploy.trials import (
    calibration_and_test,
    intact,
    load_model,
    onnx_metadata,
    test_images,
    unexported,
    verified_export,
)
from bench.models.stats import count_flops
from bench.options.config import default
from bench.plugins.dataset_loading import load_run_dataset
from bench.runtime import onnxrt
from bench.runtime.protocol import BenchSettings, check_batch_sizes
from bench.store import Store


def export_trial(store: Store, run: dict, trial: dict, data: Dataset, settings: ExportSettings) -> dict:
    """Export one trial to <run>/t<NNN>/model.onnx and record how it went. A failure is recorded, not raised,
    unless it would replace a verified export whose file is intact: then the old file, its variants and figures
    are kept and BenchError says so."""
    previous = store.export_of(trial["id"])
    model = load_model(store, run, trial)
    images, labels = test_images(data, trial)
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
    if result.status != ExportStatus.OK and intact(store, trial, previous):
        raise BenchError(
            f"export failed ({result.status}: {result.note}); the previous verified export (opset "
            f"{previous['opset']}, {previous['exporter']}), its variants and figures are kept"
        )
    if result.data is not None:
        path = store.trial_dir(run["id"], trial["idx"]) / "model.onnx"
        atomic_write(path, result.data)
        row.update(path=path, sha256=hashlib.sha256(result.data).hexdigest(), size_bytes=len(result.data))
        if result.status == ExportStatus.OK:
            logits = onnxrt.logits(onnxrt.ort_session(path, "cpu"), images)
            row["onnx_test_acc"] = float((logits.argmax(1) == labels.numpy()).mean())
    store.record_export(trial["id"], row)
    return store.export_of(trial["id"])


def quantize_trial(
    store: Store, run: dict, trial: dict, data: Dataset, settings: QuantizeSettings, threads: int | None = None
) -> list[dict]:
    """Make and check the int8 and fp16 variants of the trial's verified ONNX export (bench.deploy.quantize), write
    them to <run>/t<NNN>/model-<precision>.onnx and record each, failed ones with their reason."""
    fp32_path = verified_export(store, trial)
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


@dataclass(frozen=True)
class DeployPlan:
    """What `deploy` does to each trial, in this order: export it (again with ``export_again``, else only if it never
    was), make its ``variants`` (those not made yet; every one again with ``variants_again``), then ``benchmark`` it.
    A step left None is not done."""

    export: ExportSettings = field(default_factory=ExportSettings)
    export_again: bool = False
    variants: QuantizeSettings | None = None
    variants_again: bool = False
    benchmark: BenchSettings | None = None

    @property
    def calibration_images(self) -> int:
        """Training images an engine that quantizes by itself calibrates on (OpenVINO's NNCF)."""
        return self.variants.calibration_images if self.variants else default("calibration_images")


@dataclass
class Deployed:
    """What `deploy` could not do: ``problems`` with what was already there (a changed file, a missing checkpoint),
    and ``undeployable``: trials whose export cannot be benchmarked or used, each with why and the option that
    changes it."""

    problems: list[str] = field(default_factory=list)
    undeployable: list[str] = field(default_factory=list)


def deploy(
    store: Store,
    run: dict,
    trials: list[dict],
    plan: DeployPlan,
    *,
    data: Dataset | None = None,
    on_event: Callable[[str, dict, dict | list], None] | None = None,
) -> Deployed:
    """Every step of ``plan`` for every trial; ``on_event(kind, trial, rows)`` is told as each step ends ("exported",
    "quantized", "benchmarked"). One trial's failure never stops the others: export and variant failures are recorded
    in the store. ``data``: the run's dataset, when the caller has loaded it
    (bench.plugins.dataset_loading.load_run_dataset); an unknown engine or a batch that cannot fit in memory is refused
    before any work."""
    if plan.benchmark is not None:
        from bench.plugins.manager import get_plugins

        get_plugins().engines.select(plan.benchmark.engines)  # an unknown engine is the user's error, before any work
        check_batch_sizes(plan.benchmark.batch_sizes, run["input_shape"])
    data = data or load_run_dataset(run)
    done = Deployed()
    tell = on_event or (lambda *event: None)
    for trial in trials:
        name = f"{trial_label(trial['idx'])} {trial['architecture']}"
        try:
            exp = _export_step(store, run, trial, data, plan, tell)
            if exp["status"] != ExportStatus.OK:
                done.undeployable.append(
                    f"{name}: {'not benchmarked: ' if plan.benchmark else ''}{unexported(run, trial, exp)}"
                )
                continue
            if plan.variants is not None and plan.variants.quantize:
                _variants_step(store, run, trial, data, plan, tell)
            if plan.benchmark is not None:
                tell(
                    "benchmarked",
                    trial,
                    benchmark_trial(store, run, trial, data, plan.benchmark, plan.calibration_images),
                )
        except BenchError as exc:
            done.problems.append(f"{name}: {exc}")
    return done


def _export_step(store: Store, run: dict, trial: dict, data: Dataset, plan: DeployPlan, tell) -> dict:
    """The trial's export: made now (``export_again``, or never made), else the recorded one."""
    exp = None if plan.export_again else store.export_of(trial["id"])
    if exp is None:
        exp = export_trial(store, run, trial, data, plan.export)
        tell("exported", trial, exp)
    return exp


def _variants_step(store: Store, run: dict, trial: dict, data: Dataset, plan: DeployPlan, tell) -> None:
    """The trial's variants of ``plan.variants``: those not made yet, or every one again (``variants_again``)."""
    made = set() if plan.variants_again else {v["precision"] for v in store.variants_of(trial["id"])}
    missing = tuple(p for p in plan.variants.quantize if p not in made)
    if missing:
        threads = plan.benchmark.bench_threads if plan.benchmark else None
        tell(
            "quantized",
            trial,
            quantize_trial(store, run, trial, data, replace(plan.variants, quantize=missing), threads),
        )


@dataclass(frozen=True)
class DeployResult:
    """One trial's deployment as the store holds it: its export, its variants, every latency measurement (each
    repetition), the test accuracy each engine gives at each precision and its serving scenarios (bench.store
    rows)."""

    trial: dict
    export: dict | None
    variants: list[dict]
    latency: list[dict]
    evaluations: list[dict]
    serving: list[dict] = field(default_factory=list)

    @classmethod
    def read(cls, store: Store, trial: dict) -> DeployResult:
        tid = trial["id"]
        return cls(
            trial,
            store.export_of(tid),
            store.variants_of(tid),
            store.latency_of(tid),
            store.evaluations_of(tid),
            store.serving_of(tid),
        )
