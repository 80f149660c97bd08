"""Inference: ONNX Runtime against PyTorch eager, at batch 1 and 64, with achieved GFLOP/s against the
machine's measured peak, and ORT's graph optimization levels and thread counts tried.

Peak: fp32 GFLOP/s of large operations on every core, the best of a 4096^3 matrix product and a 3x3
convolution (32x256x32x32 input, 256 filters), each run by torch and by onnxruntime; each the fastest of 5
timed runs after a warm-up run (other work on a shared machine only adds time). Nets: the lab's nets at
CIFAR-10 size (3x32x32, 10 classes) with seeded random weights (latency does not depend on the weights'
values), exported by cnnbench's exporter. 'ORT' is what `bench benchmark` measures by default (graph
optimization auto: the faster of 'extended' and 'all' in a probe); every level x thread count is also timed.
Latency: cnnbench's own measurement (bench.runtime.protocol: warm-up, then at least --runs timed runs and 1 s, p50
by numpy), the same input batch for both engines; PyTorch eager in eval + inference_mode with every core.
FLOPs per image: torch's flop counter (convolutions and matrix products, a multiply-add = 2). Achieved
GFLOP/s = FLOPs x batch / p50.

Int8 (section "Inference: int8"): each net's static int8 variant made by cnnbench's own quantization
(bench.deploy.quantize: onnxruntime's quant_pre_process + quantize_static, QDQ, per-channel int8 weights, int8
activations calibrated by MinMax on the 64 input images), timed like fp32 by bench.runtime.protocol with graph
optimization 'all' in alternating rounds (--rounds; median of the rounds' p50). Speed only: the weights are
random, so accuracy is measured on trained models (`bench quantize`, benchmarks/int8.py).

Batch-size curves (section "Inference: batch-size curves"): bench.runtime.measure.benchmark with --batch-curve
settings (batch 1 to 256, powers of two, at least 10 runs and 0.5 s each, stopping after a batch over 2 s):
images/s of ORT fp32, ORT int8 and PyTorch eager, and the smallest batch that no larger batch beats by more
than 10% in images/s (bench.results.deployed.saturation).

    python benchmarks/inference.py [--runs 100] [--rounds 3] [--sections inference,int8,curves]

Writes the sections "Inference", "Inference: int8" and "Inference: batch-size curves" of
benchmarks/RESULTS.md and prints them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from record import record

NETS = [("cnn_baseline", 0), ("cnn_dropout", 1), ("cnn_dropout", 3), ("cnn_vgg", 0)]
LEVELS = ("disable", "basic", "extended", "all")


def _best_time(fn, runs: int = 5) -> float:
    """The fastest of ``runs`` timed calls after one warm-up call: other work on a shared machine only ever
    adds time, so the fastest call is the closest to what the hardware does."""
    fn()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _ort_model(nodes, inputs, outputs, initializers, path: Path) -> None:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "peak", inputs, outputs, initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(path))


def peak(threads: int) -> dict[str, float]:
    """GFLOP/s of large fp32 operations, by torch and by onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper

    from bench.runtime import onnxrt

    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = {f"torch.mm {n}x{n}x{n}": 2 * n**3 / _best_time(lambda: torch.mm(a, b)) / 1e9}
    x, w = torch.randn(32, 256, 32, 32), torch.randn(256, 256, 3, 3)
    conv_flops = 2 * 32 * 256 * 32 * 32 * 256 * 9
    conv = "conv2d 32x256x32x32, 256 filters 3x3"
    with torch.inference_mode():
        out[f"torch {conv}"] = conv_flops / _best_time(lambda: torch.nn.functional.conv2d(x, w, padding=1)) / 1e9
    f32 = TensorProto.FLOAT
    with tempfile.TemporaryDirectory() as tmp:
        mm, cv = Path(tmp) / "mm.onnx", Path(tmp) / "conv.onnx"
        _ort_model(
            [helper.make_node("MatMul", ["A", "B"], ["C"])],
            [helper.make_tensor_value_info("A", f32, [n, n])],
            [helper.make_tensor_value_info("C", f32, [n, n])],
            [numpy_helper.from_array(b.numpy(), "B")],
            mm,
        )
        _ort_model(
            [helper.make_node("Conv", ["X", "W"], ["Y"], pads=[1, 1, 1, 1])],
            [helper.make_tensor_value_info("X", f32, list(x.shape))],
            [helper.make_tensor_value_info("Y", f32, list(x.shape))],
            [numpy_helper.from_array(w.numpy(), "W")],
            cv,
        )
        sess = onnxrt.ort_session(mm, "cpu", threads)
        feed = {"A": a.numpy()}
        out[f"onnxruntime MatMul {n}x{n}x{n}"] = 2 * n**3 / _best_time(lambda: sess.run(None, feed)) / 1e9
        sess = onnxrt.ort_session(cv, "cpu", threads)
        feed = {"X": x.numpy()}
        out[f"onnxruntime {conv}"] = conv_flops / _best_time(lambda: sess.run(None, feed)) / 1e9
    return out


