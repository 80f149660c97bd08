"""One trial: train a model on in-memory tensors, keep the best-validation checkpoint, measure it."""

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
from bench.train import checkpoints
from bench.train import weights as transfer
from bench.train.optim import Lookahead, make_optimizer, make_scheduler, steps_per_epoch
from bench.train.state import load_state, save_state, set_rng

__all__ = ["EpochStats", "HParams", "TrialResult", "best_epoch", "evaluate", "train_trial"]

EVAL_BATCH = 1024  # images evaluated at once, at most (and at most EVAL_BYTES of their pixels)
EVAL_BYTES = 16 << 20  # uint8: 64 MB as float32, with the activations of as many images
# A training loss this many times that of a uniform guess, ln(classes), means the run has blown up.
DIVERGENCE_FACTOR = 10.0


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
    noisy: bool | None = None  # its time is unreliable: others wanted more CPU than it left free (bench.noise)


@dataclass
class TrialResult:
    status: str  # completed, early_stopped or diverged (bench.status.TrialStatus)
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
    ends.

    ``hp`` says what the steps compute in: its 'auto' precision and layout are resolved when the run is planned
    (bench.speed.resolve_speed), never here. The caller seeds torch before building the model; shuffling uses its
    own generator seeded by ``hp.seed``, so the same seed, data and machine give the same losses.

    With ``state_every`` (seconds), the state is also written within an epoch, at the first step that far from the
    last write: a stop then loses at most that much of a long epoch, and the epoch continues from that step with the
    same figures (its shuffled order, the losses summed so far, every generator as it was).

    ``prune`` is asked after every epoch but the last (a search's pruner): a reason it returns stops the trial there,
    ``pruned`` with that reason as its note, its best checkpoint measured as any other's."""
    if hp.precision not in (Precision.FP32, Precision.BF16) or hp.channels_last is None:
        raise ValueError("train_trial needs a resolved precision and layout (bench.speed.resolve_speed)")
    x_train, y_train = splits.train, splits.train.labels  # pixels read a batch at a time (x_train.take)
    device = y_train.device
    optimizer = make_optimizer(model, hp, transfer.head_parameters(model, num_classes) if hp.head_lr != 1 else None)
    n = len(y_train)
    steps = steps_per_epoch(n, hp.batch_size)
    scheduler = make_scheduler(optimizer, hp, steps)
    shuffle = torch.Generator().manual_seed(hp.seed)
    seen = n - 1 if n % hp.batch_size == 1 and n > 1 else n  # images per epoch (see the loop)
    augmentations = parse(hp.augment)
    augment_rng = torch.Generator(device=device).manual_seed(hp.seed + 1)
    flips = alternating_flips(n, hp.seed + 2, device) if "altflip" in augmentations else None
    layout = torch.channels_last if hp.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    step_model = torch.compile(model) if hp.compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=hp.precision == Precision.BF16)
    limit = DIVERGENCE_FACTOR * math.log(max(num_classes, 2))
    result = TrialResult(status=TrialStatus.COMPLETED)
    best: EpochStats | None = None
    best_state: dict | None = None
    generators = {"shuffle": shuffle, "augment": augment_rng}
    state_path = Path(state_path) if state_path is not None else None
    resumed = load_state(state_path, hp, checkpoint_meta) if state_path is not None else None
    elapsed = 0.0
    if resumed is None:  # a fresh trial: modules fitted to the data (a whitening stem), unless --weights has them
        t0 = time.perf_counter()
        if not hp.weights and (fitted := layers.data_initialized(model)):
            with torch.no_grad():
                images = normalize(x_train.take(slice(0, layers.DATA_INIT_IMAGES)).to(device))
            for module in fitted:
                module.init_from_data(images)
        elapsed = time.perf_counter() - t0
    else:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        set_rng(resumed["rng"], generators, device)
        result.history = [EpochStats(**e) for e in resumed["history"]]
        best = next((e for e in result.history if e.epoch == resumed["best_epoch"]), None)
        best_state = resumed["best_state"]
        if best is not None:
            meta = {**(checkpoint_meta or {}), "epoch": best.epoch, "val_loss": best.val_loss, "val_acc": best.val_acc}
            result.checkpoint_sha256 = checkpoints.save(checkpoint_path, best_state, meta)  # as it was at that epoch
        elapsed = (result.history[-1].elapsed_s or 0.0) if result.history else 0.0
    partial = resumed.get("partial") if resumed is not None else None  # stopped within this epoch
    if partial is not None:
        elapsed = partial["elapsed"]
    first_epoch = len(result.history) + 1
    lookahead = Lookahead(model, hp.epochs * steps) if hp.lookahead else None  # of the fitted weights
    if lookahead is not None and resumed is not None:
        lookahead.load_state_dict(resumed["lookahead"])

    def save(within: dict | None = None) -> None:
        save_state(
            state_path,
            hp,
            checkpoint_meta,
            model,
            optimizer,
            scheduler,
            generators,
            device,
            result.history,
            {"epoch": best.epoch if best else None, "state": best_state},
            lookahead.state_dict() if lookahead is not None else None,
            within,
        )

    for epoch in range(first_epoch, hp.epochs + 1):
        watch = Watch(torch.get_num_threads()).start()
        t0 = time.perf_counter()
        model.train()
        transfer.keep_frozen(model)
        skip = 0
        if partial is not None:  # the epoch a stop interrupted, from the step after the last one saved
            lr, order, skip = partial["lr"], partial["order"].to(device), partial["step"]
            loss_sum, correct = partial["loss_sum"].to(device), partial["correct"].to(device)
            t0 -= partial["seconds"]
            partial = None
        else:
            lr = optimizer.param_groups[0]["lr"]
            order = torch.randperm(n, generator=shuffle).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
        saved_at = time.perf_counter()
        for i, start in enumerate(range(0, n, hp.batch_size)):
            if i < skip:
                continue
            if state_every and state_path is not None and time.perf_counter() - saved_at >= state_every and i > 0:
                within = {"epoch": epoch, "step": i, "lr": lr, "order": order.cpu(), "elapsed": elapsed}
                within.update(loss_sum=loss_sum.cpu(), correct=correct.cpu(), seconds=time.perf_counter() - t0)
                save(within)
                saved_at = time.perf_counter()
            idx = order[start : start + hp.batch_size]
            if len(idx) == 1 and start > 0:
                break  # batch norm cannot train on one image; the order changes every epoch, so none is lost for good
            flip = flips[idx] ^ (epoch % 2 == 0) if flips is not None else None
            x_train.prefetch(order[start + hp.batch_size : start + 2 * hp.batch_size])  # read while this one trains
            pixels = x_train.take(idx).to(device, non_blocking=True)
            x = normalize(augment(pixels, augmentations, augment_rng, flip)).contiguous(memory_format=layout)
            y = y_train[idx]
            with autocast:
                logits = step_model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=hp.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if lookahead is not None:
                lookahead.step((epoch - 1) * steps + i + 1)
            # Accumulate on the device: no host sync per step.
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
        train_loss, train_acc = loss_sum.item() / seen, correct.item() / seen
        elapsed += time.perf_counter() - t0
        window = watch.stop()
        val = evaluate(model, splits.val, normalize)
        stats = EpochStats(
            epoch,
            train_loss,
            train_acc,
            val.loss,
            val.acc,
            time.perf_counter() - t0,
            lr=lr,
            elapsed_s=elapsed,
            **window.as_dict(),
            noisy=window.noisy(),
        )
        result.history.append(stats)
        if not (math.isfinite(train_loss) and math.isfinite(val.loss)) or train_loss > limit:
            result.status = TrialStatus.DIVERGED
            result.note = (
                f"training loss {train_loss:.4g} at epoch {epoch} "
                f"({'not finite' if not math.isfinite(train_loss) else f'above {limit:.3g}'})"
                if not math.isfinite(train_loss) or train_loss > limit
                else f"validation loss not finite at epoch {epoch}"
            )
            if on_epoch:
                on_epoch(stats)
            break
        if _better(hp.select, stats, best):
            stats.best = True
            best = stats
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            meta = {**(checkpoint_meta or {}), "epoch": epoch, "val_loss": val.loss, "val_acc": val.acc}
            result.checkpoint_sha256 = checkpoints.save(checkpoint_path, best_state, meta)
        stopping = bool(hp.patience and epoch - best.epoch >= hp.patience and epoch < hp.epochs)
        if state_path is not None and epoch < hp.epochs and not stopping:
            save()
        if on_epoch:
            on_epoch(stats)
        if stopping:
            result.status = TrialStatus.EARLY_STOPPED
            result.note = f"no better {hp.select.replace('_', ' ')} for {hp.patience} epochs after epoch {best.epoch}"
            break
        if prune is not None and epoch < hp.epochs and (why := prune(stats)):
            result.status, result.note = TrialStatus.PRUNED, why
            break

    result.train_time_s = elapsed
    if state_path is not None:
        state_path.unlink(missing_ok=True)  # the trial has ended: best.pt is what stays
    if best is None:  # diverged before any usable epoch: nothing to measure
        return result
    # The kept weights are measured as anyone reloading the checkpoint would: fp32, standard layout.
    model.to(memory_format=torch.contiguous_format)
    model.load_state_dict(best_state)
    result.best_epoch = best.epoch
    train_eval = evaluate(model, splits.train, normalize)
    test_eval = evaluate(model, splits.test, normalize)
    result.train_loss, result.train_acc = train_eval.loss, train_eval.acc
    result.val_loss, result.val_acc = best.val_loss, best.val_acc
    result.test_loss, result.test_acc = test_eval.loss, test_eval.acc
    result.confusion = confusion_matrix(splits.test.labels, test_eval.predictions, num_classes)
    return result


# --- the training state of an unfinished trial ---------------------------------------------------------
