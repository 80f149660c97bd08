"""Training on an image folder larger than the memory the training process may use.

    python benchmarks/larger_than_memory.py [--source data/cifar10-jpeg] [--size 128] [--limit-gb 1.5]
                                            [--epochs 2] [--rounds 2] [--work /tmp/cnnbench-ltm]

1. Builds an image folder (links to the CIFAR-10 JPEG copy's 60,000 files, train/ and test/; without the copy,
   generated JPEGs) whose images, decoded at --size px, take more than the limit (60,000 x 3 x 128 x 128 = 2.9 GB
   against 1.5 GB).
2. Decodes its files (bench.data.folders.decode_images) over every core and in one process: images/s of each; then
   loads it as `bench run` does, which builds cnnbench's cache.
3. Trains the same small, data-bound net (strided convolutions: the pixels' path is a large share of a step) for
   --epochs epochs with cnnbench's trainer, in child processes:
   - without a limit (the cache fits the page cache), in one process, alternating --rounds times: the dataset as
     cnnbench loads it (its pixels read from the memory-mapped cache a batch at a time) and the same dataset copied
     into memory (Dataset.in_memory, the in-memory path); best images/s of each;
   - under the limit, each in its own process: a memory cgroup (v2 or v1, where this process may make one: it counts
     the page cache too, so the cache's pages must come from the disk) or else RLIMIT_DATA (anonymous memory only).
     The cache files' pages are dropped from the page cache (posix_fadvise) before each, so it reads from the disk.
   Each child reports its peak anonymous memory (RssAnon sampled every 20 ms; the cgroup's own peak where it keeps
   one), its training images/s by epoch (training steps only, bench.train.loop's elapsed_s) and how it ended.

Writes the section "Larger than memory: the decode cache" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _status(field: str, pid: str = "self") -> int:
    """A field of /proc/PID/status in bytes (0 where there is none)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --- the folder ---------------------------------------------------------------------------------------


def build_folder(source: Path, folder: Path, images: int) -> str:
    """An image folder with train/ and test/ (one subfolder per class) of ``images`` files in all: links to the JPEG
    copy's files, or generated JPEGs when there is none. Says what it is."""
    import numpy as np
    from PIL import Image

    if folder.is_dir() and (folder / "ready").is_file():
        return (folder / "ready").read_text()
    shutil.rmtree(folder, ignore_errors=True)
    if (source / "train").is_dir() and (source / "test").is_dir():
        files = sorted((source / "train").rglob("*.jpg")) + sorted((source / "test").rglob("*.jpg"))
        step = max(1, len(files) // images)
        chosen = files[::step][:images]
        for f in chosen:
            target = folder / f.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f.resolve())
        shown = source.resolve().relative_to(ROOT) if source.resolve().is_relative_to(ROOT) else source
        what = f"{len(chosen)} links to the CIFAR-10 JPEG copy ({shown}; 32x32 JPEGs)"
    else:
        rng = np.random.default_rng(0)
        for i in range(images):
            part, label = ("test" if i % 6 == 5 else "train"), i % 10
            target = folder / part / f"class{label}" / f"{i:06d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            base = np.full((32, 32, 3), 25 * label, np.uint8)
            Image.fromarray(base + rng.integers(0, 30, (32, 32, 3), dtype=np.uint8)).save(target, quality=90)
        what = f"{images} generated 32x32 JPEGs (no CIFAR-10 copy at {source})"
    (folder / "ready").write_text(what)
    return what


def decode_rates(folder: Path, size: int, scratch: Path) -> dict[int, float]:
    """images/s of decoding the folder's files at size x size over every core and in one process."""
    from bench.data.cache import open_array
    from bench.data.folders import decode_images, image_files

    files = image_files(folder / "train")[0] + image_files(folder / "test")[0]
    rates = {}
    for workers in (os.cpu_count() or 1, 1):
        out = scratch / f"decode-{workers}.npy"
        open_array(out, (len(files), 3, size, size))
        t0 = time.perf_counter()
        decode_images(files, size, size, out, workers=workers)
        rates[workers] = len(files) / (time.perf_counter() - t0)
        out.unlink()
    return rates


# --- the limit ----------------------------------------------------------------------------------------


