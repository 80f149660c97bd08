"""A trial's training state as one object (`TrialState`): its history, the epoch it keeps and that epoch's weights, its
training seconds, and where within an epoch it stopped. Written with the model, optimizer, schedule, lookahead and
every random generator after every epoch and within long ones, so that a stopped trial continues from there with the
same figures as one never stopped."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench.core.errors import UsageError
from bench.core.files import atomic_write
from bench.options.hparams import HParams

STATE_FORMAT = 1


@dataclass
class EpochStats:
    epoch: int  # 1-based
    train_loss: float  # mean cross-entropy over the epoch's batches, weighted by batch size
    train_acc: float  # accuracy of the training batches as they were seen (dropout on)
    val_loss: float
    val_acc: float
    time_s: float  # wall time of the epoch, validation included
    best: bool = False  # this epoch improved the selection metric (its weights are now the checkpoint)
    lr: float | None = None  # learning rate of the epoch's first step
    elapsed_s: float | None = None  # training seconds of this epoch and all before it (steps only, no validation)
    load_before: float | None = None  # 1-minute load average as the epoch's training steps started
    load_after: float | None = None
    others_cpu: float | None = None  # cores other processes used during its training steps, on average
    noisy: bool | None = None  # its time is unreliable: others wanted more CPU than it left free (bench.core.noise)


@dataclass
class WithinEpoch:
    """An epoch under way: the step to take next, its shuffled order, the learning rate of its first step, the sums of
    its losses and correct predictions so far (on the device: no host sync per step), and its seconds so far."""

    epoch: int
    order: torch.Tensor
    lr: float
    loss_sum: torch.Tensor
    correct: torch.Tensor
    step: int = 0
    seconds: float = 0.0


@dataclass
class TrialState:
    """Everything a trial's training carries from epoch to epoch (and, ``within``, from step to step)."""

    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    elapsed: float = 0.0  # training seconds of the finished epochs (and of fitting modules to the data)
    within: WithinEpoch | None = None  # an epoch stopped part-way, continued from its step

    @property
    def best(self) -> EpochStats | None:
        return next((e for e in self.history if e.epoch == self.best_epoch), None)

    def keep(self, stats: EpochStats, model: torch.nn.Module) -> None:
        """``stats``' epoch is the best so far: its weights are the ones the trial keeps."""
        stats.best = True
        self.best_epoch = stats.epoch
        self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rng_state(generators: dict[str, torch.Generator], device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in generators.items()}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng(state: dict, generators: dict[str, torch.Generator], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    for k, g in generators.items():
        g.set_state(state[k])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_state(path: Path, hp: HParams, meta: dict | None, steps, state: TrialState) -> None:
    """Write ``state`` and the training ``steps``' parts (bench.train.loop.Steps: model, optimizer, scheduler,
    generators, lookahead) to ``path`` atomically."""
    within = state.within
    partial = None
    if within is not None:
        partial = {**asdict(within), "order": within.order.cpu(), "elapsed": state.elapsed}
        partial.update(loss_sum=within.loss_sum.cpu(), correct=within.correct.cpu())
    saved = {
        "format": STATE_FORMAT,
        "hparams": hp.as_dict(),
        "meta": dict(meta or {}),
        "model": steps.model.state_dict(),
        "optimizer": steps.optimizer.state_dict(),
        "scheduler": steps.scheduler.state_dict(),
        "rng": _rng_state(steps.generators, steps.device),
        "history": [asdict(e) for e in state.history],
        "best_epoch": state.best_epoch,
        "best_state": state.best_weights,
        "lookahead": steps.lookahead.state_dict() if steps.lookahead is not None else None,
        "partial": partial,
    }
    buf = io.BytesIO()
    torch.save(saved, buf)
    atomic_write(path, buf.getvalue())


def load_state(path: Path, hp: HParams, meta: dict | None, steps) -> TrialState | None:
    """The state saved at ``path``, its parts restored into ``steps``, if it continues this very trial (same
    hyperparameters and identity); None when there is none, or it is unreadable or another trial's (the trial then
    starts afresh)."""
    saved = _read(path, hp, meta)
    if saved is None:
        return None
    steps.model.load_state_dict(saved["model"])
    steps.optimizer.load_state_dict(saved["optimizer"])
    steps.scheduler.load_state_dict(saved["scheduler"])
    _set_rng(saved["rng"], steps.generators, steps.device)
    steps.start_lookahead(saved["lookahead"])
    history = [EpochStats(**e) for e in saved["history"]]
    state = TrialState(history, saved["best_epoch"], saved["best_state"])
    state.elapsed = (history[-1].elapsed_s or 0.0) if history else 0.0
    partial = saved.get("partial")
    if partial is not None:
        state.elapsed = partial.pop("elapsed")
        partial.update({k: partial[k].to(steps.device) for k in ("order", "loss_sum", "correct")})
        state.within = WithinEpoch(**partial)
    return state


def _read(path: Path, hp: HParams, meta: dict | None) -> dict | None:
    if not path.is_file():
        return None
    try:
        saved = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception:  # a damaged state only costs the epochs it held
        return None
    if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
        return None
    try:  # a state saved before a hyperparameter existed has that one at its default
        same = HParams.from_dict(saved.get("hparams") or {}) == hp and saved.get("meta") == dict(meta or {})
    except (TypeError, UsageError):
        return None
    if not same or (hp.lookahead and not isinstance(saved.get("lookahead"), dict)):
        return None
    return saved
