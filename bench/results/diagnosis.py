"""What a trial's loss and accuracy histories say, in words: the interpretation the lab report asked for.

Rules (the thresholds are stated in every report's method section):
- diverged: the trial stopped because its training loss was not finite or exploded.
- overfitting from epoch N: N is the epoch of lowest validation loss (the kept checkpoint); at least
  OVERFIT_MIN_EPOCHS epochs follow it, the last validation loss is at least OVERFIT_RISE above that minimum,
  and the training loss kept falling after N.
- still improving: the last epoch was the best one.
- underfitting: the kept checkpoint classifies less than UNDERFIT_TRAIN_ACC of its own training images.
- generalization gap: training accuracy exceeds validation accuracy by more than GAP points.
- batch-norm mismatch: the training steps of the kept epoch classified more than GAP points more of their images
  than the same weights do in evaluation mode (the running statistics describe other weights).
- at chance (did not learn): the kept checkpoint's validation accuracy is no more than guessing reaches plus noise:
  the share of the most common class (in the test set's confusion matrix; 1/classes without one) plus CHANCE_Z
  standard errors of that share over the validation images (one-sided 99%). Such a trial is ranked but is no
  architecture's winner: not deployed by default and left off every Pareto front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.core.status import TrialStatus

OVERFIT_RISE = 0.10  # relative rise of the validation loss above its minimum
OVERFIT_MIN_EPOCHS = 2  # epochs after the best one before calling it a trend
UNDERFIT_TRAIN_ACC = 0.90
GAP = 0.10
CHANCE_Z = 2.326  # one-sided 99% normal quantile: validation accuracy this far above guessing has learned something
CHANCE_RULE = "validation accuracy within noise of guessing the most common class, one-sided 99%"


@dataclass
class Finding:
    kind: str  # diverged | overfitting | still_improving | underfitting | gap | converged | at_chance | batchnorm | ...
    text: str
    epoch: int | None = None


def chance(trial: dict) -> tuple[float, float] | None:
    """(what guessing the most common class reaches, the validation accuracy within noise of it), or None when the
    trial lacks what that needs (its test confusion matrix or its validation size)."""
    confusion, n_val = trial.get("confusion"), (trial.get("split") or {}).get("val")
    if not confusion or not n_val:
        return None
    rows = [sum(row) for row in confusion]
    share = max(rows) / sum(rows) if sum(rows) else 1 / len(rows)  # never below 1/classes
    return share, share + CHANCE_Z * math.sqrt(share * (1 - share) / n_val)


def learned(trial: dict) -> bool:
    """Whether a finished trial's validation accuracy is above what guessing reaches, noise included (True when that
    cannot be told: no validation accuracy, no confusion matrix)."""
    level = chance(trial)
    return level is None or trial.get("val_acc") is None or trial["val_acc"] > level[1]


def chance_text(trial: dict) -> str:
    """Why a trial counts as not learned, in one sentence's worth of words."""
    share, bound = chance(trial)
    return (
        f"validation {100 * trial['val_acc']:.1f}% is within noise of guessing ({100 * share:.1f}%, the most common "
        f"class; up to {100 * bound:.1f}% over {trial['split']['val']} validation images)"
    )