def make_cgroup(limit: int) -> tuple[Path, str] | None:
    """A memory cgroup limited to ``limit`` bytes (page cache included), v2 or v1, where this process may make one:
    (the file to write a pid into, its description). None elsewhere."""
    name = f"cnnbench-ltm-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup")
    candidates = [
        (v2 / name, "memory.max", "memory.swap.max", "cgroup v2 memory.max"),
        (v2 / "memory" / name, "memory.limit_in_bytes", None, "cgroup v1 memory.limit_in_bytes"),
    ]
    for group, limit_file, swap_file, what in candidates:
        if not (group.parent / limit_file).exists() and not (group.parent / "cgroup.controllers").exists():
            continue
        try:
            group.mkdir(exist_ok=True)
            (group / limit_file).write_text(str(limit))
            if swap_file and (group / swap_file).exists():
                (group / swap_file).write_text("0")
            return group, what
        except OSError:
            remove_group(group)
    return None


def remove_group(group: Path) -> None:
    with contextlib.suppress(OSError):  # a cgroup is removed empty, by rmdir
        group.rmdir()


def drop_pages(folder: Path) -> None:
    """Drop the cache files' clean pages from the page cache, so that the next reader reads the disk."""
    for path in folder.rglob("*.npy"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_child(args, mode: str, limit: int | None, group: Path | None) -> dict:
    """Train in a child process (this script with --child MODE), in ``group`` or under RLIMIT_DATA ``limit``."""
    command = [sys.executable, __file__, "--child", mode, "--work", str(args.work), "--size", str(args.size)]
    command += ["--epochs", str(args.epochs), "--rounds", str(args.rounds)]

    def enter():
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))
        elif limit is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=enter, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}: {last}"
        report.setdefault("ended", how)
    report.setdefault("ended", "trained")
    if group is not None:
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            if (group / name).exists():
                report["group_peak"] = int((group / name).read_text())
    return report


# --- the child: load, (copy,) train ------------------------------------------------------------------------


def train_rates(data, epochs: int, seed: int = 0) -> tuple[list[float], int]:
    """Images/s of each epoch's training steps (bench.train.loop's elapsed_s) of the small net on ``data``."""
    import torch
    from torch import nn

    from bench.data.splits import Normalizer
    from bench.train.loop import HParams, train_trial

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 4, stride=4),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, data.num_classes),
    )
    hp = HParams(
        epochs=epochs, batch_size=128, optimizer="sgd", lr=0.01, val_ratio=0.02, precision="fp32", channels_last=False
    )
    splits = data.split(hp.val_ratio, hp.seed)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_trial(model, splits, Normalizer(data), hp, Path(tmp) / "best.pt", data.num_classes)
    rates, previous = [], 0.0
    for epoch in result.history:
        rates.append(len(splits.train) / (epoch.elapsed_s - previous))
        previous = epoch.elapsed_s
    return rates, len(splits.train)


def child(args) -> None:
    import torch

    from bench.plugins.dataset_loading import load_dataset

    peak = {"anon": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], _status("RssAnon"))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    report = {"mode": args.child}
    print(json.dumps(report), flush=True)  # what the parent reports if this process is killed
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    data = load_dataset(f"imagefolder:{args.work / 'folder'}", image_size=args.size, cache_dir=args.work / "cache")
    report["decoded_bytes"] = data.train.nbytes + data.test.nbytes
    if args.child == "compare":  # the two paths in one process, alternating, best of --rounds each
        loaded = data.in_memory()
        report["load_s"] = time.perf_counter() - t0
        best = {"cache": [0.0] * args.epochs, "memory": [0.0] * args.epochs}
        for round_ in range(args.rounds):  # each round in the other order: neither always goes first
            for mode, d in (("cache", data), ("memory", loaded))[:: 1 if round_ % 2 == 0 else -1]:
                rates, report["train_images"] = train_rates(d, args.epochs)
                best[mode] = [max(a, b) for a, b in zip(best[mode], rates, strict=True)]
        report["images_per_s"] = best
    else:
        if args.child == "memory":
            data = data.in_memory()
        report["load_s"] = time.perf_counter() - t0
        report["images_per_s"], report["train_images"] = train_rates(data, args.epochs)
    stop.set()
    report["peak_anon"] = max(peak["anon"], _status("RssAnon"))
    report["ended"] = "trained"
    print(json.dumps(report), flush=True)


# --- the report ------------------------------------------------------------------------------------------


