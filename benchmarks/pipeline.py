"""cnnbench's data pipeline against the classic one, per training epoch.

The same model (the lab's baseline CNN), data (Fashion-MNIST training images, real, 28x28), batch size (64),
optimizer (SGD, momentum 0.9) and augmentation (random horizontal flip, random crop with 4 px padding):
  classic:  a torch Dataset that turns each uint8 image into a PIL image and applies torchvision's
            RandomHorizontalFlip, RandomCrop(padding=4), ToTensor, Normalize; a DataLoader with shuffling,
            num_workers 0 and 2 (both measured; the faster is the reference);
  cnnbench: bench.train.loop.train_trial: uint8 tensors in memory, batched augmentation and normalization on
            the training device (the epoch time it records, training pass only).
Training-pass wall time of one epoch over --images images, median of --repeats alternating rounds, torch
threads = cores. Writes the table to benchmarks/RESULTS.md (section "Data pipeline") and prints it.

    python benchmarks/pipeline.py [--images 12800] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from record import record


def classic_epoch(images, labels, model, workers: int, mean: float, std: float) -> float:
    from PIL import Image
    from torch.utils.data import DataLoader
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(28, padding=4),
            transforms.ToTensor(),
            transforms.Normalize((mean,), (std,)),
        ]
    )

    class PerImage(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):  # what torchvision's datasets do: one PIL image per sample
            return transform(Image.fromarray(images[i, 0].numpy(), mode="L")), int(labels[i])

    loader = DataLoader(PerImage(), batch_size=64, shuffle=True, num_workers=workers, persistent_workers=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def cnnbench_epoch(data, n: int, model) -> float:
    from bench.data.splits import Normalizer, Split, Splits
    from bench.train.loop import HParams, train_trial
    from bench.train.precision import resolve_speed

    splits = Splits(
        Split(data.train.images[:n], data.train.labels[:n]),
        Split(data.train.images[n : n + 64], data.train.labels[n : n + 64]),
        data.test,
    )
    hp = HParams(batch_size=64, lr=0.01, epochs=1, optimizer="sgd", augment="flip,crop")
    hp = resolve_speed(hp, model, data.input_shape, torch.device("cpu"))  # as a run's plan does
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_trial(model, splits, Normalizer(data), hp, Path(tmp) / "best.pt", data.num_classes)
        total = time.perf_counter() - start
    # The recorded epoch time includes validating 64 images; the final test evaluation is outside it.
    return min(result.history[0].time_s, total)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=12_800)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from bench.core.machine import cpu_model
    from bench.plugins.dataset_loading import load_dataset
    from bench.plugins.manager import get_registry

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    data = load_dataset("fashion-mnist")
    n = args.images
    images, labels = data.train.images[:n], data.train.labels[:n]
    arch = get_registry().get("cnn_baseline")

    def model():
        torch.manual_seed(0)
        return arch.build(data.input_shape, data.num_classes)

    rounds = []
    for _ in range(args.repeats):
        rounds.append(
            {
                "classic, 0 workers": classic_epoch(images, labels, model(), 0, data.mean[0], data.std[0]),
                f"classic, {cores} workers": classic_epoch(images, labels, model(), cores, data.mean[0], data.std[0]),
                "cnnbench": cnnbench_epoch(data, n, model()),
            }
        )
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    reference = min(v for k, v in medians.items() if k.startswith("classic"))
    ratio = reference / medians["cnnbench"]
    lines = [
        "## Data pipeline",
        "",
        f"One training epoch of the lab's baseline CNN over {n} Fashion-MNIST training images (28x28), batch 64, "
        f"SGD, flip + 4 px crop augmentation, on {cores} cores of {cpu_model()}; torch {torch.__version__}, "
        f"{cores} torch threads. Training-pass wall time, median of {args.repeats} alternating rounds.",
        "",
        "| pipeline | epoch (s) | images/s | rounds (s) |",
        "| --- | --- | --- | --- |",
    ]
    for k, v in medians.items():
        lines.append(f"| {k} | {v:.2f} | {n / v:.0f} | {', '.join(f'{r[k]:.2f}' for r in rounds)} |")
    lines += ["", f"cnnbench is {ratio:.2f}x faster per epoch than the faster classic setting (target: 2x).", ""]
    table = "\n".join(lines)
    record("Data pipeline", table)
    print(table)


if __name__ == "__main__":
    main()
