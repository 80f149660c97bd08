"""`HParams`: the hyperparameters of one trial, RunConfig's train-stage options with one value each. What every trial
records, what its training reads, and what a saved training state must match to be continued."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from bench.core.errors import UsageError
from bench.options.choices import TRAIN
from bench.options.config import defaults, option_names, option_of
from bench.options.option import invalid


def _trial(name: str):
    """The field of train option ``name`` in HParams: its default is what a trial gets when neither the option nor
    the architecture's plugin says (the option's ``trial_default``, else its default); its Option rides along."""
    option = option_of(name)
    default = option.trial_default if option.trial_default is not None else defaults()[name]
    return field(default=default, metadata={"option": option})


def _train_options(cls):
    """Refuse, as the class is defined, an HParams whose fields are not RunConfig's train options in their order: a
    train option missing here would be accepted by the CLI, then never reach a trial."""
    own, declared = list(cls.__annotations__), option_names(TRAIN)
    if own != declared:
        missing = [n for n in declared if n not in own]
        raise TypeError(
            "HParams must have RunConfig's train options in their order (bench/options/train.py): "
            + (f"it lacks {', '.join(missing)}" if missing else f"expected {', '.join(declared)}")
        )
    return cls


# What a trial recorded before the field existed did: trials before --bn-recalibrate never recalibrated (a resumed
# one goes on so, and its saved state still matches).
RECORDED_BEFORE = {"bn_recalibrate": "off"}


@_train_options
@dataclass(frozen=True)
class HParams:
    """The hyperparameters of one trial: each train option with one value (the axes at their cnnbench defaults).
    Checked as they are built, with the options' own checks. Each field is documented by its option
    (docs/run-options.md)."""

    optimizer: str = _trial("optimizer")
    lr: float = _trial("lr")
    batch_size: int = _trial("batch_size")
    epochs: int = _trial("epochs")
    momentum: float = _trial("momentum")
    weight_decay: float = _trial("weight_decay")
    val_ratio: float = _trial("val_ratio")
    seed: int = _trial("seed")
    schedule: str = _trial("schedule")
    warmup_epochs: float | None = _trial("warmup_epochs")
    label_smoothing: float = _trial("label_smoothing")
    nesterov: bool = _trial("nesterov")
    freeze: str = _trial("freeze")
    head_lr: float = _trial("head_lr")
    augment: str = _trial("augment")
    precision: str = _trial("precision")  # auto until the plan resolves it (bench.train.precision)
    channels_last: bool | None = _trial("channels_last")  # None until the plan resolves it
    compile: bool = _trial("compile")
    lookahead: bool = _trial("lookahead")
    bn_recalibrate: str = _trial("bn_recalibrate")  # auto until the plan resolves it (bench.train.batchnorm)
    select: str = _trial("select")
    patience: int | None = _trial("patience")
    weights: str | None = _trial("weights")  # PATH#sha256=HEX once the plan resolved it (bench.train.weights)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None or f.default is not None:
                object.__setattr__(self, f.name, f.metadata["option"].value(f.name, value))
        if self.warmup_epochs is not None and self.warmup_epochs >= self.epochs:
            raise invalid("warmup_epochs", self.warmup_epochs, "a number >= 0 and below --epochs")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise UsageError("Invalid value for '--nesterov': Nesterov momentum needs --momentum above 0")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HParams:
        """The hyperparameters a stored trial recorded; one recorded before a field existed has its default, or what
        such trials did (RECORDED_BEFORE)."""
        names = {f.name for f in fields(cls)}
        return cls(**{**RECORDED_BEFORE, **{k: v for k, v in d.items() if k in names}})