def nominal_peak(cores: int) -> tuple[float, float] | None:
    """(GHz, GFLOP/s) if every core ran two AVX-512 FMA units (32 fp32 FLOPs each per cycle) at the listed clock."""
    try:
        with open("/proc/cpuinfo") as f:
            mhz = next(float(line.split(":")[1]) for line in f if line.startswith("cpu MHz"))
    except (OSError, StopIteration, ValueError):
        return None
    return mhz / 1000, cores * mhz / 1000 * 64


def _nets(tmp: Path):
    """(label, model, MFLOPs per image, fp32 ONNX path) of NETS at CIFAR-10 size, seeded random weights."""
    from bench.deploy.export import to_onnx
    from bench.models.stats import count_flops
    from bench.plugins.manager import get_registry

    registry, shape = get_registry(), (3, 32, 32)
    for name, index in NETS:
        arch = registry.get(name)
        torch.manual_seed(0)
        model = arch.build(shape, 10, arch.variants()[index]).eval()
        path = tmp / f"{name}{index}.onnx"
        path.write_bytes(to_onnx(model, shape, {})[0].SerializeToString())
        yield f"{name} v{index}", model, count_flops(model, shape) / 1e6, path


def _header(cores: int) -> str:
    from bench.core.machine import cpu_features, cpu_model

    return (
        f"{cores} cores of {cpu_model()} ({', '.join(cpu_features())}); torch {torch.__version__}, onnxruntime "
        f"{__import__('onnxruntime').__version__}, numpy {np.__version__}."
    )


def int8_section(cores: int, rounds: int, runs: int) -> str:
    import statistics

    from bench.deploy.quantize import QuantizeSettings, quantize_int8
    from bench.deploy.timing import measure_file
    from bench.runtime.protocol import BenchSettings

    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    settings = BenchSettings(warmup=5, min_runs=runs, min_time=0.5, graph_optimization="all")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, _, mflops, path in _nets(Path(tmp)):
            work = Path(tmp) / f"{path.stem}-int8"
            work.mkdir()
            data, method, note = quantize_int8(path, images.numpy(), QuantizeSettings(calibration_images=64), work)
            int8 = work / "model-int8.onnx"
            int8.write_bytes(data)
            p50: dict[tuple[str, int], list[float]] = {}
            for _ in range(rounds):
                for batch in (1, 64):
                    for precision, f in (("fp32", path), ("int8", int8)):
                        m = measure_file(f, images, batch, "cpu", settings, cores)
                        p50.setdefault((precision, batch), []).append(m.summary()["p50_ms"])
            med = {k: statistics.median(v) for k, v in p50.items()}
            floats = method["operators"]["float"]
            b1, b64 = ((med[("fp32", b)], med[("int8", b)]) for b in (1, 64))
            left = ", ".join(f"{k} {v}" for k, v in sorted(floats.items())) or "-"
            rows.append(
                f"| {label} | {mflops:.1f} | {method['kind']} | {b1[0]:.3f} | {b1[1]:.3f} | "
                f"{b1[0] / b1[1]:.2f}x | {b64[0]:.3f} | {b64[1]:.3f} | {b64[0] / b64[1]:.2f}x | {left} |"
            )
            print(rows[-1], flush=True)
    return "\n".join(
        [
            "## Inference: int8",
            "",
            f"{_header(cores)} Command: `python benchmarks/inference.py --sections int8`. Static int8 by "
            "bench.deploy.quantize (QDQ, per-channel int8 weights, MinMax-calibrated int8 activations), ORT CPU, graph "
            f"optimization 'all', intra-op threads {cores}; p50 in ms, the median of {rounds} alternating rounds of "
            f"at least {runs} runs and 0.5 s. Seeded random weights: speed only (accuracy: `bench quantize` on "
            "trained models).",
            "",
            "| net | MFLOPs/img | int8 kind | fp32 p50 b1 | int8 p50 b1 | speedup b1 | fp32 p50 b64 | int8 p50 b64 | "
            "speedup b64 | operators left in float |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            *rows,
            "",
        ]
    )


