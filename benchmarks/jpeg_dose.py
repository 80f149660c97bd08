"""A second dose of JPEG loss: re-encode an image folder (the CIFAR-10 JPEG copy) at a lower quality, into a copy
with the same layout, and measure how much each image changed (PSNR against the image it came from).

The JPEG archive (../shared/data/cifar10-jpeg.tar.gz) is CIFAR-10 at quality 75, 27-33 dB PSNR against the original
pixels (its README). The original pixels are not at hand, so the cost of that loss cannot be measured directly;
what can be is the cost of a second, comparable loss: train the same config on this copy and on the archive, and
the difference is what one more such dose of JPEG loss costs the net. The PSNR of the dose is printed so that it
can be set beside the archive's 27-33 dB.

    python benchmarks/jpeg_dose.py --src data/cifar10-jpeg --quality 50 [--out data/cifar10-q50] [--sample 2000]
    bench run --config configs/rob313.toml --dataset imagefolder:data/cifar10-q50

Writes the section "JPEG dose: quality Q" of benchmarks/RESULTS.md (the PSNR figures; the training runs are written
beside them by hand, each with its run id) and prints it.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image
from record import cpu_name, record

ROOT = Path(__file__).resolve().parent.parent


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB (8-bit peak); infinite for identical images."""
    mse = float(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(ROOT / "data" / "cifar10-jpeg"), help="an image folder of .jpg files")
    parser.add_argument("--quality", type=int, required=True, help="JPEG quality of the copy (1-95)")
    parser.add_argument("--out", default=None, help="the copy's folder (default: data/cifar10-qQUALITY)")
    parser.add_argument("--sample", type=int, default=2000, help="images whose PSNR is measured (seeded draw)")
    args = parser.parse_args()
    src = Path(args.src)
    out = Path(args.out) if args.out else ROOT / "data" / f"cifar10-q{args.quality}"
    files = sorted(src.rglob("*.jpg"))
    if not files:
        parser.error(f"no .jpg files under {src}")
    if not 1 <= args.quality <= 95:
        parser.error(f"--quality must be between 1 and 95, not {args.quality}")
    for f in files:
        target = out / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(f).convert("RGB").save(target, "JPEG", quality=args.quality)
    sample = random.Random(0).sample(files, min(args.sample, len(files)))
    values = np.array(
        [psnr(Image.open(f).convert("RGB"), Image.open(out / f.relative_to(src)).convert("RGB")) for f in sample]
    )
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    rel = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    section = "\n".join(
        [
            f"## JPEG dose: quality {args.quality}",
            "",
            f"`python benchmarks/jpeg_dose.py --src {args.src} --quality {args.quality}`: all {len(files):,} images of "
            f"`{args.src}` re-encoded by PIL at quality {args.quality} into `{rel}` (same layout). PSNR of the copy "
            f"against its source on {len(sample):,} images drawn with seed 0: **median {p50:.1f} dB**, p10 {p10:.1f}, "
            f"p90 {p90:.1f} (the archive against the original pixels: 27-33 dB, ../shared/data/README.md). "
            f"Machine: {cpu_name()}.",
        ]
    )
    record(f"JPEG dose: quality {args.quality}", section)
    print(section)


if __name__ == "__main__":
    main()
