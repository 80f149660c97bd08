"""Data augmentation on whole uint8 batches, on the training device: no per-image Python in the loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

CROP_PADDING = 4  # crop: pixels of zero padding around the image before a random crop back to its size
TRANSLATE_PADDING = 2  # translate: pixels of reflection padding, then a random crop (airbench's augmentation)
GRAYSCALE_P = 0.1  # as torchvision's RandomGrayscale default (the ROB313 lab's setting)


def parse(spec: str | None) -> tuple[str, ...]:
    """The augmentations of an --augment value, as HParams holds it (checked and normalized there: bench.options
    AUGMENTATIONS)."""
    return tuple(name for name in (spec or "").split(",") if name)


def alternating_flips(n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """altflip's draw: which of ``n`` training images are mirrored in odd epochs (p=0.5, fixed by ``seed``);
    even epochs mirror the others, so every image is seen both ways in every two epochs (airbench)."""
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5).to(device)


def augment(
    images: torch.Tensor, names: tuple[str, ...], generator: torch.Generator, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """``images``: uint8 (N, C, H, W). Each augmentation is drawn per image: horizontal flip with p=0.5 (altflip:
    the images of the boolean mask ``flip``, which the trainer alternates per epoch), random crop after 4 px of
    zero padding, translation by up to 2 px (random crop after reflection padding), grayscale with p=0.1
    (3-channel images only)."""
    if not names:
        return images
    n, c, h, w = images.shape
    device = images.device
    if "flip" in names or "altflip" in names:
        if "altflip" not in names or flip is None:
            flip = torch.rand(n, generator=generator, device=device) < 0.5
        images = torch.where(flip.view(n, 1, 1, 1), images.flip(3), images)
    for name, p, mode in (("crop", CROP_PADDING, "constant"), ("translate", TRANSLATE_PADDING, "reflect")):
        if name not in names:
            continue
        padded = F.pad(images, (p, p, p, p)) if mode == "constant" else _reflect_pad(images, p)
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


def _reflect_pad(images: torch.Tensor, p: int) -> torch.Tensor:
    """Reflection padding of a uint8 batch (F.pad's reflect mode takes floating point only)."""
    h, w = images.shape[-2:]
    rows = torch.cat([torch.arange(p, 0, -1), torch.arange(h), torch.arange(h - 2, h - 2 - p, -1)]).to(images.device)
    cols = torch.cat([torch.arange(p, 0, -1), torch.arange(w), torch.arange(w - 2, w - 2 - p, -1)]).to(images.device)
    return images.index_select(-2, rows).index_select(-1, cols)