def diagnose(trial: dict, history: list[dict]) -> list[Finding]:
    status = trial["status"]
    if status == TrialStatus.DIVERGED:
        why = trial.get("note") or "loss not finite"
        lr = trial["hparams"]["lr"]
        text = f"Training diverged ({why}): the learning rate ({lr:g}) is probably too high for this model."
        return [Finding(TrialStatus.DIVERGED, text)]
    if status == TrialStatus.PRUNED:
        why = trial.get("note") or "stopped by the scheduler"
        text = f"Pruned: {why}, its validation figures being among the weakest of its rung; its best epoch was kept."
        return [Finding(TrialStatus.PRUNED, text)]
    if status in (TrialStatus.FAILED, TrialStatus.INTERRUPTED, TrialStatus.RUNNING, TrialStatus.PENDING):
        why = f" ({trial['note']})." if trial.get("note") else "."
        return [Finding(status, f"No diagnosis: the trial {status}{why}")]
    if not history or trial.get("best_epoch") is None:
        return []
    findings: list[Finding] = []
    if not learned(trial):
        findings.append(Finding("at_chance", _at_chance(trial)))
    if mismatch := _batchnorm_mismatch(trial, history[trial["best_epoch"] - 1]):
        findings.append(mismatch)
    if status == TrialStatus.EARLY_STOPPED:
        findings.append(Finding(TrialStatus.EARLY_STOPPED, f"Stopped early: {trial.get('note')}."))
    best = trial["best_epoch"]
    last = history[-1]
    at_best = history[best - 1]
    val_min = at_best["val_loss"]
    after = history[best:]
    if (
        len(after) >= OVERFIT_MIN_EPOCHS
        and val_min is not None
        and last["val_loss"] is not None
        and last["val_loss"] >= val_min * (1 + OVERFIT_RISE)
        and last["train_loss"] < at_best["train_loss"]
    ):
        findings.append(
            Finding(
                "overfitting",
                f"Overfitting from epoch {best}: validation loss rose from {val_min:.4f} (epoch {best}) to "
                f"{last['val_loss']:.4f} (epoch {last['epoch']}) while training loss fell from "
                f"{at_best['train_loss']:.4f} to {last['train_loss']:.4f}; the checkpoint of epoch {best} was kept.",
                best,
            )
        )
    if best == last["epoch"]:
        findings.append(
            Finding(
                "still_improving",
                f"Still improving at the last epoch ({best}): validation loss reached its lowest there "
                f"({val_min:.4f}); more epochs may help.",
                best,
            )
        )
    train_acc, val_acc = trial.get("train_acc"), trial.get("val_acc")
    if train_acc is not None and train_acc < UNDERFIT_TRAIN_ACC:
        findings.append(
            Finding(
                "underfitting",
                f"Underfitting: the kept checkpoint classifies only {100 * train_acc:.2f}% of its own training images; "
                "a larger model, less regularization, more epochs or a higher learning rate may help.",
            )
        )
    if train_acc is not None and val_acc is not None and train_acc - val_acc > GAP and learned(trial):
        findings.append(
            Finding(
                "gap",
                f"Generalization gap: {100 * train_acc:.2f}% on training images against {100 * val_acc:.2f}% on "
                "validation images; more data, augmentation or regularization may help.",
            )
        )
    if all(f.kind == TrialStatus.EARLY_STOPPED for f in findings):
        findings.append(
            Finding(
                "converged",
                f"Converged: validation loss reached its lowest at epoch {best} of {last['epoch']} and did not rise "
                f"by more than {100 * OVERFIT_RISE:.0f}% afterwards.",
                best,
            )
        )
    return findings


def _batchnorm_mismatch(trial: dict, at_best: dict) -> Finding | None:
    """The training steps classified far more of their images than the same weights do in evaluation mode: the
    evaluation's batch-norm statistics do not describe those weights (augmentation and dropout make the steps' own
    figure the lower one otherwise)."""
    stepped, evaluated = at_best.get("train_acc"), trial.get("train_acc")
    if stepped is None or evaluated is None or stepped - evaluated <= GAP:
        return None
    fix = (
        "they were recomputed before each validation, yet differ: a batch norm that cannot be recalibrated?"
        if (trial.get("hparams") or {}).get("bn_recalibrate") == "on"
        else "--bn-recalibrate on recomputes them over training images before each validation"
    )
    return Finding(
        "batchnorm",
        f"Batch-norm statistics do not match the weights: the training steps of epoch {at_best['epoch']} classified "
        f"{100 * stepped:.1f}% of their images, the same weights in evaluation mode {100 * evaluated:.1f}% of the "
        f"training images; {fix}.",
        at_best["epoch"],
    )


def _at_chance(trial: dict) -> str:
    text = f"Did not learn: {chance_text(trial)}. It is not deployed by default and is left off the Pareto fronts"
    train_acc, bound = trial.get("train_acc"), chance(trial)[1]
    if train_acc is not None and train_acc > bound + GAP:
        text += (
            f". Yet its checkpoint classifies {100 * train_acc:.1f}% of its training images: it learned them and "
            "does not generalize (more data or augmentation may help), or its evaluation differs from its training "
            "(batch-norm statistics that lag the weights: --bn-recalibrate on)"
        )
    else:
        text += ": a learning rate, recipe or epoch count suited to this data may help"
    return text + "."


def summary(findings: list[Finding]) -> str:
    """A short label for tables: 'overfitting from 10', 'still improving', ..."""
    labels = []
    for f in findings:
        label = f.kind.replace("_", " ")
        if f.kind == "overfitting":
            label += f" from {f.epoch}"
        labels.append(label)
    return ", ".join(labels) or "-"
