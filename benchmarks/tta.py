"""Test-time augmentation measured on a stored trial's best checkpoint: the plain network, flip TTA
(bench.FlipAverage, fast_cnn's variant tta=True: two forward passes) and airbench's six views
(bench.FlipTranslateAverage, tta=translate: flip x one-pixel shifts): test accuracy of each, its ONNX file
checked against PyTorch, and its ONNX Runtime latency. Training is unchanged by these variants, so one checkpoint
(trained with any of them) tells what each adds.

Accuracy: the trial's own test split and preprocessing, PyTorch fp32 in eval mode, then the exported file through
onnxruntime. Latency: cnnbench's own measurement (bench.deploy.timing.measure_file: 10 warm-up runs, then at least
--runs runs and --min-time s, p50 by numpy), graph optimization auto, intra-op threads = every core.

    python benchmarks/tta.py --store runs/lab/bench.db --run RUN [--trial N]

Writes the section "TTA: <architecture> on <dataset>, run <run>" of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch
from record import cpu_name, record
from stored import stored_trial, trial_parser

from bench.deploy.export import check_parity, to_onnx
from bench.deploy.timing import measure_file
from bench.deploy.trials import load_model, test_images
from bench.models.layers import FlipAverage, FlipTranslateAverage
from bench.models.registry import format_variant
from bench.plugins.dataset_loading import load_run_dataset
from bench.runtime import onnxrt
from bench.runtime.protocol import BenchSettings


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        predictions = torch.cat([model(images[i : i + 500]).argmax(1) for i in range(0, len(images), 500)])
    return float((predictions == labels).float().mean())


def main() -> None:
    args = trial_parser(__doc__, runs=100, min_time=1.0).parse_args()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    with stored_trial(args) as (store, run, trial):
        trained = load_model(store, run, trial)
    plain = trained.net if isinstance(trained, FlipAverage) else trained  # the network without its TTA
    data = load_run_dataset(run)
    images, labels = test_images(data, trial)
    models = {
        "plain": plain,
        "flip TTA (2 views)": FlipAverage(plain).eval(),
        "flip x translate TTA (6 views)": FlipTranslateAverage(plain).eval(),
    }
    acc = {name: accuracy(model, images, labels) for name, model in models.items()}
    settings = BenchSettings(
        batch_sizes=(1, 64),
        providers=("cpu",),
        warmup=10,
        min_runs=args.runs,
        min_time=args.min_time,
        bench_threads=threads,
        graph_optimization="auto",
    )
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, model) in enumerate(models.items()):
            proto, _ = to_onnx(model, data.input_shape, {})
            path = Path(tmp) / f"{i}.onnx"
            path.write_bytes(proto.SerializeToString())
            parity = check_parity(model, path, images)
            logits = onnxrt.logits(onnxrt.ort_session(path, "cpu", threads), images)
            onnx_acc = float((logits.argmax(1) == labels.numpy()).mean())
            p50 = [measure_file(path, images, b, "cpu", settings, threads).summary()["p50_ms"] for b in (1, 64)]
            rows[name] = (parity, onnx_acc, p50)
    heading = f"TTA: {trial['architecture']} on {run['dataset'].split('/')[-1]}, run {run['id']}"
    lines = [
        f"## {heading}",
        "",
        f"`python benchmarks/tta.py --store {args.store} --run {run['id']} --runs {args.runs} --min-time "
        f"{args.min_time}`: trial t{trial['idx']:03d} "
        f"{trial['architecture']} {format_variant(trial['variant'])} (its best checkpoint), {len(labels)} test images; "
        f"{cpu_name()}, {threads} threads, torch {torch.__version__}, onnxruntime {ort.__version__}; ORT p50 of at "
        f"least {args.runs} runs and {args.min_time} s after 10 warm-up runs.",
        "",
        "| model | test acc % (PyTorch) | test acc % (ONNX) | max abs logit diff | ORT p50 ms batch 1 | batch 64 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (parity, onnx_acc, p50) in rows.items():
        lines.append(
            f"| {name} | {100 * acc[name]:.2f} | {100 * onnx_acc:.2f} | {parity.max_abs_diff:.1e} | "
            f"{p50[0]:.3f} | {p50[1]:.3f} |"
        )
    section = "\n".join(lines) + "\n"
    record(heading, section)
    print(section)


if __name__ == "__main__":
    main()
