"""cnnbench on a shared machine: quiet, then beside competitors that each run 2-thread torch work.

For each setting of the OpenMP thread pool (how long idle worker threads spin before they sleep, and how many torch
threads a run uses), in fresh processes:
  - the default sweep, `bench run --plugin cnn_dropout` (README's Quick start: training, export, int8/fp16, the
    benchmark), its wall time, and its digits winner's PyTorch eager p50/p99 at batch 1 as the run itself stored it;
  - one latency measurement of the lab's VGG-like net (`cnn_vgg`, seeded random weights), PyTorch eager and ONNX
    Runtime at batch 1 and 64 (bench.runtime.protocol, 1 s per figure).
Quiet first (nothing else running), then the same beside `--competitors` processes (default 2) that each loop 2-thread
torch matrix products: what a colleague's training job or a CI neighbour looks like. Busy loops alone do not show the
collapse this measures (README's issue 26: 11.4x). The competitors are started and stopped here. Figures: ratios
loaded/quiet per setting, one run, one machine; written to benchmarks/RESULTS.md (section "Under load").

    python benchmarks/load.py [--settings libgomp,cnnbench,spin10k,spin1k,passive,threads1] [--competitors 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import cpu_name, record

ROOT = Path(__file__).resolve().parent.parent
BENCH = str(Path(sys.executable).parent / "bench")
# The OpenMP settings compared: environment of the measured processes (OMP_* and GOMP_* are read once, when torch
# loads its OpenMP runtime; KMP_BLOCKTIME is Intel OpenMP's equivalent, for builds that use it).
SETTINGS = {
    "cnnbench": {},  # nothing set: cnnbench's own default (bench/core/threads.py)
    "libgomp": {"GOMP_SPINCOUNT": "300000", "KMP_BLOCKTIME": "200"},  # libgomp's and iomp's defaults, pinned
    "spin10k": {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "0"},  # spin about 0.2 ms, then sleep
    "spin1k": {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"},  # spin about 20 us, then sleep
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},  # sleep at once
    "threads1": {"GOMP_SPINCOUNT": "300000", "BENCH_THREADS_ARG": "1"},  # one torch thread, no barrier to wait at
}
# The runs recorded before cnnbench chose its default called libgomp's own "default".
ALIASES = {"default": "libgomp"}
COMPETITOR = """
import torch
torch.set_num_threads(2)
a, b = torch.randn(512, 512), torch.randn(512, 512)
while True:
    a @ b
"""
LATENCY = """
import json, sys, tempfile
import torch
from bench.deploy.export import to_onnx
from bench.runtime.protocol import BenchSettings, benchmark
from bench.plugins import get_registry
threads = int(sys.argv[1])
torch.set_num_threads(threads)
torch.manual_seed(0)
arch = get_registry().get("cnn_vgg")
model = arch.build((3, 32, 32), 10, arch.variants()[0]).eval()
images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
with tempfile.TemporaryDirectory() as tmp:
    path = tmp + "/vgg.onnx"
    open(path, "wb").write(to_onnx(model, (3, 32, 32), {})[0].SerializeToString())
    settings = BenchSettings(batch_sizes=(1, 64), providers=("cpu",), min_time=1.0, bench_threads=threads)
    measured = benchmark(model, path, images, settings)
    rows = [{"engine": m.engine, "batch": m.batch_size, **m.summary()} for m in measured]
