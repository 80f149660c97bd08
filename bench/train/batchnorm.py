"""Batch-norm statistics that match the weights they are evaluated with (`--bn-recalibrate`, issue 40).

A batch-norm layer evaluates with running averages of its batches' statistics, each batch weighing ``momentum``: about
1/momentum batches make the average. torchvision's MobileNetV3 and EfficientNet use momentum 0.01 (100 batches); on a
folder of 2,000 images at batch 64 an epoch has 32 steps, so after a few epochs the averages still mostly describe
weights long gone, and a model that learned evaluates near chance. Recalibration (precise BN; timm and detectron2 do
it, torch.optim.swa_utils.update_bn is the same computation) recomputes each layer's statistics as the plain average
over training batches with the weights of the end of the epoch, before the epoch is validated and its checkpoint kept.
Written here rather than by update_bn, which resets every layer: frozen layers (--freeze, fine-tuning) keep the
statistics of the weights they came with.

`auto` recalibrates when some layer's running average spans more batches than an epoch has: it never runs for the
built-in CIFAR models on CIFAR-sized data (momentum 0.1: 10 batches), and does for MobileNetV3 on small folders.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.data.splits import Normalizer, Split

RECALIBRATION_IMAGES = 4096  # training images, at most, whose statistics an epoch's recalibration averages
_BN = nn.modules.batchnorm._BatchNorm


def window(model: nn.Module) -> float:
    """How many batches the slowest batch-norm running average spans (1/momentum; inf for a cumulative average; 0
    without batch norm)."""
    layers = [m for m in model.modules() if _tracking(m) and m.momentum != 0]
    return max((math.inf if m.momentum is None else 1 / m.momentum for m in layers), default=0.0)


def wanted(setting: str, model: nn.Module | float, steps_per_epoch: int) -> bool:
    """Whether a trial recalibrates: ``setting`` on/off as given; auto when the averages outlast an epoch (``model``:
    the model, or its window already measured)."""
    if setting in ("on", "off"):
        return setting == "on"
    return (model if isinstance(model, float) else window(model)) > steps_per_epoch


def recalibrate(model: nn.Module, train: Split, normalize: Normalizer, batch_size: int, seed: int) -> int:
    """Recompute the running statistics of ``model``'s trainable batch-norm layers over up to RECALIBRATION_IMAGES
    training images (a seeded sample, not augmented: as evaluation sees images), in batches of ``batch_size``; the
    number of layers recalibrated. The model is left in training mode."""
    model.train()
    from bench.train.weights import keep_frozen

    keep_frozen(model)
    layers = [m for m in model.modules() if _tracking(m) and m.training]
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch weighs the same
    n = len(train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:RECALIBRATION_IMAGES]
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) > 1:  # batch norm cannot average one image's statistics
                model(normalize(train.take(idx.to(train.labels.device)).to(device)))
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum
    return len(layers)


def _tracking(m: nn.Module) -> bool:
    return isinstance(m, _BN) and m.track_running_stats
