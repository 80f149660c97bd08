"""Decoding an image folder: images/s of cnnbench's decoder (bench.data.folders.decode_images) in one process against
every core, on the same files, alternating, the best of --repeats rounds each (other load only ever slows a round).

    python benchmarks/decode.py [--folder data/cifar10-jpeg/train] [--images 10000] [--repeats 3]

Writes the section "Decode: image folders" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import PIL
from record import cpu_name, record

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=str(ROOT / "data" / "cifar10-jpeg" / "train"))
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import tempfile

    from bench.data.cache import open_array
    from bench.data.folders import IMAGE_SUFFIXES, decode_images

    paths = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: args.images]
    from PIL import Image

    with Image.open(paths[0]) as im:
        width, height = im.size
    cores = os.cpu_count() or 1
    best = {1: 0.0, cores: 0.0}
    for _ in range(args.repeats):
        for workers in best:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:  # into a memory-mapped file, as the decode cache is made
                open_array(Path(tmp) / "x.npy", (len(paths), 3, height, width))
                decode_images(paths, width, height, Path(tmp) / "x.npy", workers=workers)
            best[workers] = max(best[workers], len(paths) / (time.perf_counter() - t0))
    shown = Path(args.folder).resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    lines = [
        "## Decode: image folders",
        "",
        f"`python benchmarks/decode.py --folder {shown} --images {len(paths)} --repeats {args.repeats}` on "
        f"{cpu_name()} ({cores} cores), Pillow {PIL.__version__}: {len(paths)} {width}x{height} files decoded (and "
        "converted to 8-bit RGB or gray) by bench.data.folders.decode_images, best of the rounds.",
        "",
        "| processes | images/s | against one |",
        "| --- | --- | --- |",
        f"| 1 | {best[1]:,.0f} | 1.00x |",
        f"| {cores} | {best[cores]:,.0f} | {best[cores] / best[1]:.2f}x |",
    ]
    section = "\n".join(lines) + "\n"
    record("Decode: image folders", section)
    print(section)


if __name__ == "__main__":
    main()
