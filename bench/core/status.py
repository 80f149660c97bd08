"""The statuses of runs, trials and deployment records, and the precisions models compute in: one definition each.
They are str enums, so they compare equal to the text the store holds (``TrialStatus.COMPLETED == "completed"``)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # trained, and its winners exported and benchmarked
    INTERRUPTED = "interrupted"  # stopped (Ctrl-C, SIGTERM, a kill): `bench run --resume` finishes it
    FAILED = "failed"  # stopped by an error that every later trial would meet (no room on disk)


class TrialStatus(StrEnum):
    PENDING = "pending"  # planned, not started
    RUNNING = "running"
    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"  # --patience epochs without a better selection metric
    PRUNED = "pruned"  # stopped by a search: ASHA (Ray executor) or Optuna's pruner (--search tpe)
    DIVERGED = "diverged"  # training loss not finite, or above 10 x ln(classes)
    FAILED = "failed"  # the model raised (traceback in error.txt)
    INTERRUPTED = "interrupted"  # stopped by the user: trained again by a resume


# Trials that ended with a measured best checkpoint: they are ranked.
FINISHED = (TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED, TrialStatus.PRUNED)
# What a resumed run trains (again).
TO_RUN = (TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.INTERRUPTED)


class ExportStatus(StrEnum):
    OK = "ok"
    EXPORT_FAILED = "export_failed"  # no exporter produced a valid file
    PARITY_FAILED = "parity_failed"  # its logits differ from PyTorch's beyond the tolerance: not benchmarked


class VariantStatus(StrEnum):
    OK = "ok"
    FLAGGED = "flagged"  # lost more test accuracy than allowed; kept
    FAILED = "failed"  # could not be made or run


class MeasurementStatus(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"  # the provider cannot run here (the note says why)
    FAILED = "failed"  # a batch-size curve's point that failed (out of memory)
    SKIPPED = "skipped"  # a curve's points after it stopped


# Variants that run and are benchmarked.
RUNNABLE = (VariantStatus.OK, VariantStatus.FLAGGED)


class Precision(StrEnum):
    """What a model computes in: training (fp32, bf16 autocast) and deployment (the fp32 export and its variants)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"
