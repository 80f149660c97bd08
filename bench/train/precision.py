"""The fastest training mode that keeps accuracy, chosen per model and machine before a run is recorded: channels_last
(NHWC) where the model accepts it, bf16 autocast where a probe measured it faster and the model is big enough
(benchmarks/precision.py). bench.sweep.plan resolves every trial's 'auto' with it, once."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.files import atomic_write
from bench.core.machine import cpu_features, cpu_model
from bench.core.status import Precision
from bench.data.cache import cache_dir
from bench.models.stats import count_flops
from bench.options.hparams import HParams

# From this many forward FLOPs per image, bf16 autocast trains faster than fp32 where bf16 is fast; below it
# the casts cost more than they save (benchmarks/precision.py, RESULTS.md).
BF16_MIN_FLOPS = 5e6
BF16_PROBE_SPEEDUP = 1.1  # bf16 autocast must train the probe at least this much faster than fp32
_probed: dict[str, float] = {}


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast trains faster than fp32 on ``device``: measured, not read from the CPU's flags. Among
    CPUs with bf16 instructions (AVX-512 bf16 or AMX) it varies: AMX trained 1.7-2.3x faster
    (benchmarks/precision.py); AVX-512 bf16 without AMX trained the VGG-like net 1.4-1.6x slower than fp32 on a
    Xeon and 2.1x faster on an AMD EPYC (README, "CIFAR-10"). So a CPU with either runs ``bf16_speedup`` once,
    cached per machine; GPUs are not measured yet and keep fp32."""
    if device.type != "cpu" or not {"amx_bf16", "avx512_bf16"} & set(cpu_features()):
        return False
    return bf16_speedup() >= BF16_PROBE_SPEEDUP


def bf16_speedup() -> float:
    """fp32 time over bf16-autocast time of training steps of a small conv net shaped like the lab's first
    blocks (3x3 convolutions of 64, 64 and 128 maps on 32x32 and 16x16 images with batch norm, batch 64,
    channels_last, SGD), 5 steps of each after two of warm-up, alternating, medians; a second or two. Cached in
    this process and in ``probe.json`` of the cache folder (BENCH_CACHE), keyed by CPU, flags, torch version
    and thread count."""
    key = f"{cpu_model()}|{','.join(cpu_features())}|torch {torch.__version__}|{torch.get_num_threads()} threads"
    if key in _probed:
        return _probed[key]
    path = cache_dir() / "probe.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    cached = cached if isinstance(cached, dict) else {}
    if not isinstance(cached.get(key), int | float):
        cached[key] = _measure_bf16_speedup()
        with contextlib.suppress(OSError):  # a read-only cache folder: measured again by the next process
            atomic_write(path, json.dumps(cached, indent=1).encode())
    _probed[key] = float(cached[key])
    return _probed[key]


def _measure_bf16_speedup(steps: int = 5) -> float:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,), generator=generator)
    net = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.BatchNorm2d(128),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    )
    net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    times: dict[bool, list[float]] = {False: [], True: []}
    for step in range(steps + 2):
        for bf16 in (False, True):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= 2:  # the first two of each: warm-up (kernels chosen and built)
                times[bf16].append(time.perf_counter() - t0)
    return round(statistics.median(times[False]) / statistics.median(times[True]), 3)


def channels_last_works(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> bool:
    """Whether ``model`` runs on NHWC inputs (a ``.view`` after a convolution, for one, does not)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.to(memory_format=torch.channels_last)
            x = torch.zeros(2, *input_shape, device=device).contiguous(memory_format=torch.channels_last)
            model(x)
        return True
    except RuntimeError:
        return False
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)


def resolve_speed(hp: HParams, model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> HParams:
    """``hp`` with 'auto' precision and layout replaced by what trains fastest here at the same accuracy
    (benchmarks/precision.py): channels_last whenever the model accepts it; bf16 autocast where
    ``bf16_is_fast`` and the model does at least BF16_MIN_FLOPS forward FLOPs per image."""
    changes: dict = {}
    if hp.channels_last is None:
        changes["channels_last"] = channels_last_works(model, input_shape, device)
    if hp.precision == "auto":
        fast = count_flops(model, input_shape) >= BF16_MIN_FLOPS and bf16_is_fast(device)  # the cheap test first
        changes["precision"] = Precision.BF16 if fast else Precision.FP32
    return replace(hp, **changes) if changes else hp
