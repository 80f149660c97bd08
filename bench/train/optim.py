"""Optimizers, learning-rate schedules and lookahead: torch's own, built from a trial's hyperparameters."""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.options.hparams import HParams


def make_optimizer(model: nn.Module, hp: HParams, head: set[int] | None = None) -> torch.optim.Optimizer:
    """torch's optimizer for ``hp``, over the parameters that train (frozen ones are left out). A parameter with an
    ``lr_scale`` attribute (airbench's batch-norm biases: 64), or in ``head`` (ids of the logits layer's parameters:
    ``hp.head_lr``), trains at that multiple of the learning rate, with its weight decay divided by it (the same
    decay per step); the first group is the plain one, whose rate the history records."""
    scales: dict[float, list[nn.Parameter]] = {}
    head = head or set()
    for p in model.parameters():
        if p.requires_grad:
            scale = float(getattr(p, "lr_scale", 1.0)) * (hp.head_lr if id(p) in head else 1.0)
            scales.setdefault(scale, []).append(p)
    params = [{"params": scales.pop(1.0, [])}]
    params += [{"params": ps, "lr": hp.lr * s, "weight_decay": hp.weight_decay / s} for s, ps in scales.items()]
    if hp.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=hp.nesterov
        )
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
    if hp.schedule == "onecycle" and total < 3:
        return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)  # no cycle fits in fewer than 3 steps
    if hp.schedule == "onecycle":
        # 0.3: torch's default rising phase; OneCycleLR divides by zero unless it rises for 2 to total - 1 steps
        pct = min(max(warmup, 2), total - 1) / total if warmup else 0.3
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
