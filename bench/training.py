"""One trial: train a model on in-memory tensors, keep the best-validation checkpoint, measure it."""

from __future__ import annotations

import contextlib
import io
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench import checkpoints, layers
from bench.augment import alternating_flips, augment, parse
from bench.data import Normalizer, Split, Splits
from bench.datasets import cache_dir
from bench.environment import cpu_features, cpu_model
from bench.errors import UsageError
from bench.files import atomic_write
from bench.modelstats import count_flops

OPTIMIZERS = ("sgd", "adam", "adamw")
# Learning-rate schedules, all torch's own (make_scheduler), stepped after every optimizer step.
SCHEDULES = ("constant", "cosine", "onecycle", "step")
PRECISIONS = ("auto", "fp32", "bf16")
# From this many forward FLOPs per image, bf16 autocast trains faster than fp32 where bf16 is fast; below it
# the casts cost more than they save (benchmarks/precision.py, RESULTS.md).
BF16_MIN_FLOPS = 5e6
SELECT = ("val_loss", "val_acc")
EVAL_BATCH = 1024
# A training loss this many times that of a uniform guess, ln(classes), means the run has blown up.
DIVERGENCE_FACTOR = 10.0


@dataclass(frozen=True)
class HParams:
    """The hyperparameters of one trial."""

    batch_size: int = 64  # images per optimizer step
    lr: float = 0.01  # learning rate
    epochs: int = 20  # epochs to train (the best one is kept)
    optimizer: str = "sgd"  # sgd (with momentum), adam or adamw
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # L2 penalty, as the optimizer defines it
    seed: int = 0  # model initialization, shuffling, dropout and the train/validation split
    val_ratio: float = 0.2  # share of the training images held out for validation
    select: str = "val_loss"  # best checkpoint: lowest val_loss or highest val_acc
    patience: int | None = None  # stop after this many epochs without a better selection metric
    augment: str = ""  # comma-separated, on the training device: flip, crop (4 px padding), grayscale (p=0.1)
    precision: str = "auto"  # fp32, bf16 autocast of the training steps, or auto (see resolve_speed)
    channels_last: bool | None = None  # NHWC memory layout for the training steps; None = auto (see resolve_speed)
    compile: bool = False  # torch.compile the model for the training steps
    schedule: str = "constant"  # learning rate over the steps: constant, cosine, onecycle or step (see make_scheduler)
    warmup_epochs: float | None = None  # linear warm-up from lr/steps to lr; None: none (onecycle: torch's 30%)
    label_smoothing: float = 0.0  # of the training loss only; validation and test losses are plain cross-entropy
    nesterov: bool = False  # Nesterov momentum (sgd only)
    lookahead: bool = False  # airbench's lookahead: the weights pulled towards their running average (Lookahead)

    def __post_init__(self):
        checks = [
            (
                "batch-size",
                self.batch_size,
                isinstance(self.batch_size, int) and self.batch_size >= 1,
                "an integer >= 1",
            ),
            ("lr", self.lr, _finite(self.lr) and self.lr > 0, "a number > 0"),
            ("epochs", self.epochs, isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
            ("optimizer", self.optimizer, self.optimizer in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
            ("momentum", self.momentum, _finite(self.momentum) and 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight-decay", self.weight_decay, _finite(self.weight_decay) and self.weight_decay >= 0, "a number >= 0"),
            ("seed", self.seed, isinstance(self.seed, int) and 0 <= self.seed < 2**32, "an integer from 0 to 2^32-1"),
            ("val-ratio", self.val_ratio, _finite(self.val_ratio) and 0 < self.val_ratio < 1, "between 0 and 1"),
            ("select", self.select, self.select in SELECT, f"one of {', '.join(SELECT)}"),
            ("precision", self.precision, self.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
            (
                "patience",
                self.patience,
                self.patience is None or (isinstance(self.patience, int) and self.patience >= 1),
                "an integer >= 1",
            ),
            ("schedule", self.schedule, self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
            (
                "warmup-epochs",
                self.warmup_epochs,
                self.warmup_epochs is None
                or (_finite(self.warmup_epochs) and 0 <= self.warmup_epochs < _int_or(self.epochs)),
                "a number >= 0 and below --epochs",
            ),
            (
                "label-smoothing",
                self.label_smoothing,
                _finite(self.label_smoothing) and 0 <= self.label_smoothing < 1,
                "in [0, 1)",
            ),
            ("nesterov", self.nesterov, isinstance(self.nesterov, bool), "true or false"),
            ("lookahead", self.lookahead, isinstance(self.lookahead, bool), "true or false"),
        ]
        for option, value, ok, what in checks:
            if not ok:
                raise UsageError(f"invalid value for --{option}: {value!r} (must be {what})")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise UsageError("invalid value for --nesterov: Nesterov momentum needs --momentum above 0")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HParams:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


BF16_PROBE_SPEEDUP = 1.1  # bf16 autocast must train the probe at least this much faster than fp32
_probed: dict[str, float] = {}


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast trains faster than fp32 on ``device``: measured, not read from the CPU's flags. Among
    CPUs with bf16 instructions (AVX-512 bf16 or AMX) it varies: AMX trained 1.7-2.3x faster
    (benchmarks/precision.py); AVX-512 bf16 without AMX trained the VGG-like net 1.4-1.6x slower than fp32 on a
    Xeon and 2.1x faster on an AMD EPYC (README, "CIFAR-10"). So a CPU with either runs ``bf16_speedup`` once,
    cached per machine; GPUs are not measured yet and keep fp32."""
    if device.type != "cpu" or not {"amx_bf16", "avx512_bf16"} & set(cpu_features()):
        return False
    return bf16_speedup() >= BF16_PROBE_SPEEDUP


def bf16_speedup() -> float:
    """fp32 time over bf16-autocast time of training steps of a small conv net shaped like the lab's first
    blocks (3x3 convolutions of 64, 64 and 128 maps on 32x32 and 16x16 images with batch norm, batch 64,
    channels_last, SGD), 5 steps of each after two of warm-up, alternating, medians; a second or two. Cached in
    this process and in ``probe.json`` of the cache folder (BENCH_CACHE), keyed by CPU, flags, torch version
    and thread count."""
    key = f"{cpu_model()}|{','.join(cpu_features())}|torch {torch.__version__}|{torch.get_num_threads()} threads"
    if key in _probed:
        return _probed[key]
    path = cache_dir() / "probe.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    cached = cached if isinstance(cached, dict) else {}
    if not isinstance(cached.get(key), int | float):
        cached[key] = _measure_bf16_speedup()
        with contextlib.suppress(OSError):  # a read-only cache folder: measured again by the next process
            atomic_write(path, json.dumps(cached, indent=1).encode())
    _probed[key] = float(cached[key])
    return _probed[key]


def _measure_bf16_speedup(steps: int = 5) -> float:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,), generator=generator)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))  # fmt: skip
    net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    times: dict[bool, list[float]] = {False: [], True: []}
    for step in range(steps + 2):
        for bf16 in (False, True):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= 2:  # the first two of each: warm-up (kernels chosen and built)
                times[bf16].append(time.perf_counter() - t0)
    return round(statistics.median(times[False]) / statistics.median(times[True]), 3)


def channels_last_works(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> bool:
    """Whether ``model`` runs on NHWC inputs (a ``.view`` after a convolution, for one, does not)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.to(memory_format=torch.channels_last)
            x = torch.zeros(2, *input_shape, device=device).contiguous(memory_format=torch.channels_last)
            model(x)
        return True
    except RuntimeError:
        return False
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)


def resolve_speed(hp: HParams, model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> HParams:
    """``hp`` with 'auto' precision and layout replaced by what trains fastest here at the same accuracy
    (benchmarks/precision.py): channels_last whenever the model accepts it; bf16 autocast where
    ``bf16_is_fast`` and the model does at least BF16_MIN_FLOPS forward FLOPs per image."""
    changes: dict = {}
    if hp.channels_last is None:
        changes["channels_last"] = channels_last_works(model, input_shape, device)
    if hp.precision == "auto":
        fast = count_flops(model, input_shape) >= BF16_MIN_FLOPS and bf16_is_fast(device)  # the cheap test first
        changes["precision"] = "bf16" if fast else "fp32"
    return replace(hp, **changes) if changes else hp


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _int_or(x, default: int = 0) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else default


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


@dataclass
class TrialResult:
    status: str  # completed | early_stopped | diverged
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
    precision: str | None = None  # what the training steps ran in (after resolve_speed)
    channels_last: bool | None = None


@dataclass
class Evaluation:
    loss: float
    acc: float
    predictions: torch.Tensor


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, normalize: Normalizer) -> Evaluation:
    """Mean loss and accuracy of ``model`` (in eval mode) over every image of ``split``."""
    model.eval()
    loss_sum, preds = 0.0, []
    for start in range(0, len(split), EVAL_BATCH):
        x = normalize(split.images[start : start + EVAL_BATCH])
        y = split.labels[start : start + EVAL_BATCH]
        logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        preds.append(logits.argmax(1))
    predictions = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
    correct = int((predictions == split.labels).sum())
    n = max(len(split), 1)
    return Evaluation(loss_sum / n, correct / n, predictions.cpu())


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> list[list[int]]:
    counts = torch.bincount(labels.cpu() * num_classes + predictions.cpu(), minlength=num_classes**2)
    return counts.view(num_classes, num_classes).tolist()


def make_optimizer(model: nn.Module, hp: HParams) -> torch.optim.Optimizer:
    """torch's optimizer for ``hp``. A parameter with an ``lr_scale`` attribute (airbench's batch-norm biases:
    64) trains at that multiple of the learning rate, with its weight decay divided by it (the same decay per
    step); the first group is the plain one, whose rate the history records."""
    scales: dict[float, list[nn.Parameter]] = {}
    for p in model.parameters():
        scales.setdefault(float(getattr(p, "lr_scale", 1.0)), []).append(p)
    params = [{"params": scales.pop(1.0, [])}]
    params += [{"params": ps, "lr": hp.lr * s, "weight_decay": hp.weight_decay / s} for s, ps in scales.items()]
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                               nesterov=hp.nesterov)  # fmt: skip
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
    return torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in an epoch of ``n`` images: a last batch of one image is skipped (batch norm)."""
    steps = math.ceil(n / batch_size)
    return steps - 1 if n % batch_size == 1 and n > 1 else steps


def make_scheduler(optimizer: torch.optim.Optimizer, hp: HParams, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """torch's scheduler for ``hp.schedule`` over ``hp.epochs`` epochs of ``steps`` steps, stepped after every
    optimizer step. constant: ``hp.lr`` throughout; cosine: cosine annealing to 0; step: x0.1 at 50% and 75%
    of the steps after warm-up; onecycle: OneCycleLR up to ``hp.lr`` (momentum left as set). A warm-up of
    ``hp.warmup_epochs`` rises linearly to ``hp.lr`` first (onecycle: its own rising phase)."""
    from torch.optim import lr_scheduler as sched

    total = hp.epochs * steps
    warmup = min(round((hp.warmup_epochs or 0) * steps), total - 1)
    if hp.schedule == "onecycle":
        pct = warmup / total if warmup else 0.3  # 0.3: torch's default rising phase
        peaks = [group["lr"] for group in optimizer.param_groups]  # each group's own (lr_scale)
        return sched.OneCycleLR(optimizer, max_lr=peaks, total_steps=total, pct_start=pct, cycle_momentum=False)
    rest = total - warmup
    if hp.schedule == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=rest)
    elif hp.schedule == "step":
        main = sched.MultiStepLR(optimizer, milestones=[rest // 2, (3 * rest) // 4], gamma=0.1)
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warmup:
        return main
    rise = sched.LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup)
    return sched.SequentialLR(optimizer, [rise, main], milestones=[warmup])


LOOKAHEAD_EVERY = 5  # steps between two pulls of the weights towards their average
LOOKAHEAD_DECAY = 0.95**LOOKAHEAD_EVERY  # the average's decay at the last step (airbench's)


class Lookahead:
    """airbench's lookahead (after Zhang et al., 2019): every LOOKAHEAD_EVERY steps the running average of the
    weights moves towards them, average += (1 - decay) * (weights - average), and the weights are set to it.
    The decay rises as LOOKAHEAD_DECAY * (t / T)^3 over the T steps of the trial: early steps are left alone,
    late ones averaged over many; after the last step the weights are the average. Floating-point buffers
    (batch-norm running statistics) are averaged with the weights."""

    def __init__(self, model: nn.Module, total_steps: int):
        self.total = total_steps
        # The model's own tensors (state_dict shares their storage; training and loading change them in place).
        self.weights = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
        self.average = {k: v.detach().clone() for k, v in self.weights.items()}

    @torch.no_grad()
    def _pull(self, decay: float) -> None:
        for name, average in self.average.items():
            average.lerp_(self.weights[name], 1 - decay)
            self.weights[name].copy_(average)

    def step(self, t: int) -> None:
        """After optimizer step ``t`` (1-based, counted over the whole trial)."""
        if t % LOOKAHEAD_EVERY == 0:
            self._pull(LOOKAHEAD_DECAY * (t / self.total) ** 3)
        if t == self.total:
            self._pull(1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, average in self.average.items():
            average.copy_(state[name])


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
    on_state: Callable[[Path], None] | None = None,
) -> TrialResult:
    """Train ``model`` (already on the data's device) for ``hp.epochs`` epochs. After every epoch that
    improves the selection metric, the weights are written to ``checkpoint_path``; at the end the best
    weights are restored and measured on the train, validation and test splits.

    With ``state_path``, the whole training state (weights, optimizer, schedule, every random generator,
    history, best so far) is written there atomically after every epoch, and a state file already there for
    the same hyperparameters is continued from its last finished epoch: an interrupted trial loses at most
    the epoch it was in, and records the same losses as one never interrupted. The file goes when the trial
    ends. ``on_state`` is called with its path after each write (the Ray executor hands it to Tune).

    The caller seeds torch before building the model; shuffling uses its own generator seeded by
    ``hp.seed``, so the same seed, data and machine give the same losses."""
    x_train, y_train = splits.train.images, splits.train.labels
    device = y_train.device
    hp = resolve_speed(hp, model, tuple(x_train.shape[1:]), device)
    optimizer = make_optimizer(model, hp)
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
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=hp.precision == "bf16")
    limit = DIVERGENCE_FACTOR * math.log(max(num_classes, 2))
    result = TrialResult(status="completed", precision=hp.precision, channels_last=hp.channels_last)
    best: EpochStats | None = None
    best_state: dict | None = None
    generators = {"shuffle": shuffle, "augment": augment_rng}
    state_path = Path(state_path) if state_path is not None else None
    resumed = load_state(state_path, hp, checkpoint_meta) if state_path is not None else None
    elapsed = 0.0
    if resumed is None:  # a fresh trial: modules fitted to the data (a whitening stem), in the training time
        t0 = time.perf_counter()
        if fitted := layers.data_initialized(model):
            with torch.no_grad():
                images = normalize(x_train[: layers.DATA_INIT_IMAGES])
            for module in fitted:
                module.init_from_data(images)
        elapsed = time.perf_counter() - t0
    else:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        _set_rng(resumed["rng"], generators, device)
        result.history = [EpochStats(**e) for e in resumed["history"]]
        best = next(e for e in result.history if e.epoch == resumed["best_epoch"])
        best_state = resumed["best_state"]
        meta = {**(checkpoint_meta or {}), "epoch": best.epoch, "val_loss": best.val_loss, "val_acc": best.val_acc}
        result.checkpoint_sha256 = checkpoints.save(checkpoint_path, best_state, meta)  # as it was at that epoch
        elapsed = result.history[-1].elapsed_s or 0.0
    first_epoch = len(result.history) + 1
    lookahead = Lookahead(model, hp.epochs * steps) if hp.lookahead else None  # of the fitted weights
    if lookahead is not None and resumed is not None:
        lookahead.load_state_dict(resumed["lookahead"])

    for epoch in range(first_epoch, hp.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        order = torch.randperm(n, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for i, start in enumerate(range(0, n, hp.batch_size)):
            idx = order[start : start + hp.batch_size]
            if len(idx) == 1 and start > 0:
                break  # batch norm cannot train on one image; the order changes every epoch, so none is lost for good
            flip = flips[idx] ^ (epoch % 2 == 0) if flips is not None else None
            x = normalize(augment(x_train[idx], augmentations, augment_rng, flip)).contiguous(memory_format=layout)
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
        val = evaluate(model, splits.val, normalize)
        stats = EpochStats(epoch, train_loss, train_acc, val.loss, val.acc, time.perf_counter() - t0, lr=lr,
                           elapsed_s=elapsed)  # fmt: skip
        result.history.append(stats)
        if not (math.isfinite(train_loss) and math.isfinite(val.loss)) or train_loss > limit:
            result.status = "diverged"
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
            save_state(state_path, hp, checkpoint_meta, model, optimizer, scheduler, generators, device,
                       result.history, best, best_state, lookahead)  # fmt: skip
            if on_state:
                on_state(state_path)
        if on_epoch:
            on_epoch(stats)
        if stopping:
            result.status = "early_stopped"
            result.note = f"no better {hp.select.replace('_', ' ')} for {hp.patience} epochs after epoch {best.epoch}"
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

STATE_FORMAT = 1


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


def save_state(path: Path, hp: HParams, meta: dict | None, model: nn.Module, optimizer, scheduler, generators,
               device: torch.device, history: list[EpochStats], best: EpochStats,
               best_state: dict, lookahead: Lookahead | None = None) -> None:  # fmt: skip
    """Everything needed to continue the trial after its last finished epoch, written atomically."""
    state = {
        "format": STATE_FORMAT,
        "hparams": hp.as_dict(),
        "meta": dict(meta or {}),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(generators, device),
        "history": [asdict(e) for e in history],
        "best_epoch": best.epoch,
        "best_state": best_state,
        "lookahead": lookahead.state_dict() if lookahead is not None else None,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_state(path: Path, hp: HParams, meta: dict | None) -> dict | None:
    """The saved state at ``path`` if it continues this very trial (same hyperparameters and identity);
    None when there is none, or it is unreadable or another trial's (the trial then starts afresh)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged state only costs the epochs it held
        return None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        return None
    try:  # a state saved before a hyperparameter existed has that one at its default
        same = HParams.from_dict(state.get("hparams") or {}) == hp and state.get("meta") == dict(meta or {})
    except (TypeError, UsageError):
        return None
    if not same or (hp.lookahead and not isinstance(state.get("lookahead"), dict)):
        return None
    return state
