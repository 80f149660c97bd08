"""Model statistics: parameter count and forward FLOPs per image."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image, by torch's own flop counter (a multiply-add counts as 2 FLOPs;
    convolutions and matrix products only, as torch counts them)."""
    device = next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def activation_bytes(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Bytes of every intermediate result of one image's forward pass in float32 (the outputs of the model's leaf
    modules, added up): an upper bound on what an engine holds per image at once, for bounding batch sizes."""
    device = next(model.parameters(), torch.empty(0)).device
    total = 0

    def count(module, inputs, output):
        nonlocal total
        for t in output if isinstance(output, tuple | list) else [output]:
            if isinstance(t, torch.Tensor):
                total += 4 * t.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total
