"""How each trial trains (recorded with every trial, in its HParams; a resume keeps them): the axes of the grid, in
their nesting order, then the options every trial of a run shares."""

from __future__ import annotations

from dataclasses import dataclass

from bench.options.choices import (
    AUGMENTATIONS,
    BN_RECALIBRATION,
    MAX_SEED,
    OPTIMIZERS,
    SCHEDULES,
    SELECT_METRICS,
    TRAIN,
    TRAINING_PRECISIONS,
)
from bench.options.option import COUNT, POSITIVE, declare


@dataclass
class TrainOptions:
    """How each trial trains: RunConfig (bench.options.config) is made of these fields and the other stages'."""

    optimizer: list[str] | None = declare(
        TRAIN,
        "sgd (momentum), adam, adamw.",
        axis=True,
        choices=OPTIMIZERS,
        trial_default="sgd",
        plugin_default=True,
    )
    lr: list[float] | None = declare(
        TRAIN,
        "Learning rates, e.g. 1e-3,1e-2.",
        kind=float,
        axis=True,
        trial_default=0.01,
        **POSITIVE,
        plugin_default=True,
    )
    batch_size: list[int] | None = declare(
        TRAIN,
        "Batch sizes, e.g. 32,64.",
        axis=True,
        short="-b",
        trial_default=64,
        **COUNT,
        plugin_default=True,
    )
    epochs: list[int] | None = declare(
        TRAIN,
        "Epochs per trial.",
        axis=True,
        short="-e",
        trial_default=20,
        **COUNT,
        plugin_default=True,
    )
    momentum: list[float] | None = declare(
        TRAIN,
        "SGD momentum.",
        kind=float,
        axis=True,
        low=0,
        high=1,
        high_open=True,
        trial_default=0.9,
        plugin_default=True,
    )
    weight_decay: list[float] | None = declare(
        TRAIN,
        "Weight decay, as the optimizer defines it.",
        kind=float,
        axis=True,
        low=0,
        trial_default=0.0,
        plugin_default=True,
    )
    val_ratio: list[float] | None = declare(
        TRAIN,
        "Share of the training images held out for validation.",
        kind=float,
        axis=True,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        trial_default=0.2,
    )
    seed: list[int] | None = declare(
        TRAIN,
        "Seeds, 0 to 2^32-1: init, shuffling, split.",
        kind=int,
        axis=True,
        low=0,
        high=MAX_SEED,
        trial_default=0,
    )
    schedule: list[str] | None = declare(
        TRAIN,
        "Learning rate over the steps: constant, cosine annealing to 0, onecycle (torch's "
        "OneCycleLR), step (x0.1 at 50% and 75%).",
        axis=True,
        choices=SCHEDULES,
        trial_default="constant",
        plugin_default=True,
    )
    warmup_epochs: list[float] | None = declare(
        TRAIN,
        "Linear warm-up to --lr over this many epochs (default none; onecycle: 30% of the steps).",
        kind=float,
        axis=True,
        low=0,
        plugin_default=True,
    )
    label_smoothing: list[float] | None = declare(
        TRAIN,
        "Label smoothing of the training loss.",
        kind=float,
        axis=True,
        low=0,
        high=1,
        high_open=True,
        trial_default=0.0,
        plugin_default=True,
    )
    nesterov: bool | None = declare(
        TRAIN,
        "Nesterov momentum for SGD.",
        kind=bool,
        axis=True,
        trial_default=False,
        plugin_default=True,
    )
    freeze: list[str] | None = declare(
        TRAIN,
        "Layers that do not train: none, backbone (all but the logits layer) or N (the first N layers with weights).",
        axis=True,
        pattern=r"none|backbone|[0-9]+",
        pattern_text="none, backbone or a number of layers",
        trial_default="none",
        docs="Frozen batch-norm layers keep their statistics; with --weights, this is fine-tuning "
        "([runs.md](runs.md#starting-from-weights)).",
    )
    head_lr: list[float] | None = declare(
        TRAIN,
        "The logits layer's learning rate as a multiple of --lr, e.g. 10 to fine-tune a new head faster.",
        kind=float,
        axis=True,
        trial_default=1.0,
        **POSITIVE,
    )
    augment: str = declare(
        TRAIN,
        "Augmentations on the training device: flip,altflip,crop,translate,grayscale (altflip: "
        "each image mirrored in every other epoch).",
        "",
        choices=AUGMENTATIONS,
        subset=True,
    )
    precision: str = declare(
        TRAIN,
        "bf16: autocast the training steps (evaluation stays fp32). auto: bf16 where it was "
        "measured faster (a probe, once per machine; models of 5 MFLOPs or more per image), else "
        "fp32.",
        "auto",
        choices=TRAINING_PRECISIONS,
        plugin_default=True,
    )
    channels_last: bool | None = declare(
        TRAIN,
        "NHWC memory layout for training (default: on when the model accepts it; it was never slower).",
        kind=bool,
    )
    compile: bool = declare(TRAIN, "torch.compile the model for training (slow start, faster steps).", False, kind=bool)
    lookahead: bool | None = declare(
        TRAIN,
        "airbench's lookahead: every 5 steps the weights move to their running average, "
        "whose decay rises over the trial to 0.77; the last step leaves them at the average.",
        kind=bool,
        trial_default=False,
        plugin_default=True,
    )
    bn_recalibrate: str = declare(
        TRAIN,
        "Recompute batch-norm statistics over training images before each epoch is validated: on, off, or auto "
        "(when a layer's running average spans more batches than an epoch has, as MobileNetV3's on small data).",
        "auto",
        choices=BN_RECALIBRATION,
        docs="Resolved to on or off when the run is planned and recorded so; frozen layers keep their statistics "
        "([runs.md](runs.md#small-data)).",
    )
    select: str = declare(
        TRAIN,
        "The best checkpoint: lowest validation loss or highest validation accuracy.",
        "val_loss",
        choices=SELECT_METRICS,
    )
    patience: int | None = declare(
        TRAIN, "Stop a trial after this many epochs without a better selection metric (early_stopped).", **COUNT
    )
    weights: str | None = declare(
        TRAIN,
        "Start every trial from these weights: a checkpoint or state-dict file (.pt), or a stored trial RUN/tNNN. "
        "What matches by name and shape is loaded; a logits layer for another class count is re-initialized.",
        metavar="PATH|RUN/tNNN",
        docs="Recorded with each trial as `PATH#sha256=HEX` (checked whenever a trial loads it) and named in the "
        "ONNX metadata (`initial_weights`); a note says what was loaded, skipped and re-initialized.",
    )
