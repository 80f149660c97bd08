"""The decode cache: arrays decoded once from a dataset's files, kept as one .npy file each under --cache-dir and read
back as memory maps, so that a dataset larger than memory trains a batch at a time."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import BenchError

CACHE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("cnnbench_cache_dir", default=None)


def cache_dir() -> Path:
    """Where decoded datasets are kept: --cache-dir (bench.plugins.dataset_loading.load_dataset sets it), else
    $BENCH_CACHE, else the user cache (~/.cache/cnnbench). Never inside a dataset's folder unless asked."""
    given = CACHE_DIR.get()
    return Path(given or os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "cnnbench")


def _lock_of(path: Path) -> Path:
    return path.parent / f"{path.name}.lock"  # not with_suffix: a name with a dot would share another's lock


@contextlib.contextmanager
def _exclusive(path: Path):
    """One process at a time builds (or reads) ``path``: a second one waits for the first's file, then reads it."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(_lock_of(path), "a")  # noqa: SIM115 (held across the yield)
    except (ImportError, OSError):  # no POSIX locks (Windows), or a folder we cannot write: unlocked, still safe
        yield
        return
    with contextlib.suppress(OSError):  # a file system without locks: unlocked, still safe (atomic writes)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield
    finally:
        lock.close()  # closing releases the lock


def cached(sources: list[Path], key: dict, build: Callable) -> dict[str, np.ndarray]:
    """Arrays decoded from ``sources`` by ``build``, kept in the cache folder (cache_dir()) as one .npy file per
    array and returned as read-only memory maps of those files: a dataset larger than memory is read from the page
    cache (or the disk) a batch at a time. ``build()`` returns the arrays; or ``build(folder)`` writes large ones
    itself into ``folder`` as .npy files (``open_array``) and returns the rest. The key covers every source's path,
    size and mtime and ``key``, so a changed file is decoded again; two processes asking at once decode once (a file
    lock); a half-written or damaged cache is never read (written in a temporary folder, then renamed); the cache of
    an earlier version of the same sources is removed once the new one is written."""
    import inspect
    import shutil

    stamp = [(os.path.abspath(p), *_size_and_time(p)) for p in sources]  # not resolve(): 0.1 ms a file
    digest = hashlib.sha256(json.dumps([stamp, key], sort_keys=True).encode()).hexdigest()[:16]
    family = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]  # the same data, any version
    folder = cache_dir() / f"{key.get('name', 'data')}-{family}-{digest}"
    with _exclusive(folder):
        if folder.is_dir():
            try:
                return _open_cache(folder)
            except (OSError, ValueError, EOFError):
                shutil.rmtree(folder, ignore_errors=True)  # a damaged cache is rebuilt, never trusted
        scratch = folder.parent / f".{folder.name}.{os.getpid()}.partial"
        streams = bool(inspect.signature(build).parameters)  # build(folder) writes its arrays there itself
        try:
            scratch.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if not streams:  # a read-only cache folder: the arrays are decoded into memory instead
                return build()
            where = f"cannot write the decode cache in {folder.parent} ({exc.strerror})"
            raise BenchError(f"{where}: --cache-dir DIR") from exc
        try:
            arrays = build(scratch) if streams else build()
            for name, array in (arrays or {}).items():
                np.save(scratch / f"{name}.npy", array, allow_pickle=False)
            names = sorted(f.stem for f in scratch.glob("*.npy"))
            (scratch / MANIFEST).write_text(json.dumps(names))  # what a whole cache holds: checked when opened
            os.replace(scratch, folder)
            for older in folder.parent.glob(f"{key.get('name', 'data')}-{family}-*"):  # its sources changed since
                if older.is_dir() and older != folder:  # a process reading one keeps its open files until it exits
                    shutil.rmtree(older, ignore_errors=True)
                    _lock_of(older).unlink(missing_ok=True)
        except OSError as exc:
            from bench.core.files import no_room

            raise no_room(exc, scratch) or BenchError(f"cannot write the decode cache {folder}: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return _open_cache(folder)


def _size_and_time(path: Path) -> tuple[int, int]:
    status = path.stat()  # of the file a link points to: a retargeted or rewritten one changes the key
    return status.st_size, status.st_mtime_ns


MANIFEST = "arrays.json"  # the names of a cache's arrays, written last


def _open_cache(folder: Path) -> dict[str, np.ndarray]:
    """The arrays of a cache folder, every one its manifest lists (ValueError when one is missing or damaged, or the
    manifest is: a cache changed by hand, or of an earlier cnnbench, is decoded again)."""
    names = json.loads((folder / MANIFEST).read_text())
    if not isinstance(names, list) or not names:
        raise ValueError(f"{folder / MANIFEST} lists no arrays")
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in names}


def open_array(path: Path, shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    """A new .npy file of ``shape``, memory-mapped for writing (its pages go to the file, not to memory)."""
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors sharing the arrays' memory: a read-only memory map (the decode cache) stays one, never copied (it
    must then never be written in place: nothing in cnnbench does)."""
    import warnings

    from bench.data.splits import mapped

    images = np.require(images, dtype=np.uint8, requirements=["C"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        pixels = torch.from_numpy(images)
    if isinstance(images, np.memmap):  # np.load(..., mmap_mode=...), as the cache reads
        mapped(pixels)
    return pixels, torch.from_numpy(np.array(labels, dtype=np.int64))  # labels: small, in memory
