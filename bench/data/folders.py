"""Image folders (one subfolder of images per class): their files and classes, the size they keep, and their
decoding, over every core, straight into the decode cache's files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.data.cache import open_array

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