print(json.dumps(rows))
"""


def env_of(setting: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update({k: v for k, v in SETTINGS[setting].items() if k != "BENCH_THREADS_ARG"})
    return env  # any of these set: cnnbench's own default (bench.core.threads) leaves them alone


def threads_of(setting: str) -> int:
    return int(SETTINGS[setting].get("BENCH_THREADS_ARG", os.cpu_count() or 1))


def sweep(setting: str) -> dict:
    """The default sweep in a fresh process: wall time, and the winner's stored eager latency at batch 1."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.db"
        args = [BENCH, "run", "--plugin", "cnn_dropout", "--store", str(store), "-q"]
        if "BENCH_THREADS_ARG" in SETTINGS[setting]:
            args += ["--threads", SETTINGS[setting]["BENCH_THREADS_ARG"]]
        start = time.perf_counter()
        subprocess.run(args, env=env_of(setting), cwd=tmp, check=True, capture_output=True)
        wall = time.perf_counter() - start
        out = subprocess.run(
            [BENCH, "report", "--json", "--measurements", "--store", str(store)],
            env=env_of(setting),
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    eager = [m for m in json.loads(out) if m["engine"] == "torch" and m["batch_size"] == 1 and m["status"] == "ok"]
    return {
        "wall_s": wall,
        "eager_p50_ms": eager[0]["p50_ms"],
        "eager_p99_ms": eager[0]["p99_ms"],
        "eager_noisy": eager[0].get("noisy"),
    }


def latency(setting: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-c", LATENCY, str(threads_of(setting))],
        env=env_of(setting),
        check=True,
        capture_output=True,
        text=True,
        cwd="/tmp",
    ).stdout
    return json.loads(out)


def measure(settings: list[str]) -> dict:
    return {s: {"sweep": sweep(s), "latency": latency(s)} for s in settings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="libgomp,cnnbench", help="comma-separated: " + ", ".join(SETTINGS))
    parser.add_argument("--competitors", type=int, default=2, help="processes of 2-thread torch work")
    args = parser.parse_args()
    settings = [ALIASES.get(s.strip(), s.strip()) for s in args.settings.split(",")]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]} (one of {', '.join(SETTINGS)})")
    quiet = measure(settings)
    print("quiet:", json.dumps(quiet), flush=True)
    competitors = [subprocess.Popen([sys.executable, "-c", COMPETITOR]) for _ in range(args.competitors)]
    try:
        time.sleep(3)
        load_before = os.getloadavg()[0]
        loaded = measure(settings)
        load_after = os.getloadavg()[0]
    finally:
        for p in competitors:
            p.kill()
            p.wait()
    print("loaded:", json.dumps(loaded), flush=True)
    write(settings, quiet, loaded, args.competitors, load_before, load_after)


def write(settings, quiet, loaded, competitors, load_before, load_after) -> None:
    import onnxruntime
    import torch

    cores = os.cpu_count()
    rows = []
    for s in settings:
        q, ld = quiet[s], loaded[s]
        row = [
            f"`{s}`",
            f"{q['sweep']['wall_s']:.1f}",
            f"{ld['sweep']['wall_s']:.1f}",
            f"**{ld['sweep']['wall_s'] / q['sweep']['wall_s']:.1f}x**",
            f"{q['sweep']['eager_p99_ms']:.2f} / {ld['sweep']['eager_p99_ms']:.2f}"
            + (" (noisy)" if ld["sweep"].get("eager_noisy") else ""),
            f"{ld['sweep']['eager_p99_ms'] / q['sweep']['eager_p99_ms']:.0f}x",
        ]
        for engine in ("torch", "onnxruntime"):
            for batch in (1, 64):
                qm = next(m for m in q["latency"] if m["engine"] == engine and m["batch"] == batch)
                lm = next(m for m in ld["latency"] if m["engine"] == engine and m["batch"] == batch)
                row.append(f"{qm['p50_ms']:.2f} / {lm['p50_ms']:.2f} ({lm['p50_ms'] / qm['p50_ms']:.1f}x)")
        rows.append("| " + " | ".join(row) + " |")
    described = "; ".join(
        f"`{s}`: " + (", ".join(f"{k}={v}" for k, v in SETTINGS[s].items()) or "nothing set (cnnbench's default)")
        for s in settings
    )
    section = "\n".join(
        [
            "## Under load",
            "",
            f"{cores} cores of {cpu_name()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}. "
            f"Command: `python benchmarks/load.py --settings {','.join(settings)} --competitors {competitors}`. Each "
            f"setting in fresh processes, quiet first, then beside {competitors} processes each looping 2-thread "
            f"torch matrix products (1-minute load average {load_before:.1f} as the loaded half started, "
            f"{load_after:.1f} at its end). Sweep: `bench run --plugin cnn_dropout` (training, export, int8/fp16, "
            "benchmark), wall time in s, and the digits winner's PyTorch eager p99 at batch 1 as that run stored it "
            "(ms). cnn_vgg: seeded random "
            "weights, bench.runtime.protocol, p50 in ms at batch 1 and 64, quiet / loaded. Settings: "
            + described
            + ". "
            f"With {competitors} competitors of 2 threads beside a 2-thread run, the run's fair share of the "
            f"{cores} cores is about a third: 3x is proportional slowing.",
            "",
            "| setting | sweep quiet (s) | sweep loaded (s) | loaded / quiet | eager p99 b1 quiet / loaded (ms) | "
            "p99 ratio | cnn_vgg eager b1 | cnn_vgg eager b64 | cnn_vgg ORT b1 | cnn_vgg ORT b64 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    record("Under load", section)
    print(section)


if __name__ == "__main__":
    main()
