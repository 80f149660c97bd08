"""Datasets as uint8 tensors (in memory, or memory maps of the decode cache), split deterministically into views,
read and normalized batch by batch."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
from dataclasses import dataclass

import torch

from bench.core.errors import BenchError, UsageError


def _madvise():
    """libc's madvise where there is one (Linux), else None."""
    if sys.platform != "linux":
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return call


_MADVISE = _madvise()
_MADV_RANDOM, _MADV_WILLNEED = 1, 3
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _advise(address: int, length: int, advice: int) -> None:
    """madvise over the pages holding ``length`` bytes from ``address`` (advice only: a failure changes nothing)."""
    if _MADVISE is not None and length > 0:
        aligned = address - address % _PAGE
        _MADVISE(ctypes.c_void_p(aligned), ctypes.c_size_t(address + length - aligned), advice)


_MAPPED: set[int] = set()  # addresses of memory-mapped pixels larger than the page cache can keep (mapped)
CHUNK_BYTES = 64 << 20  # what a pass over a split (fingerprint, statistics) holds at once


def mapped(pixels: torch.Tensor) -> torch.Tensor:
    """Mark ``pixels`` as a memory map of a file (bench.data.cache.tensors does). When they take more than half of the
    memory available (bench.core.machine.available_memory: a cgroup's limit counts), the page cache cannot keep
    them: their pages are then read only where asked (MADV_RANDOM: a page fault does not read the pages around it,
    up to the device's readahead, 8 MB on some disks, of which a randomly drawn batch uses one image), and a Split
    of them reads each batch ahead (prefetch). Smaller ones are read as any file (the pages around a fault
    too) and stay in the page cache after the first epoch."""
    from bench.core.machine import available_memory

    size = pixels.numel() * pixels.element_size()
    if _MADVISE is not None and pixels.data_ptr() not in _MAPPED and size > available_memory() / 2:
        _advise(pixels.data_ptr(), size, _MADV_RANDOM)
        _MAPPED.add(pixels.data_ptr())
    return pixels


