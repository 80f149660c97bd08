"""Data augmentation on whole uint8 batches, on the training device: no per-image Python in the loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("flip", "crop", "grayscale")
CROP_PADDING = 4  # pixels of zero padding around the image before a random crop back to its size
GRAYSCALE_P = 0.1  # as torchvision's RandomGrayscale default (the ROB313 lab's setting)


def parse(spec: str | None) -> tuple[str, ...]:
    from bench.errors import UsageError

    names = tuple(dict.fromkeys(s.strip() for s in (spec or "").split(",") if s.strip()))
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad:
        raise UsageError(f"invalid value for --augment: '{bad[0]}' (choose from {', '.join(AUGMENTATIONS)})")
    return names


def augment(images: torch.Tensor, names: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """``images``: uint8 (N, C, H, W). Each augmentation is drawn per image: horizontal flip with p=0.5,
    random crop after zero padding, grayscale with p=0.1 (3-channel images only)."""
    if not names:
        return images
    n, c, h, w = images.shape
    device = images.device
    if "flip" in names:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        images = torch.where(flip.view(n, 1, 1, 1), images.flip(3), images)
    if "crop" in names:
        p = CROP_PADDING
        padded = F.pad(images, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n, 1, 1, 1), generator=generator, device=device)
        dx = torch.randint(0, 2 * p + 1, (n, 1, 1, 1), generator=generator, device=device)
        # Two gathers (rows, then columns) pick each image's window: one kernel each, whatever the batch.
        rows = (torch.arange(h, device=device).view(1, 1, h, 1) + dy).expand(n, c, h, w + 2 * p)
        images = padded.gather(2, rows)
        cols = (torch.arange(w, device=device).view(1, 1, 1, w) + dx).expand(n, c, h, w)
        images = images.gather(3, cols)
    if "grayscale" in names and c == 3:
        pick = (torch.rand(n, generator=generator, device=device) < GRAYSCALE_P).nonzero().flatten()
        if len(pick):
            chosen = images[pick].float()
            gray = (chosen * torch.tensor([0.299, 0.587, 0.114], device=device).view(1, 3, 1, 1)).sum(1, True)
            images = images.clone()
            images[pick] = gray.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, h, w)
    return images
