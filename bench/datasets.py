"""The dataset registry and the building blocks of dataset plugins: format readers (IDX, CIFAR batches,
image folders) that decode once into uint8 tensors, and an on-disk cache of the decoded arrays."""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError, UsageError, check_registration, unknown


@dataclass(frozen=True)
class Request:
    """What the user asked for: ``bench run --dataset NAME[:ARGUMENT] --data-dir DIR --download ...``."""

    name: str
    argument: str | None = None
    data_dir: Path | None = None
    download: bool = False
    image_size: int | None = None  # for image folders: resize to image_size x image_size (None: their own size)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.argument}" if self.argument else self.name


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    load: Callable[[Request], object]
    description: str
    plugin: str
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    takes_argument: bool = False

    def as_dict(self) -> dict:
        """As `bench datasets --json` lists it."""
        return {
            "name": self.name + (":ARGUMENT" if self.takes_argument else ""),
            "plugin": self.plugin,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "num_classes": self.num_classes,
            "description": self.description,
        }


@dataclass
class DatasetRegistry:
    entries: dict[str, DatasetEntry] = field(default_factory=dict)

    def register_callback(self, plugin: str) -> Callable:
        def register(name, load, description="", input_shape=None, num_classes=None, takes_argument=False):
            check_registration("dataset", name, plugin, self.entries, load)
            shape = tuple(input_shape) if input_shape is not None else None
            self.entries[name] = DatasetEntry(
                name, load, " ".join(str(description).split()), plugin, shape, num_classes, bool(takes_argument)
            )

        return register

    def drop_plugin(self, plugin: str) -> None:
        for name in [n for n, e in self.entries.items() if e.plugin == plugin]:
            del self.entries[name]

    def entry(self, spec: str) -> tuple[DatasetEntry, str | None]:
        """The entry for ``name`` or ``name:argument``."""
        name, sep, argument = spec.partition(":")
        if name not in self.entries:
            raise unknown("dataset", name, self.entries)
        entry = self.entries[name]
        if entry.takes_argument and not argument:
            raise UsageError(f"dataset '{name}' needs an argument: --dataset {name}:ARGUMENT")
        if sep and not entry.takes_argument:
            raise UsageError(f"dataset '{name}' takes no argument (got '{spec}')")
        return entry, argument or None


# --- the decode cache ---------------------------------------------------------------------------------


CACHE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("cnnbench_cache_dir", default=None)


def cache_dir() -> Path:
    """Where decoded datasets are kept: --cache-dir (bench.plugins.load_dataset sets it), else $BENCH_CACHE, else the
    user cache (~/.cache/cnnbench). Never inside a dataset's folder unless asked."""
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


