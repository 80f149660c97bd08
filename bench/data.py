"""Datasets held in memory as uint8 tensors, split deterministically, normalized per batch."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch

from bench.errors import BenchError, UsageError


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W), raw pixel values
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """Everything needed to train on, and to describe, one dataset. ``pixel_scale``, ``mean`` and ``std``
    say how a raw pixel becomes a model input: (pixel * pixel_scale - mean[c]) / std[c]."""

    name: str
    classes: list[str]
    pixel_scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Split  # everything that may be used for training and validation
    test: Split  # held out; never seen before the final evaluation
    resize: str | None = None  # how source images became input_shape, e.g. "bilinear (Pillow) from any size"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def record(self) -> dict:
        """What the data was, as a run records it: a fingerprint of every image and label of both parts (SHA-256
        of the decoded pixels, so a file added, removed, replaced or re-ordered changes it), their sizes and the
        normalization. A later export, quantization, benchmark or resume compares it (bench.plugins)."""
        digest = hashlib.sha256(json.dumps([self.classes, self.pixel_scale, self.mean, self.std]).encode())
        for part in (self.train, self.test):
            digest.update(json.dumps([list(part.images.shape), len(part.labels)]).encode())
            digest.update(part.images.contiguous().numpy().tobytes())
            digest.update(part.labels.contiguous().numpy().tobytes())
        return {
            "fingerprint": digest.hexdigest(),
            "train": len(self.train),
            "test": len(self.test),
            "pixel_scale": self.pixel_scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
        }

    def limited(self, n: int) -> Dataset:
        """The dataset with ``n`` of its training images: a stratified subset (each class keeps its share, at least
        one image), chosen by seed 0 so that every trial and a resume get the same one; the test part is whole."""
        from dataclasses import replace

        total = len(self.train)
        if n >= total:
            return self
        generator = torch.Generator().manual_seed(0)
        labels = self.train.labels
        chosen = []
        classes = labels.unique()
        for c in classes:
            members = (labels == c).nonzero().flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            chosen.append(members[: max(1, round(n * len(members) / total))])
        keep = torch.cat(chosen)
        keep = keep[torch.randperm(len(keep), generator=generator)][:n].sort().values
        return replace(self, train=Split(self.train.images[keep], labels[keep]))

    def split(self, val_ratio: float, seed: int) -> Splits:
        """Hold out ``val_ratio`` of the training images for validation, chosen by ``seed``."""
        if not 0 < val_ratio < 1:
            raise UsageError(f"--val-ratio must be between 0 and 1 (exclusive), not {val_ratio}")
        n = len(self.train)
        n_val = round(n * val_ratio)
        if n_val < 1 or n - n_val < 1:
            raise UsageError(
                f"--val-ratio {val_ratio} leaves an empty split of the {n} training images of '{self.name}'"
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        val, train = order[:n_val], order[n_val:]
        return Splits(
            train=Split(self.train.images[train], self.train.labels[train]),
            val=Split(self.train.images[val], self.train.labels[val]),
            test=self.test,
        )


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


class Normalizer:
    """uint8 batch -> float batch on ``device``: one fused multiply-add per pixel."""

    def __init__(self, dataset: Dataset, device: torch.device | str = "cpu"):
        std = torch.tensor(dataset.std, dtype=torch.float32)
        mean = torch.tensor(dataset.mean, dtype=torch.float32)
        self.scale = (dataset.pixel_scale / std).view(1, -1, 1, 1).to(device)
        self.shift = (-mean / std).view(1, -1, 1, 1).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, images.float(), self.scale)


def check_dataset(data: Dataset) -> None:
    for split_name, split in (("train", data.train), ("test", data.test)):
        if split.images.dtype != torch.uint8 or split.images.dim() != 4:
            raise BenchError(f"dataset '{data.name}': {split_name} images must be uint8 (N, C, H, W)")
        if len(split) and (int(split.labels.min()) < 0 or int(split.labels.max()) >= data.num_classes):
            raise BenchError(f"dataset '{data.name}': {split_name} labels must lie in 0..{data.num_classes - 1}")
        if len(split) == 0:
            raise BenchError(f"dataset '{data.name}': the {split_name} split is empty")
    if len(data.mean) != data.input_shape[0] or len(data.std) != data.input_shape[0]:
        raise BenchError(f"dataset '{data.name}': mean and std need one value per channel")
