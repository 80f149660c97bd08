"""The report's method section: how every figure in it was measured, from what the store recorded beside it."""

from __future__ import annotations

from bench.core.noise import NOISE_METHOD
from bench.core.status import MeasurementStatus
from bench.report.views import TrialView
from bench.results import diagnosis
from bench.results.deployed import RATIO_RULE, how_made
from bench.runtime.protocol import graph_levels


def method_section(runs: list[dict], views: list[TrialView]) -> str:
    """How every figure of the report was measured: a paragraph per kind of figure, from what the store recorded
    beside it."""
    lines = _training(views)
    lines += [line for line in (_onnx(views), _latency(views)) if line]
    lines.append(_noise(views))
    if precisions := _precisions(views):
        lines.append(precisions)
    unavailable = {
        r["provider"]: r["note"] for v in views for r in v.latency if r["status"] == MeasurementStatus.UNAVAILABLE
    }
    lines += [f"- **{p} unavailable:** {note}" for p, note in unavailable.items()]
    return "\n".join(lines)


SELECTION = {
    "val_loss": "the epoch with the lowest validation loss",
    "val_acc": "the epoch with the highest validation accuracy (ties: lower loss)",
}


def _training(views: list[TrialView]) -> list[str]:
    selects = sorted({v.trial["hparams"].get("select", "val_loss") for v in views})
    return [
        "- **Training.** One trial is one architecture variant with one set of hyperparameters. Every epoch "
        "records the mean training loss and accuracy (as seen during training, dropout on) and the validation "
        "loss and accuracy (eval mode, no gradients).",
        "- **Best checkpoint.** "
        + " / ".join(SELECTION[s] for s in selects)
        + "; its weights are restored, and the training, validation and test accuracies in this report are "
        "measured on them (eval mode). Test images are never used for selection; the leaderboard is ranked by "
        "test accuracy as the lab asks, and ★ marks the trial that validation accuracy selects for each "
        "architecture.",
        "- **Divergence.** A trial stops as `diverged` when its training loss is not finite or exceeds 10 x "
        "ln(classes).",
        f"- **Diagnosis.** Overfitting from epoch N: N is the kept epoch, at least {diagnosis.OVERFIT_MIN_EPOCHS} "
        f"epochs follow it, the last validation loss is at least {100 * diagnosis.OVERFIT_RISE:.0f}% above its "
        "minimum and the training loss kept falling. Still improving: the last epoch was the best. Underfitting: "
        f"training accuracy below {100 * diagnosis.UNDERFIT_TRAIN_ACC:.0f}%. Generalization gap: training "
        f"accuracy more than {100 * diagnosis.GAP:.0f} points above validation accuracy.",
        "- **Model size.** Parameters counted from the model; FLOPs per image (forward) by torch's flop "
        "counter (a multiply-add is 2 FLOPs).",
    ]


def _onnx(views: list[TrialView]) -> str | None:
    exports = [v.export for v in views if v.export]
    if not exports:
        return None
    e = exports[0]
    return (
        f"- **ONNX.** {e['exporter']}, opset {e['opset']}, dynamic batch axis, checked by "
        "`onnx.checker.check_model(full_check=True)`; compared with PyTorch on up to 512 real test images "
        f"(tolerance {e['tolerance']:g} on the largest logit difference). ONNX test accuracy is computed by "
        "onnxruntime on the CPU over the whole test set."
    )


def _latency(views: list[TrialView]) -> str | None:
    methods = [r for v in views for r in v.latency if r["status"] == MeasurementStatus.OK]
    if not methods:
        return None
    m = methods[0]["method"]
    ort_providers = sorted({r["provider"] for r in methods if r["engine"] == "onnxruntime"})
    torch_devices = sorted({r["provider"] for r in methods if r["engine"] == "torch"})
    ns = [r["n"] for r in methods]
    return (
        f"- **Latency.** Per call on real test images; session creation and the first run are recorded apart; "
        f"{m['warmup']} warm-up runs, then timed runs until at least {m['min_runs']} runs and "
        f"{m['min_time_s']:g} s ({min(ns)} to {max(ns)} runs here); {m['timer']}; percentiles: "
        f"{m['percentiles']}. ONNX Runtime on {', '.join(ort_providers) or '-'}, PyTorch eager (the baseline) on "
        f"{', '.join(torch_devices) or '-'}, same inputs; intra-op threads {m['intra_op_threads']}"
        + f", inter-op 1, ORT graph optimization {graph_levels([r['method'] for r in methods])}"
        + "; GPU timings use IO binding (no host copies timed). Throughput = batch size / mean latency."
        + _repetitions(views)
    )


def _noise(views: list[TrialView]) -> str:
    noisy_latency = sum(
        bool(r.get("noisy")) for v in views for r in v.repetitions if r["status"] == MeasurementStatus.OK
    )
    noisy_epochs = sum(bool(h.get("noisy")) for v in views for h in v.history)
    return (
        "- **Noise.** Every latency figure and every epoch's time records what the machine did meanwhile: "
        f"{NOISE_METHOD}. "
        f"Here {noisy_latency} latency figure{'s' * (noisy_latency != 1)} and {noisy_epochs} epoch "
        f"time{'s' * (noisy_epochs != 1)} are marked *noisy*; in every table, {RATIO_RULE}. "
        "Re-measure stored models with `bench benchmark RUN --repeat N`."
    )


def _precisions(views: list[TrialView]) -> str | None:
    made = [x for v in views for x in v.variants if x["method"]]
    if not made:
        return None
    kinds = "; ".join(sorted({f"{x['precision']}: {how_made({**x, 'note': None}).split(';')[0]}" for x in made}))
    tools = ", ".join(sorted({x["method"]["tool"] for x in made}))
    drops = ", ".join(f"{d:g}" for d in sorted({x["max_accuracy_drop"] for x in made}))
    return (
        f"- **Precisions.** Variants made from the verified fp32 ONNX file with {tools}: {kinds}. int8 is "
        "static (QDQ, per-channel int8 weights, int8 activations calibrated on the trial's own training images) "
        "unless that is impossible, then dynamic, with the reason in its note. Each is checked like the export: "
        "test accuracy through onnxruntime (CPU) on the whole test set, top-1 agreement with fp32, file size; "
        f"flagged (and kept) past {drops} points of accuracy lost; benchmarked like fp32 (ONNX Runtime only)."
    )


def _repetitions(views: list[TrialView]) -> str:
    repeats = max((r.get("repeats") or 1 for v in views for r in v.latency), default=1)
    if repeats < 2:
        return ""
    return (
        f" Each model was measured {repeats} times, each repetition in a fresh worker process; a table's figure is "
        "the repetition with the median p50, and Deployment lists the spread across them and which are unstable."
    )
