"""One trial's training: epochs of steps over the training split, each followed by validation; the epoch with the best
selection metric kept as the checkpoint; the state saved after every epoch (and within long ones) so that a stopped
trial continues where it was; the kept weights measured on every split at the end."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.noise import Watch
from bench.core.status import Precision, TrialStatus
from bench.data.augment import alternating_flips, augment, parse
from bench.data.splits import Normalizer, Split, Splits
from bench.models import layers
from bench.options.hparams import HParams
from bench.train import batchnorm, checkpoints
from bench.train import weights as transfer
from bench.train.optim import Lookahead, make_optimizer, make_scheduler, steps_per_epoch
from bench.train.state import EpochStats, TrialState, WithinEpoch, load_state, save_state

__all__ = ["EpochStats", "TrialResult", "best_epoch", "evaluate", "train_trial"]

EVAL_BATCH = 1024  # images evaluated at once, at most (and at most EVAL_BYTES of their pixels)
EVAL_BYTES = 16 << 20  # uint8: 64 MB as float32, with the activations of as many images
# A training loss this many times that of a uniform guess, ln(classes), means the run has blown up.
DIVERGENCE_FACTOR = 10.0


@dataclass
class TrialResult:
    status: str  # completed, early_stopped or diverged (bench.core.status.TrialStatus)
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int | None = None
    train_loss: float | None = None  # of the best checkpoint, in eval mode
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    confusion: list[list[int]] | None = None  # test set: rows = true class, columns = predicted
    checkpoint_sha256: str | None = None
    train_time_s: float = 0.0
    note: str | None = None


@dataclass
class Evaluation:
    loss: float
    acc: float
    predictions: torch.Tensor


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, normalize: Normalizer) -> Evaluation:
    """Mean loss and accuracy of ``model`` (in eval mode) over every image of ``split``."""
    model.eval()
    loss_sum = 0.0
    # filled in place: small tensors kept from batch to batch would pin the allocator's heap above each batch's
    # freed pixels, which then grows by about the size of the data evaluated (glibc; measured: 1 GB over 30k images)
    predictions = torch.empty(len(split), dtype=torch.long, device=split.labels.device)
    step = max(1, min(EVAL_BATCH, EVAL_BYTES // max(1, split.image_bytes)))
    for start in range(0, len(split), step):
        y = split.labels[start : start + step]
        split.prefetch(torch.arange(start, min(start + 2 * step, len(split))))  # this batch and the next
        x = normalize(split.take(slice(start, start + step)).to(y.device, non_blocking=True))
        logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        predictions[start : start + len(y)] = logits.argmax(1)
    correct = int((predictions == split.labels).sum())
    n = max(len(split), 1)
    return Evaluation(loss_sum / n, correct / n, predictions.cpu())


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> list[list[int]]:
    counts = torch.bincount(labels.cpu() * num_classes + predictions.cpu(), minlength=num_classes**2)
    return counts.view(num_classes, num_classes).tolist()


def _better(select: str, stats: EpochStats, best: EpochStats | None) -> bool:
    if best is None:
        return True
    if select == "val_acc":  # ties go to the lower validation loss
        return (stats.val_acc, -stats.val_loss) > (best.val_acc, -best.val_loss)
    return stats.val_loss < best.val_loss


def best_epoch(history: list[EpochStats], select: str) -> EpochStats | None:
    """The epoch whose checkpoint a trial keeps: lowest validation loss, or highest validation accuracy."""
    best = None
    for stats in history:
        if _better(select, stats, best):
            best = stats
    return best


class Steps:
    """The parts of one trial's training steps: the model (compiled if asked), its optimizer and schedule, the random
    generators of shuffling and augmentation, lookahead, and the batches they make. Saved and restored with the
    trial's state (bench.train.state)."""

    def __init__(self, model: nn.Module, splits: Splits, normalize: Normalizer, hp: HParams, num_classes: int):
        self.model, self.hp, self.normalize, self.train = model, hp, normalize, splits.train
        self.device = splits.train.labels.device
        self.n = len(self.train)
        self.per_epoch = steps_per_epoch(self.n, hp.batch_size)
        self.seen = self.n - 1 if self.n % hp.batch_size == 1 and self.n > 1 else self.n  # images per epoch (step())
        head = transfer.head_parameters(model, num_classes) if hp.head_lr != 1 else None
        self.optimizer = make_optimizer(model, hp, head)
        self.scheduler = make_scheduler(self.optimizer, hp, self.per_epoch)
        self.generators = {
            "shuffle": torch.Generator().manual_seed(hp.seed),
            "augment": torch.Generator(device=self.device).manual_seed(hp.seed + 1),
        }
        self.augmentations = parse(hp.augment)
        self.flips = alternating_flips(self.n, hp.seed + 2, self.device) if "altflip" in self.augmentations else None
        self.layout = torch.channels_last if hp.channels_last else torch.contiguous_format
        model.to(memory_format=self.layout)
        self.forward = torch.compile(model) if hp.compile else model
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=hp.precision == Precision.BF16)
        self.lookahead: Lookahead | None = None
        self.recalibrate = batchnorm.wanted(hp.bn_recalibrate, model, self.per_epoch)  # auto: for direct callers

    def fit_to_data(self) -> float:
        """Fit the modules that ask for it (a whitening stem) to the first training images, unless --weights has them
        already; the seconds it took, counted as training time."""
        t0 = time.perf_counter()
        if not self.hp.weights and (fitted := layers.data_initialized(self.model)):
            with torch.no_grad():
                images = self.normalize(self.train.take(slice(0, layers.DATA_INIT_IMAGES)).to(self.device))
            for module in fitted:
                module.init_from_data(images)
        return time.perf_counter() - t0

    def start_lookahead(self, saved: dict | None = None) -> None:
        """Lookahead of the weights as they are now (fitted to the data), or as ``saved`` (a resumed trial)."""
        if self.hp.lookahead:
            self.lookahead = Lookahead(self.model, self.hp.epochs * self.per_epoch)
            if saved is not None:
                self.lookahead.load_state_dict(saved)

    def new_epoch(self, epoch: int) -> WithinEpoch:
        order = torch.randperm(self.n, generator=self.generators["shuffle"]).to(self.device)
        zero = torch.zeros((), device=self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        return WithinEpoch(epoch, order, lr, zero, torch.zeros((), dtype=torch.long, device=self.device))

    def step(self, within: WithinEpoch) -> bool:
        """Train on the batch of ``within``'s next step; False when none is left to take."""
        size, start = self.hp.batch_size, within.step * self.hp.batch_size
        idx = within.order[start : start + size]
        if not len(idx) or (len(idx) == 1 and start > 0):
            return (
                False  # batch norm cannot train on one image; the order changes every epoch, so none is lost for good
            )
        flip = self.flips[idx] ^ (within.epoch % 2 == 0) if self.flips is not None else None
        self.train.prefetch(within.order[start + size : start + 2 * size])  # read while this one trains
        pixels = self.train.take(idx).to(self.device, non_blocking=True)
        x = self.normalize(augment(pixels, self.augmentations, self.generators["augment"], flip))
        y = self.train.labels[idx]
        with self.autocast:
            logits = self.forward(x.contiguous(memory_format=self.layout))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.hp.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        within.step += 1
        if self.lookahead is not None:
            self.lookahead.step((within.epoch - 1) * self.per_epoch + within.step)
        within.loss_sum += loss.detach() * len(idx)  # summed on the device: no host sync per step
        within.correct += (logits.detach().argmax(1) == y).sum()
        return True


class Saver:
    """Where a trial's state goes (None: nowhere), and when a long epoch saves it part-way (``every`` seconds)."""

    def __init__(self, path: str | Path | None, hp: HParams, meta: dict | None, steps: Steps, every: float | None):
        self.path = Path(path) if path is not None else None
        self.hp, self.meta, self.steps, self.every = hp, meta, steps, every
        self.last = time.perf_counter()

    def load(self) -> TrialState | None:
        return load_state(self.path, self.hp, self.meta, self.steps) if self.path is not None else None

    def save(self, state: TrialState) -> None:
        if self.path is not None:
            save_state(self.path, self.hp, self.meta, self.steps, state)
        self.last = time.perf_counter()

    def due(self) -> bool:
        return bool(self.every and self.path is not None and time.perf_counter() - self.last >= self.every)

    def done(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)  # the trial has ended: best.pt is what stays


def train_trial(
    model: nn.Module,
    splits: Splits,
    normalize: Normalizer,
    hp: HParams,
    checkpoint_path: str | Path,
    num_classes: int,
    on_epoch: Callable[[EpochStats], None] | None = None,
    checkpoint_meta: dict | None = None,
    state_path: str | Path | None = None,
    prune: Callable[[EpochStats], str | None] | None = None,
    state_every: float | None = None,
) -> TrialResult:
    """Train ``model`` (already on the data's device) for ``hp.epochs`` epochs. After every epoch that
    improves the selection metric, the weights are written to ``checkpoint_path``; at the end the best
    weights are restored and measured on the train, validation and test splits.

    With ``state_path``, the whole training state (weights, optimizer, schedule, every random generator,
    history, best so far) is written there atomically after every epoch, and a state file already there for
    the same hyperparameters is continued from its last finished epoch: an interrupted trial loses at most
    the epoch it was in, and records the same losses as one never interrupted. The file goes when the trial
    ends. With ``state_every`` (seconds), the state is also written within an epoch, at the first step that far
    from the last write: a stop then loses at most that much of a long epoch, and the epoch continues from that
    step with the same figures (its shuffled order, the losses summed so far, every generator as it was).

    ``hp`` says what the steps compute in: its 'auto' precision and layout are resolved when the run is planned
    (bench.train.precision.resolve_speed), never here. The caller seeds torch before building the model; shuffling
    uses its own generator seeded by ``hp.seed``, so the same seed, data and machine give the same losses.

    ``prune`` is asked after every epoch but the last (a search's pruner): a reason it returns stops the trial there,
    ``pruned`` with that reason as its note, its best checkpoint measured as any other's."""
    if hp.precision not in (Precision.FP32, Precision.BF16) or hp.channels_last is None:
        raise ValueError("train_trial needs a resolved precision and layout (bench.train.precision.resolve_speed)")
    steps = Steps(model, splits, normalize, hp, num_classes)
    saver = Saver(state_path, hp, checkpoint_meta, steps, state_every)
    state = saver.load()
    if state is None:  # a fresh trial
        state = TrialState(elapsed=steps.fit_to_data())
        steps.start_lookahead()
    result = TrialResult(TrialStatus.COMPLETED, history=state.history)
    if state.best is not None:  # resumed: the checkpoint as it was at the epoch the state keeps
        meta = _meta(checkpoint_meta, state.best)
        result.checkpoint_sha256 = checkpoints.save(checkpoint_path, state.best_weights, meta)
    limit = DIVERGENCE_FACTOR * math.log(max(num_classes, 2))
    for epoch in range(len(state.history) + 1, hp.epochs + 1):
        stats = _epoch(steps, state, epoch, saver, splits.val)
        state.history.append(stats)
        if why := _diverged(stats, limit):
            result.status, result.note = TrialStatus.DIVERGED, why
            if on_epoch:
                on_epoch(stats)
            break
        if _better(hp.select, stats, state.best):
            state.keep(stats, model)
            meta = _meta(checkpoint_meta, stats)
            result.checkpoint_sha256 = checkpoints.save(checkpoint_path, state.best_weights, meta)
        stopping = bool(hp.patience and epoch - state.best_epoch >= hp.patience and epoch < hp.epochs)
        if epoch < hp.epochs and not stopping:
            saver.save(state)
        if on_epoch:
            on_epoch(stats)
        if stopping:
            result.status = TrialStatus.EARLY_STOPPED
            what = hp.select.replace("_", " ")
            result.note = f"no better {what} for {hp.patience} epochs after epoch {state.best_epoch}"
            break
        if prune is not None and epoch < hp.epochs and (why := prune(stats)):
            result.status, result.note = TrialStatus.PRUNED, why
            break
    saver.done()
    return _measured(result, model, state, splits, normalize, num_classes)


def _epoch(steps: Steps, state: TrialState, epoch: int, saver: Saver, val: Split) -> EpochStats:
    """One epoch: its training steps (continuing one a stop interrupted, from its next step), then validation."""
    watch = Watch(torch.get_num_threads()).start()
    within, state.within = state.within or steps.new_epoch(epoch), None
    t0 = time.perf_counter() - within.seconds
    steps.model.train()
    transfer.keep_frozen(steps.model)
    saver.last = time.perf_counter()
    while True:
        if within.step > 0 and saver.due():  # a long epoch: its state so far, in case it is stopped
            within.seconds, state.within = time.perf_counter() - t0, within
            saver.save(state)
            state.within = None
        if not steps.step(within):
            break
    if steps.recalibrate:  # statistics of the weights the epoch ends with, counted as training time
        batchnorm.recalibrate(steps.model, steps.train, steps.normalize, steps.hp.batch_size, steps.hp.seed + epoch)
    train_loss, train_acc = within.loss_sum.item() / steps.seen, within.correct.item() / steps.seen
    state.elapsed += time.perf_counter() - t0
    window = watch.stop()
    measured = evaluate(steps.model, val, steps.normalize)
    return EpochStats(
        epoch,
        train_loss,
        train_acc,
        measured.loss,
        measured.acc,
        time.perf_counter() - t0,
        lr=within.lr,
        elapsed_s=state.elapsed,
        **window.as_dict(),
        noisy=window.noisy(),
    )


def _diverged(stats: EpochStats, limit: float) -> str | None:
    """Why an epoch's losses mean the trial has blown up, or None."""
    loss = stats.train_loss
    if not math.isfinite(loss):
        return f"training loss {loss:.4g} at epoch {stats.epoch} (not finite)"
    if loss > limit:
        return f"training loss {loss:.4g} at epoch {stats.epoch} (above {limit:.3g})"
    if not math.isfinite(stats.val_loss):
        return f"validation loss not finite at epoch {stats.epoch}"
    return None


def _meta(checkpoint_meta: dict | None, stats: EpochStats) -> dict:
    return {**(checkpoint_meta or {}), "epoch": stats.epoch, "val_loss": stats.val_loss, "val_acc": stats.val_acc}


def _measured(result: TrialResult, model: nn.Module, state: TrialState, splits: Splits, normalize, num_classes: int):
    """``result`` with the kept weights measured as anyone reloading the checkpoint would: fp32, standard layout, on
    every split. Nothing to measure when the trial diverged before any usable epoch."""
    result.train_time_s = state.elapsed
    best = state.best
    if best is None:
        return result
    model.to(memory_format=torch.contiguous_format)
    model.load_state_dict(state.best_weights)
    result.best_epoch = best.epoch
    train_eval = evaluate(model, splits.train, normalize)
    test_eval = evaluate(model, splits.test, normalize)
    result.train_loss, result.train_acc = train_eval.loss, train_eval.acc
    result.val_loss, result.val_acc = best.val_loss, best.val_acc
    result.test_loss, result.test_acc = test_eval.loss, test_eval.acc
    result.confusion = confusion_matrix(splits.test.labels, test_eval.predictions, num_classes)
    return result