def cached(sources: list[Path], key: dict, build: Callable, near: Path | None = None) -> dict[str, np.ndarray]:
    """Arrays decoded from ``sources`` by ``build``, kept in the cache folder (cache_dir()) as one .npy file per
    array and returned as read-only memory maps of those files: a dataset larger than memory is read from the page
    cache (or the disk) a batch at a time. ``build()`` returns the arrays; or ``build(folder)`` writes large ones
    itself into ``folder`` as .npy files (``open_array``) and returns the rest. The key covers every source's path,
    size and mtime and ``key``, so a changed file is decoded again; two processes asking at once decode once (a file
    lock); a half-written or damaged cache is never read (written in a temporary folder, then renamed); the cache of
    an earlier version of the same sources is removed once the new one is written. ``near``
    (the data's folder) is not written to: unused."""
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
            os.replace(scratch, folder)
            for older in folder.parent.glob(f"{key.get('name', 'data')}-{family}-*"):  # its sources changed since
                if older.is_dir() and older != folder:  # a process reading one keeps its open files until it exits
                    shutil.rmtree(older, ignore_errors=True)
                    _lock_of(older).unlink(missing_ok=True)
        except OSError as exc:
            from bench.files import no_room

            raise no_room(exc, scratch) or BenchError(f"cannot write the decode cache {folder}: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return _open_cache(folder)


def _size_and_time(path: Path) -> tuple[int, int]:
    status = path.stat()  # of the file a link points to: a retargeted or rewritten one changes the key
    return status.st_size, status.st_mtime_ns


def _open_cache(folder: Path) -> dict[str, np.ndarray]:
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise ValueError(f"{folder} holds no arrays")
    return {f.stem: np.load(f, mmap_mode="r", allow_pickle=False) for f in files}


def open_array(path: Path, shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    """A new .npy file of ``shape``, memory-mapped for writing (its pages go to the file, not to memory)."""
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


# --- readers ------------------------------------------------------------------------------------------


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


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def eight_bit(im, path: Path):
    """``im`` as an 8-bit grayscale ("L") or RGB image. Wider grayscale is scaled, never clipped (Pillow's
    convert("L") clips a 16-bit image to 255, which turns most photographs white): 16-bit and 32-bit integer
    pixels as 0..65535 (a 32-bit image with values outside that range is refused), float pixels as 0..1
    (refused outside it)."""
    from PIL import Image

    if im.mode in ("1", "L"):
        return im.convert("L")
    if im.mode.startswith("I") or im.mode == "F":
        pixels = np.asarray(im)
        low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
        top = 1.0 if im.mode == "F" else 65535.0
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= top):
            kind = "floating-point pixels outside 0..1" if im.mode == "F" else "pixel values outside 0..65535"
            raise BenchError(f"image {path} has {kind} ({low:g} to {high:g}); convert it to 8 or 16 bits")
        scaled = np.rint(pixels.astype(np.float64) * (255.0 / top)).astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
    return im.convert("RGB")


def check_image_folder(root: Path) -> None:
    if not root.is_dir():
        raise BenchError(
            f"image folder {root} {'is not a folder' if root.exists() else 'does not exist'} "
            "(expected one subfolder of images per class)"
        )


def native_size(files: list[Path]) -> tuple[tuple[int, int], str]:
    """The size (height, width) an image folder keeps without --image-size, and how its images get there, in
    words: their own size when they all share it; else the most common size (ties: the larger), every other image
    resized to it. Read from the files' headers, nothing decoded."""
    from collections import Counter

    from PIL import Image, UnidentifiedImageError

    sizes: Counter = Counter()
    for path in files:
        try:
            with Image.open(path) as im:
                sizes[im.size] += 1  # (width, height)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            raise BenchError(f"cannot read image {path}: {exc}") from exc
    if not sizes:
        raise BenchError("the image folder has no images")
    (w, h), n = max(sizes.items(), key=lambda item: (item[1], item[0][0] * item[0][1], item[0]))
    if len(sizes) == 1:
        return (h, w), f"none: every image is {w}x{h}"
    return (h, w), (
        f"bilinear (Pillow, Image.Resampling.BILINEAR) to {w}x{h}, the most common of {len(sizes)} sizes ({n} of "
        f"{sum(sizes.values())} images; --image-size chooses another)"
    )


PARALLEL_FROM = 512  # images: fewer decode in this process (starting workers costs more than it saves)


def _decode(paths: list[Path], positions: list[int], width: int, height: int, out_path: Path) -> bool:
    """Each image decoded at width x height, 8-bit, written at its position of the .npy file ``out_path`` (N, 3,
    H, W): a grayscale image into every channel (as Pillow's convert("RGB")). Whether every image was grayscale."""
    from PIL import Image, UnidentifiedImageError

    out = np.load(out_path, mmap_mode="r+")
    gray = True
    for path, position in zip(paths, positions, strict=True):
        try:
            with Image.open(path) as im:
                im.load()  # a truncated file fails here, not later
                image = eight_bit(im, path)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            raise BenchError(f"cannot read image {path}: {exc}") from exc
        if pixels.ndim == 2:
            out[position] = pixels
        else:
            out[position] = pixels.transpose(2, 0, 1)
            gray = False
    out.flush()
    return gray


def decode_images(
    paths: list[Path],
    width: int,
    height: int,
    out_path: Path,
    positions: list[int] | None = None,
    workers: int | None = None,
) -> bool:
    """Decode ``paths`` into the uint8 .npy file ``out_path`` (N, 3, height, width; ``positions``: where each image
    goes, default in order) over ``workers`` processes (default: every CPU; 1: this process), each writing its
    images into the file itself, so that nothing of the size of the data passes through memory; with a progress
    bar (images/s) on stderr for a folder of thousands. Whether every image was grayscale."""
    import concurrent.futures
    import multiprocessing

    positions = list(range(len(paths))) if positions is None else list(positions)
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < PARALLEL_FROM:
        return _decode(paths, positions, width, height, out_path)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    chunk = max(64, min(1024, len(paths) // (workers * 8)))
    starts = range(0, len(paths), chunk)
    # fork where there is one: the workers only run Pillow and numpy, and need not import torch again
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    columns = [TextColumn("decoding"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}")]
    gray = True
    with (
        Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), transient=True) as progress,
        concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool,
    ):
        task = progress.add_task("decode", total=len(paths), rate="")
        started = time.perf_counter()
        futures = {
            pool.submit(_decode, paths[i : i + chunk], positions[i : i + chunk], width, height, out_path): i
            for i in starts
        }
        done = 0
        for future in concurrent.futures.as_completed(futures):
            gray &= future.result()  # a BenchError of a worker is raised here, naming the file
            done += len(paths[futures[future] : futures[future] + chunk])
            rate = f"{done / max(time.perf_counter() - started, 1e-9):,.0f} images/s"
            progress.update(task, completed=done, rate=rate)
    return gray


def image_files(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """The images of a folder of one subfolder per class (sorted names = class names; hidden files and folders
    skipped), in a stable order: their paths, labels and the classes."""
    check_image_folder(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise BenchError(f"image folder {root} needs at least two class subfolders, found {len(classes)}")
    files: list[Path] = []
    labels: list[int] = []
    broken: list[Path] = []  # image names that are no file: dangling or looping links
    for label, name in enumerate(classes):
        named = [
            p
            for p in (root / name).rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and not any(x.startswith(".") for x in p.relative_to(root).parts)
        ]  # hidden files and folders are skipped, as most loaders do (and the decode cache's key does)
        images = sorted(p for p in named if p.is_file())
        broken += [p for p in named if p.is_symlink() and not p.is_file()]
        if not images:
            raise BenchError(f"class folder {root / name} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += images
        labels += [label] * len(images)
    if broken:
        import warnings

        warnings.warn(
            f"image folder {root}: skipped {len(broken)} broken link(s), e.g. {sorted(broken)[0]}", stacklevel=2
        )
    return files, np.array(labels, dtype=np.int64), classes


def decode_folder(
    folder: Path, parts: dict[str, tuple[list[Path], np.ndarray]], size: tuple[int, int], workers: int | None = None
) -> None:
    """Decode each part's images (paths and labels, in the order they are to be read) into ``folder`` as
    ``<part>_x.npy`` (N, C, height, width) and ``<part>_y.npy``: grayscale (C = 1) if every image is, else RGB.
    Refused in one line when the folder's disk has no room for them."""
    import shutil

    height, width = size
    total = sum(len(files) for files, _ in parts.values()) * 3 * height * width
    free = shutil.disk_usage(folder).free
    if total > free:
        raise BenchError(
            f"{sum(len(f) for f, _ in parts.values())} images at {width}x{height} need {total / 1e9:.1f} GB of decode "
            f"cache in {folder.parent}, which has {free / 1e9:.1f} GB free: --cache-dir elsewhere, or a smaller "
            "--image-size"
        )
    gray = True
    for name, (files, labels) in parts.items():
        open_array(folder / f"{name}_x.npy", (len(files), 3, height, width))  # written by the decoders
        gray &= decode_images(files, width, height, folder / f"{name}_x.npy", workers=workers)
        np.save(folder / f"{name}_y.npy", labels)
    if gray:  # one channel, chunk by chunk
        for name in parts:
            rgb = np.load(folder / f"{name}_x.npy", mmap_mode="r")
            one = open_array(folder / f"{name}_x1.npy", (len(rgb), 1, height, width))
            step = max(1, (64 << 20) // (3 * height * width))
            for start in range(0, len(rgb), step):
                one[start : start + step] = rgb[start : start + step, :1]
            one.flush()
            del rgb, one
            os.replace(folder / f"{name}_x1.npy", folder / f"{name}_x.npy")


def read_image_folder(
    root: Path, image_size: int | tuple[int, int], workers: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """A folder of one subfolder per class (image_files), decoded into memory (decode_folder), each image resized
    to image_size x image_size (or to (height, width)) where it is not that size already. Returns images, labels,
    classes and the relative paths, in a stable order. (Built-in image folders are decoded into the cache instead
    and read from there: bench.datasets.cached.)"""
    import tempfile

    size = image_size if isinstance(image_size, tuple) else (image_size, image_size)
    files, labels, classes = image_files(root)
    with tempfile.TemporaryDirectory() as tmp:
        decode_folder(Path(tmp), {"all": (files, labels)}, size, workers)
        images = np.array(np.load(Path(tmp) / "all_x.npy"))
    return images, labels, classes, [str(p.relative_to(root)) for p in files]


def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors sharing the arrays' memory: a read-only memory map (the decode cache) stays one, never copied (it
    must then never be written in place: nothing in cnnbench does)."""
    import warnings

    from bench.data import mapped

    images = np.require(images, dtype=np.uint8, requirements=["C"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        pixels = torch.from_numpy(images)
    if isinstance(images, np.memmap):  # np.load(..., mmap_mode=...), as the cache reads
        mapped(pixels)
    return pixels, torch.from_numpy(np.array(labels, dtype=np.int64))  # labels: small, in memory