def curves_section(cores: int) -> str:
    from bench.deploy.quantize import QuantizeSettings, quantize_int8
    from bench.results.deployed import curves, saturation
    from bench.runtime.measure import benchmark
    from bench.runtime.protocol import BenchSettings

    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    settings = BenchSettings(
        batch_sizes=(1,),
        providers=("cpu",),
        warmup=3,
        min_runs=10,
        min_time=0.5,
        threads=cores,
        graph_optimization="all",
        curve=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, _, path in _nets(Path(tmp)):
            work = Path(tmp) / f"{path.stem}-curve"
            work.mkdir()
            int8 = work / "model-int8.onnx"
            int8.write_bytes(quantize_int8(path, images.numpy(), QuantizeSettings(calibration_images=64), work)[0])
            measured = [
                {"precision": "fp32", **vars(m), **m.summary()} for m in benchmark(model, path, images, settings)
            ]
            measured += [
                {"precision": "int8", **vars(m), **m.summary()} for m in benchmark(None, int8, images, settings)
            ]
            for (precision, engine, _), pts in curves(measured).items():
                stop = saturation(pts)
                rates = " | ".join(f"{r:,.0f}" for _, r in pts) + " | -" * (9 - len(pts))
                what = f"{'ORT' if engine == 'onnxruntime' else 'PyTorch eager'} {precision}"
                rows.append(f"| {label} | {what} | {rates} | {stop if stop else f'> {pts[-1][0]}'} |")
                print(rows[-1], flush=True)
    sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    return "\n".join(
        [
            "## Inference: batch-size curves",
            "",
            f"{_header(cores)} Command: `python benchmarks/inference.py --sections curves`. bench.runtime.protocol "
            "with --batch-curve settings: each batch size at least 10 runs and 0.5 s after 3 warm-up runs, intra-op "
            f"threads {cores}, ORT graph optimization 'all'; images/s = batch / mean latency. 'saturates at': the "
            "smallest batch no larger batch beats by more than 10% (bench.results.deployed.saturation; '> N': none up "
            "to N); '-': the curve stopped (a batch over 2 s).",
            "",
            "| net | engine, precision | " + " | ".join(f"b{b}" for b in sizes) + " | saturates at |",
            "| --- | --- | " + " | ".join("---:" for _ in sizes) + " | ---: |",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="int8: alternating rounds")
    parser.add_argument("--sections", default="inference,int8,curves")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    if "int8" in sections:
        section = int8_section(cores, args.rounds, args.runs)
        record("Inference: int8", section)
        print(section)
    if "curves" in sections:
        section = curves_section(cores)
        record("Inference: batch-size curves", section)
        print(section)
    if "inference" in sections:
        fp32_section(args.runs)


def fp32_section(runs: int) -> None:
    from bench.core.machine import cpu_features, cpu_model
    from bench.deploy.export import to_onnx
    from bench.deploy.timing import measure_file, measure_module
    from bench.models.stats import count_flops
    from bench.plugins.manager import get_registry
    from bench.runtime.protocol import BenchSettings

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    peaks = peak(cores)
    best_peak = max(peaks.values())
    for k, v in peaks.items():
        print(f"peak {k}: {v:.1f} GFLOP/s", flush=True)
    registry = get_registry()
    shape = (3, 32, 32)
    images = torch.randn(64, *shape, generator=torch.Generator().manual_seed(0))
    settings = BenchSettings(warmup=5, min_runs=runs, min_time=1.0)
    summary, configs = [], []
    wins: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, index in NETS:
            arch = registry.get(name)
            torch.manual_seed(0)
            model = arch.build(shape, 10, arch.variants()[index]).eval()
            flops = count_flops(model, shape)
            path = Path(tmp) / f"{name}{index}.onnx"
            path.write_bytes(to_onnx(model, shape, {})[0].SerializeToString())
            for batch in (1, 64):
                eager = measure_module(model, images, batch, "cpu", settings, cores).summary()["p50_ms"]
                trials = {}
                for level in LEVELS:
                    for threads in sorted({1, cores}):
                        s = BenchSettings(warmup=5, min_runs=runs, min_time=1.0, graph_optimization=level)
                        trials[(level, threads)] = measure_file(path, images, batch, "cpu", s, threads).summary()[
                            "p50_ms"
                        ]
                (level, threads), ort_ms = min(trials.items(), key=lambda kv: kv[1])
                default = measure_file(path, images, batch, "cpu", settings, cores)
                default_ms, chosen = default.summary()["p50_ms"], default.method["graph_optimization"]
                wins[f"{level}, {threads} thread{'s' if threads > 1 else ''}"] = (
                    wins.get(f"{level}, {threads} thread{'s' if threads > 1 else ''}", 0) + 1
                )
                gflops = flops * batch / (default_ms / 1000) / 1e9
                summary.append(
                    f"| {name} v{index} | {flops / 1e6:.1f} | {batch} | {eager:.3f} | {default_ms:.3f} ({chosen}) | "
                    f"{default_ms / eager:.2f} | {gflops:.1f} | {100 * gflops / best_peak:.0f}% | "
                    f"{level}, {threads} | {ort_ms:.3f} |"
                )
                configs.append(
                    f"| {name} v{index} | {batch} | "
                    + " | ".join(f"{trials[(lv, t)]:.3f}" for lv in LEVELS for t in sorted({1, cores}))
                    + " |"
                )
                print(summary[-1], flush=True)
    t_heads = [f"{lv}, {t}t" for lv in LEVELS for t in sorted({1, cores})]
    ghz_peak = nominal_peak(cores)
    nominal = (
        f" For scale: {ghz_peak[1]:.0f} GFLOP/s would be {cores} cores x {ghz_peak[0]:.1f} GHz (the listed clock) x 64 "
        "FLOPs per cycle (two AVX-512 FMA units), if this virtual CPU has them and holds that clock."
        if ghz_peak
        else ""
    )
    lines = [
        "## Inference",
        "",
        f"{cores} cores of {cpu_model()} ({', '.join(cpu_features())}); torch {torch.__version__}, "
        f"onnxruntime {__import__('onnxruntime').__version__}, numpy {np.__version__}. Command: "
        "`python benchmarks/inference.py`.",
        "",
        "Measured peak (fp32, every core; the fastest of 5 runs after a warm-up run):",
        "",
        *[f"- {k}: {v:.1f} GFLOP/s" for k, v in peaks.items()],
        "",
        f"Peak used below: {best_peak:.1f} GFLOP/s (the best of these).{nominal}",
        "",
        "Latency p50 in ms. 'ORT' is cnnbench's default (graph optimization auto, the level it chose in brackets; "
        "intra-op threads = cores, sequential); 'ORT / eager' is its p50 over PyTorch eager's; GFLOP/s and '% of "
        "peak' are ORT's. The last two columns are the fastest ORT setting tried and its p50.",
        "",
        "| net | MFLOPs/img | batch | PyTorch eager | ORT | ORT / eager | GFLOP/s | % of peak | fastest ORT "
        "setting (level, threads) | its p50 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *summary,
        "",
        "Every ORT setting tried, p50 in ms (graph optimization level, intra-op threads):",
        "",
        "| net | batch | " + " | ".join(t_heads) + " |",
        "| --- | --- | " + " | ".join("---" for _ in t_heads) + " |",
        *configs,
        "",
        "Fastest setting, times won: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(wins.items(), key=lambda kv: -kv[1]))
        + ".",
        "",
    ]
    section = "\n".join(lines)
    record("Inference", section)
    print(section)


if __name__ == "__main__":
    main()
