"""The torchvision zoo at CIFAR-10 size: parameters, forward MFLOPs and ONNX Runtime CPU latency at batch 1 of
every model of the built-in `torchvision` plugin with its default (`small`) stem, beside the lab's nets, so that a
model can be chosen for a latency budget before anything is trained.

Models: 3x32x32 input, 10 classes, seeded random weights (latency does not depend on the weights' values),
exported by cnnbench's exporter (`bench.deploy.export.to_onnx`, the dynamo exporter, TorchScript where dynamo fails).
Latency: cnnbench's own measurement (`bench.deploy.timing.measure_file`, its onnxruntime engine): 10 warm-up runs,
then at least --runs timed runs and --min-time seconds, p50 by numpy; graph optimization auto (the faster of
'extended' and 'all' in a probe); intra-op threads = every core. FLOPs: torch's flop counter (a multiply-add = 2).

    python benchmarks/zoo.py [--runs 100] [--min-time 1]

Writes the section "Model zoo" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch
from record import cpu_name, record

from bench.deploy.export import to_onnx
from bench.deploy.timing import measure_file
from bench.models.stats import count_flops, count_parameters
from bench.plugins.manager import get_registry
from bench.runtime.protocol import BenchSettings

LAB = ["cnn_baseline", "cnn_vgg", "resnet", "fast_cnn"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--min-time", type=float, default=1.0)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    settings = BenchSettings(
        batch_sizes=(1,),
        providers=("cpu",),
        warmup=10,
        min_runs=args.runs,
        min_time=args.min_time,
        bench_threads=threads,
        graph_optimization="auto",
    )
    registry = get_registry()
    names = LAB + sorted(a.name for a in registry.by_plugin("torchvision"))
    images = torch.randn(64, 3, 32, 32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            arch = registry.get(name)
            variant = arch.variants("default")[0]
            torch.manual_seed(0)
            model = arch.build((3, 32, 32), 10, variant).eval()
            proto, exporter = to_onnx(model, (3, 32, 32), {})
            path = Path(tmp) / f"{name}.onnx"
            path.write_bytes(proto.SerializeToString())
            m = measure_file(path, images, 1, "cpu", settings, threads)
            p50 = m.summary()["p50_ms"] if m.status == "ok" else None
            rows.append((name, variant, count_parameters(model), count_flops(model, (3, 32, 32)), p50, exporter))
            print(rows[-1], flush=True)
    lines = [
        "## Model zoo",
        "",
        f"`python benchmarks/zoo.py --runs {args.runs} --min-time {args.min_time}`: {cpu_name()}, {threads} "
        f"threads, torch {torch.__version__}, onnxruntime {ort.__version__}. 3x32x32 input, 10 classes, default "
        "variant (the torchvision models with the `small` stem); ONNX Runtime CPU latency at batch 1, p50 of at "
        f"least {args.runs} runs and {args.min_time} s after 10 warm-up runs, graph optimization auto.",
        "",
        "| architecture | params | MFLOPs | ORT CPU p50 ms (batch 1) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, _variant, params, flops, p50, _exporter in rows:
        latency = f"{p50:.3f}" if p50 is not None else "failed"
        lines.append(f"| `{name}` | {params / 1e6:.2f}M | {flops / 1e6:,.1f} | {latency} |")
    section = "\n".join(lines) + "\n"
    record("Model zoo", section)
    print(section)


if __name__ == "__main__":
    main()