def gb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT / "data" / "cifar10-jpeg")
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--limit-gb", type=float, default=1.5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cnnbench-ltm"))
    parser.add_argument("--child", choices=["cache", "memory", "compare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from record import cpu_name, record

    from bench.core.machine import available_memory
    from bench.plugins.dataset_loading import load_dataset

    args.work.mkdir(parents=True, exist_ok=True)
    what = build_folder(args.source, args.work / "folder", args.images)
    shutil.rmtree(args.work / "cache", ignore_errors=True)
    rates = decode_rates(args.work / "folder", args.size, args.work)
    t0 = time.perf_counter()
    load_dataset(f"imagefolder:{args.work / 'folder'}", image_size=args.size, cache_dir=args.work / "cache")
    build_s = time.perf_counter() - t0
    limit = int(args.limit_gb * 1e9)
    compare = run_child(args, "compare", None, None)
    print("compare:", compare, flush=True)
    made = make_cgroup(limit)
    group, how = made if made else (None, "RLIMIT_DATA (anonymous memory; the page cache is not limited)")
    limited = {}
    try:
        for mode in ("cache", "memory"):
            drop_pages(args.work / "cache")
            limited[mode] = run_child(args, mode, limit, group)
            print(mode, "limited:", limited[mode], flush=True)
    finally:
        if group is not None:
            remove_group(group)
    decoded = compare.get("decoded_bytes") or limited["cache"].get("decoded_bytes")
    cores = os.cpu_count() or 1
    command = (
        f"python benchmarks/larger_than_memory.py --size {args.size} --limit-gb {args.limit_gb} "
        f"--epochs {args.epochs} --rounds {args.rounds}"
    )
    speeds = lambda values: " / ".join(f"{x:,.0f}" for x in values) or "-"  # noqa: E731
    lines = [
        "## Larger than memory: the decode cache",
        "",
        f"`{command}` on {cpu_name()} ({cores} cores, {available_memory() / 1e9:.0f} GB available), torch's "
        f"{cores} threads. The folder: {what}, decoded at {args.size}x{args.size} (bilinear): "
        f"**{gb(decoded)} decoded**. The net: two strided convolutions (4x4/4, 3x3/2), a pooling and a linear layer "
        f"(data-bound: the pixels' path is a large share of a step), batch 128, SGD, {args.epochs} epochs on 98% of "
        "train/ (2% validation), cnnbench's trainer; images/s of the training steps, by epoch.",
        "",
        "Decoding into the cache (bench.data.folders.decode_images; each worker writes its images into the "
        f"memory-mapped file): **{rates[cores]:,.0f} images/s over {cores} processes, {rates[1]:,.0f} in one process** "
        f"({rates[cores] / rates[1]:.2f}x); the dataset's first load (decoded, written, mean/std): {build_s:.1f} s.",
        "",
    ]
    best = compare.get("images_per_s") or {}
    if best:
        ratio = " / ".join(f"{c / m:.2f}x" for c, m in zip(best["cache"], best["memory"], strict=True))
        lines += [
            f"**Cache against memory, the cache in the page cache** (one process, the two alternating, best of "
            f"{args.rounds} rounds each): from the cache (memory map) {speeds(best['cache'])} images/s, from memory "
            f"(a copy, Dataset.in_memory) {speeds(best['memory'])}: **{ratio}**.",
            "",
        ]
    else:
        lines += [f"Cache against memory: {compare['ended']}.", ""]
    lines += [
        f"**Under a memory limit of {gb(limit)}** ({how}; the cache files' pages dropped from the page cache before "
        "each run, so they are read from the disk). Peak anonymous memory: RssAnon sampled every 20 ms in the "
        "training process.",
        "",
        "| pixels read from | load s | images/s by epoch | peak anonymous memory | the limit's peak | ended |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mode, r in limited.items():
        source = "the cache (memory map)" if mode == "cache" else "memory (a copy, Dataset.in_memory)"
        load = f"{r['load_s']:.1f}" if "load_s" in r else "-"
        lines.append(
            f"| {source} | {load} | {speeds(r.get('images_per_s', []))} | "
            f"{gb(r.get('peak_anon'))} | {gb(r.get('group_peak'))} | {r['ended']} |"
        )
    section = "\n".join(lines) + "\n"
    record("Larger than memory: the decode cache", section)
    print(section)


if __name__ == "__main__":
    main()