class Split:
    """Images and their labels. ``images`` may be a memory map of a cache file (bench.data.cache.cached), larger than
    memory: a split of it (``view``) holds only its positions (``index``), and its pixels are read batch by batch
    (``take``), so that only a batch at a time is ever in anonymous memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None):
        self.source = images  # uint8 (M, C, H, W), raw pixel values (all of them; a view uses some)
        self.labels = labels  # int64 (N,), this split's labels, in its order
        self.index = index  # int64 (N,): the positions in ``source`` of this split's images; None: all, in order

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"Split({len(self)} images of {tuple(self.source.shape[1:])})"

    @property
    def images(self) -> torch.Tensor:
        """Every image of the split, gathered into memory: for what needs them all at once (small data)."""
        return self.source if self.index is None else self.source[self.index]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.source.shape[1:])

    @property
    def image_bytes(self) -> int:
        return self.source[:1].numel() * self.source.element_size()

    @property
    def nbytes(self) -> int:
        return len(self) * self.image_bytes

    def take(self, positions: torch.Tensor | slice) -> torch.Tensor:
        """The images at ``positions`` (a slice, or int64 positions of this split), on the device of the pixels:
        gathered into memory, or for a slice of a split in order, a view of its pixels."""
        if isinstance(positions, slice):
            return self.source[positions] if self.index is None else self.source[self.index[positions]]
        positions = positions.to(self.source.device)
        return self.source[positions if self.index is None else self.index[positions]]

    def prefetch(self, positions: torch.Tensor) -> None:
        """Ask the kernel to start reading the pages of the images at ``positions`` (int64 positions of this split)
        now, when the pixels are a memory map larger than the page cache can keep (``mapped``): the next batch's
        reads then go to the disk together, each image's bytes exactly, while this batch trains. Nothing for pixels
        in memory, or that the page cache keeps (or off Linux)."""
        if self.source.data_ptr() not in _MAPPED or not len(positions):
            return
        rows = positions.cpu() if self.index is None else self.index[positions.to(self.index.device)].cpu()
        rows = rows.unique()  # sorted; a run of consecutive images is one range
        gap = rows[1:] != rows[:-1] + 1
        starts = rows[torch.cat([torch.tensor([True]), gap])]
        ends = rows[torch.cat([gap, torch.tensor([True])])] + 1
        size, base = self.image_bytes, self.source.data_ptr()
        for start, end in zip((starts * size).tolist(), (ends * size).tolist(), strict=True):
            _advise(base + start, end - start, _MADV_WILLNEED)

    def view(self, positions: torch.Tensor) -> Split:
        """The split of the images at ``positions`` of this one: no pixel copied."""
        positions = positions.to(self.labels.device)
        inner = positions if self.index is None else self.index[positions.to(self.index.device)]
        return Split(self.source, self.labels[positions], inner.to(self.source.device))

    def chunks(self, max_bytes: int = CHUNK_BYTES):
        """The split's images in order, a few at a time (at most ``max_bytes`` each, at least one image)."""
        step = max(1, max_bytes // max(1, self.image_bytes))
        for start in range(0, len(self), step):
            self.prefetch(torch.arange(start, min(start + 2 * step, len(self))))  # this chunk and the next
            yield self.take(slice(start, start + step))

    def to(self, device: torch.device | str) -> Split:
        """The split on ``device`` (its pixels gathered there when it is another device)."""
        device = torch.device(device)
        if self.source.device == device:
            return Split(self.source, self.labels.to(device), self.index)
        return Split(self.images.to(device), self.labels.to(device))

    def in_memory(self) -> Split:
        """The split with its pixels copied into memory (no longer a memory map): the in-memory path."""
        pixels = self.source.clone() if self.index is None else self.source[self.index]  # one copy either way
        return Split(pixels, self.labels.clone())

    def channel_stats(self, pixel_scale: float = 1.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and standard deviation (unbiased) per channel of ``pixel * pixel_scale``, in one pass of chunks with
        exact integer sums: no float copy of the images."""
        channels = self.source.shape[1]
        total = torch.zeros(channels, dtype=torch.float64)
        squares = torch.zeros(channels, dtype=torch.float64)
        for chunk in self.chunks(CHUNK_BYTES // 8):
            values = chunk.transpose(0, 1).reshape(channels, -1).to(torch.int32)  # 255**2 fits
            total += values.sum(1, dtype=torch.int64).double()
            squares += (values * values).sum(1, dtype=torch.int64).double()
        n = len(self) * self.source.shape[2] * self.source.shape[3]
        mean = total / n
        var = (squares - total * mean) / max(n - 1, 1)
        return (
            tuple(float(m) * pixel_scale for m in mean),
            tuple(float(v.clamp(min=0).sqrt()) * pixel_scale for v in var),
        )


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
        return tuple(self.train.source.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def record(self) -> dict:
        """What the data was, as a run records it: a fingerprint of every image and label of both parts (SHA-256
        of the decoded pixels, so a file added, removed, replaced or re-ordered changes it), their sizes and the
        normalization. A later export, quantization, benchmark or resume compares it (bench.plugins).
        ``test_fingerprint`` is the test part's alone (class names, images, labels): runs whose test accuracies
        may be ranked together share it, whatever they trained on (bench.report.views.comparable)."""
        digest = hashlib.sha256(json.dumps([self.classes, self.pixel_scale, self.mean, self.std]).encode())
        test_digest = hashlib.sha256(json.dumps(self.classes).encode())
        for part in (self.train, self.test):
            digests = (digest, test_digest) if part is self.test else (digest,)
            for d in digests:
                d.update(json.dumps([list(part.shape), len(part.labels)]).encode())
            for chunk in part.chunks():  # chunk by chunk: the same digest as all of the bytes at once
                for d in digests:
                    d.update(chunk.cpu().contiguous().numpy())
            for d in digests:
                d.update(part.labels.cpu().contiguous().numpy().tobytes())
        return {
            "fingerprint": digest.hexdigest(),
            "test_fingerprint": test_digest.hexdigest(),
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
        return replace(self, train=self.train.view(keep))

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
        return Splits(train=self.train.view(train), val=self.train.view(val), test=self.test)

    def in_memory(self) -> Dataset:
        """The dataset with every pixel copied into memory (bench.data.splits.Split.in_memory)."""
        from dataclasses import replace

        return replace(self, train=self.train.in_memory(), test=self.test.in_memory())


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


class Normalized:
    """A split's images as a model takes them (``normalize``: a Normalizer), made a slice at a time: ``x[a:b]`` is
    a float tensor of those images. Export, quantize and benchmark measure the whole test split this way, so it
    is never all in memory as float32 (four times its uint8 size) at once."""

    def __init__(self, split: Split, normalize: Normalizer):
        self.split, self.normalize = split, normalize

    def __len__(self) -> int:
        return len(self.split)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.split.shape

    def __getitem__(self, key: slice) -> torch.Tensor:
        if not isinstance(key, slice):
            raise TypeError("Normalized images are read by slices: x[start:stop]")
        with torch.no_grad():
            return self.normalize(self.split.take(key))


def check_dataset(data: Dataset) -> None:
    for split_name, split in (("train", data.train), ("test", data.test)):
        if split.source.dtype != torch.uint8 or split.source.dim() != 4:
            raise BenchError(f"dataset '{data.name}': {split_name} images must be uint8 (N, C, H, W)")
        if len(split) and (int(split.labels.min()) < 0 or int(split.labels.max()) >= data.num_classes):
            raise BenchError(f"dataset '{data.name}': {split_name} labels must lie in 0..{data.num_classes - 1}")
        if len(split) == 0:
            raise BenchError(f"dataset '{data.name}': the {split_name} split is empty")
    if len(data.mean) != data.input_shape[0] or len(data.std) != data.input_shape[0]:
        raise BenchError(f"dataset '{data.name}': mean and std need one value per channel")
