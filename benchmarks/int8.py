"""Int8 against fp32 in ONNX Runtime on this CPU, for a stored trial's verified ONNX export: is static int8 worth it?

Quantization: cnnbench's own (bench.deploy.quantize.quantize_int8, what `bench quantize` and `bench run` make):
onnxruntime's quant_pre_process (shape inference and graph optimization), then quantize_static in QDQ format,
per-channel int8 weights, int8 activations, calibrated (MinMax) on --calibration training images of the trial's
own training split. Accuracy: the
whole test set through onnxruntime (CPU), fp32 and int8, with the trial's own preprocessing; top-1 agreement of the
two. Speed: batch 1 and 64, both models timed in alternating rounds (--rounds), each round cnnbench's own
measurement (bench.runtime.protocol.timed_runs: warm-up, then at least --runs runs and --min-time s), p50 by numpy; the
ratio of the medians over rounds. Graph optimization 'all', intra-op threads = every core.

    python benchmarks/int8.py --store runs/lab/bench.db --run RUN [--trial N]

Writes the section "Int8: <architecture> on <dataset>" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import collections
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from record import cpu_name, record
from stored import stored_trial, trial_parser

from bench.deploy.quantize import QuantizeSettings, quantize_int8
from bench.deploy.trials import calibration_and_test
from bench.plugins.dataset_loading import load_run_dataset
from bench.runtime import onnxrt
from bench.runtime.protocol import BenchSettings, timed_runs

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def main() -> None:
    parser = trial_parser(__doc__, runs=50, min_time=0.5)
    parser.add_argument("--calibration", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    with stored_trial(args) as (store, run, trial):
        fp32_path = store.artifact_path(store.export_of(trial["id"])["path"])
    data = load_run_dataset(run)
    calib, test, labels = calibration_and_test(data, trial, args.calibration)
    name = onnx.load(str(fp32_path)).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = Path(tmp) / "int8.onnx"
        int8_path.write_bytes(
            quantize_int8(fp32_path, calib, QuantizeSettings(calibration_images=args.calibration), Path(tmp))[0]
        )
        sessions = {
            p: onnxrt.ort_session(path, "cpu", threads, "all") for p, path in (("fp32", fp32_path), ("int8", int8_path))
        }
        optimized = Path(tmp) / "int8-optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
        sizes = {"fp32": Path(fp32_path).stat().st_size, "int8": int8_path.stat().st_size}
        out = {p: onnxrt.logits(s, test) for p, s in sessions.items()}
        acc = {p: float((o.argmax(1) == labels).mean()) for p, o in out.items()}
        agree = float((out["fp32"].argmax(1) == out["int8"].argmax(1)).mean())
        settings = BenchSettings(
            batch_sizes=(1, 64),
            providers=("cpu",),
            warmup=10,
            min_runs=args.runs,
            min_time=args.min_time,
            bench_threads=threads,
            graph_optimization="all",
        )
        p50: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        for _ in range(args.rounds):
            for batch in (1, 64):
                x = test[:batch]
                for precision, sess in sessions.items():
                    samples = timed_runs(lambda s=sess, x=x: s.run(None, {name: x}), settings)[1]
                    p50[(precision, batch)].append(float(np.percentile(samples, 50)))
    flags = sorted(f for f in FLAGS if f in Path("/proc/cpuinfo").read_text().split())
    heading = f"Int8: {trial['architecture']} on {run['dataset'].split('/')[-1]}"
    lines = [
        f"## {heading}",
        "",
        f"`python benchmarks/int8.py --store {args.store} --run {run['id']}`: trial t{trial['idx']:03d} "
        f"{trial['architecture']} {run['dataset']}; {cpu_name()} ({', '.join(flags)}), {threads} threads, onnxruntime "
        f"{ort.__version__}. Static int8 (QDQ, per-channel weights, MinMax calibration on {len(calib)} training "
        f"images); accuracy on the {len(labels)} test images; p50 in ms, the median of {args.rounds} alternating "
        f"rounds of at least {args.runs} runs and {args.min_time} s each.",
        "",
        "| precision | test acc % | top-1 agreement with fp32 % | size MB | p50 ms batch 1 | p50 ms batch 64 | "
        "images/s batch 64 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for precision in ("fp32", "int8"):
        b1, b64 = (statistics.median(p50[(precision, b)]) for b in (1, 64))
        agreement = "100.00" if precision == "fp32" else f"{100 * agree:.2f}"
        lines.append(
            f"| {precision} | {100 * acc[precision]:.2f} | {agreement} | {sizes[precision] / 1e6:.2f} | "
            f"{b1:.3f} | {b64:.3f} | {64 / b64 * 1000:,.0f} |"
        )
    speedup = statistics.median(p50[("fp32", 64)]) / statistics.median(p50[("int8", 64)])
    lines += [
        "",
        f"Int8 at batch 64: {speedup:.2f}x the images/s of fp32, {100 * (acc['int8'] - acc['fp32']):+.2f} "
        f"points of test accuracy. Operators of the int8 model after ORT's optimization: "
        f"{', '.join(f'{k} {v}' for k, v in ops.most_common())}.",
    ]
    section = "\n".join(lines) + "\n"
    record(heading, section)
    print(section)


if __name__ == "__main__":
    main()
