"""Readers of the standard dataset files into uint8 arrays: IDX (MNIST, Fashion-MNIST) and CIFAR-10 batches, and
where to find them."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError


def find_files(name: str, names: list[str], folders: list[Path], how_to_get: str) -> list[Path]:
    """The files ``names`` (each also accepted with a .gz suffix) from the first folder that has them all."""
    for folder in folders:
        found = []
        for n in names:
            for candidate in (folder / n, folder / f"{n}.gz"):
                if candidate.is_file():
                    found.append(candidate)
                    break
        if len(found) == len(names):
            return found
    where = " or ".join(str(f) for f in folders)
    raise BenchError(f"{name}: files not found: expected {', '.join(names)} (optionally .gz) in {where}; {how_to_get}")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise BenchError(f"{path} is damaged or unreadable ({exc.__class__.__name__}: {exc})") from exc


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file (the MNIST format): uint8 array of ``dims`` dimensions."""
    data = _read_bytes(path)
    if len(data) < 4 + 4 * dims:
        raise BenchError(f"{path} is damaged: too short for an IDX header")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != 0x800 + dims:
        raise BenchError(f"{path} is not an IDX file of {dims} dimensions (magic number {magic:#x})")
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise BenchError(f"{path} is damaged: {body.size} bytes of data for shape {shape}")
    return body.reshape(shape)


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles; this reads them without letting a file run code: only the numpy
    constructors a batch needs are allowed."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 batch: python pickle (data_batch_N, test_batch) or binary (data_batch_N.bin, test_batch.bin).
    Returns uint8 images (N, 3, 32, 32) and int64 labels."""
    data = _read_bytes(path)
    if path.suffix == ".bin":
        if len(data) % 3073:
            raise BenchError(f"{path} is damaged: {len(data)} bytes is not a whole number of 3073-byte records")
        records = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3073)
        return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)
    try:
        batch = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as exc:
        raise BenchError(f"{path} is not a readable CIFAR-10 batch ({exc.__class__.__name__}: {exc})") from exc
    if len(images) != len(labels):
        raise BenchError(f"{path} is damaged: {len(images)} images but {len(labels)} labels")
    return images, labels
