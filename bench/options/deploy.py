"""What happens to the winners (a resume may change these): which are deployed, and how they are exported, timed
and quantized; each group is the options of `bench export`, `benchmark` and `quantize`."""

from __future__ import annotations

from dataclasses import dataclass

from bench.options.choices import (
    BENCHMARK,
    CALIBRATION_METHODS,
    DEPLOY,
    EXPORT,
    EXPORTERS,
    GRAPH_OPTIMIZATIONS,
    MAX_MIN_TIME,
    PROVIDERS,
    QUANTIZE,
    SCENARIOS,
    SWITCH,
    VARIANT_PRECISIONS,
    WINNERS,
)
from bench.options.option import COUNT, declare


@dataclass
class DeployOptions:
    """What happens to the winners: RunConfig (bench.options.config) is made of these fields and the other stages'."""

    top_k: int = declare(
        DEPLOY,
        "Export and benchmark the best K trials of each architecture (`bench export`, "
        "`benchmark`, `quantize`: when no TRIAL is named).",
        1,
        group=WINNERS,
        **COUNT,
    )
    no_benchmark: bool = declare(
        DEPLOY, "Skip the inference benchmark (`bench run`: the ONNX export too).", False, kind=bool, group=WINNERS
    )
    exporter: str = declare(
        DEPLOY,
        "torch.onnx exporter (dynamo falls back to torchscript if it fails, and says so).",
        "dynamo",
        choices=EXPORTERS,
        group=EXPORT,
    )
    opset: int = declare(DEPLOY, "ONNX opset.", 18, kind=int, low=7, group=EXPORT)
    tolerance: float = declare(
        DEPLOY,
        "Largest |logit difference| against PyTorch accepted, as a share of the logits' scale (their largest "
        "magnitude, at least 1).",
        1e-3,
        kind=float,
        low=0,
        high=1,
        group=EXPORT,
        docs="float32 kernels that add in another order differ in the last places of the largest values (relative "
        "differences of 1e-7 to 1e-5 measured); a wrong weight or operator differs by far more than 1e-3.",
    )
    batch_sizes: list[int] = declare(
        DEPLOY, "Batch sizes to time.", factory=lambda: [1, 64], many=True, group=BENCHMARK, **COUNT
    )
    engines: list[str] = declare(
        DEPLOY,
        "Inference engines to time (`bench plugins` lists them): auto = every installed engine that runs here "
        "(onnxruntime, torch, openvino with its extra); torch-compile by name.",
        factory=lambda: ["auto"],
        many=True,
        group=BENCHMARK,
    )
    providers: list[str] = declare(
        DEPLOY,
        "Devices: auto = cpu, plus cuda when a GPU is visible; tensorrt (onnxruntime's TensorRT provider) by name.",
        factory=lambda: ["auto"],
        many=True,
        choices=PROVIDERS,
        group=BENCHMARK,
    )
    warmup: int = declare(DEPLOY, "Untimed runs before timing.", 10, kind=int, low=0, group=BENCHMARK)
    min_runs: int = declare(DEPLOY, "Timed runs: at least this many...", 100, group=BENCHMARK, **COUNT)
    min_time: float = declare(
        DEPLOY, "...lasting at least this many seconds.", 1.0, kind=float, low=0, high=MAX_MIN_TIME, group=BENCHMARK
    )
    bench_threads: int | None = declare(
        DEPLOY,
        "Intra-op threads for onnxruntime and PyTorch (default: torch's thread count).",
        kind=int,
        low=1,
        group=BENCHMARK,
        machine_bound=True,
    )
    graph_optimization: str = declare(
        DEPLOY,
        "onnxruntime graph optimization level; auto: the faster of extended and all "
        "in a 20-run probe, per model and batch size (recorded).",
        "auto",
        choices=GRAPH_OPTIMIZATIONS,
        group=BENCHMARK,
    )
    batch_curve: bool = declare(
        DEPLOY,
        "Also time batch sizes 1 to 256 (powers of two, at least 10 runs each beyond "
        "--batch-sizes), stopping after a batch that takes over 2 s or fails (out of memory).",
        False,
        kind=bool,
        group=BENCHMARK,
    )
    repeat: int = declare(
        DEPLOY,
        "Time every model this many times, each in a fresh worker process; every repetition is kept, and the "
        "report shows their spread (mean ± std, cv, unstable).",
        1,
        group=BENCHMARK,
        **COUNT,
    )
    ort_spinning: str = declare(
        DEPLOY,
        "Whether onnxruntime's idle intra-op threads spin for work (its default: far more queries/s under a p99 "
        "bound on a machine given to the model) or sleep at once (session.intra_op.allow_spinning; off: the better "
        "choice beside other CPU work, benchmarks/RESULTS.md).",
        "on",
        choices=SWITCH,
        group=BENCHMARK,
    )
    openvino_pinning: str = declare(
        DEPLOY,
        "Whether OpenVINO pins its inference threads to cores (ENABLE_CPU_PINNING, its default on Linux; off: the "
        "better choice beside other CPU work, benchmarks/RESULTS.md).",
        "on",
        choices=SWITCH,
        group=BENCHMARK,
    )
    scenario: list[str] = declare(
        DEPLOY,
        "Serving scenarios to measure besides the latency protocol, MLPerf LoadGen's way: single-stream (one "
        "query at a time), offline (the test set in batches: images/s), server (Poisson arrivals: the most "
        "queries/s whose p99 stays under --latency-bound-ms); none.",
        factory=list,
        many=True,
        choices=SCENARIOS,
        empty="none",
        group=BENCHMARK,
    )
    latency_bound_ms: float = declare(
        DEPLOY,
        "The server scenario's p99 latency bound, in milliseconds, counted from each query's scheduled arrival.",
        10.0,
        kind=float,
        low=0,
        low_open=True,
        group=BENCHMARK,
    )
    queries: int = declare(
        DEPLOY,
        "Queries of the single-stream scenario, and of each rate the server scenario tries (a p99 needs 662).",
        1024,
        group=BENCHMARK,
        **COUNT,
    )
    server_workers: list[int] = declare(
        DEPLOY,
        "Workers answering the server scenario's queries (threads sharing the model); each count is measured.",
        factory=lambda: [1],
        many=True,
        group=BENCHMARK,
        machine_bound=True,
        **COUNT,
    )
    dynamic_batch: int = declare(
        DEPLOY,
        "Also measure the server with dynamic batching: a worker answers up to this many queued queries in one "
        "call (1: off).",
        1,
        group=BENCHMARK,
        **COUNT,
    )
    batch_wait_ms: float = declare(
        DEPLOY,
        "With --dynamic-batch: how long a query may wait for others to join its call, in milliseconds.",
        2.0,
        kind=float,
        low=0,
        group=BENCHMARK,
    )
    quantize: list[str] = declare(
        DEPLOY,
        "Variants made of each exported model, checked and benchmarked beside fp32: "
        "int8 (static, QDQ, per-channel; dynamic where static is impossible), fp16; none.",
        factory=lambda: list(VARIANT_PRECISIONS),
        many=True,
        choices=VARIANT_PRECISIONS,
        empty="none",
        group=QUANTIZE,
    )
    calibration_images: int = declare(
        DEPLOY, "Training images that calibrate the int8 activations.", 512, group=QUANTIZE, **COUNT
    )
    calibration_method: str = declare(
        DEPLOY,
        "onnxruntime's calibrator for the int8 activation ranges.",
        "minmax",
        choices=CALIBRATION_METHODS,
        group=QUANTIZE,
    )
    max_accuracy_drop: float = declare(
        DEPLOY,
        "Points of test accuracy a variant may lose against fp32 before it is flagged (it is kept).",
        1.0,
        kind=float,
        low=0,
        high=100,
        group=QUANTIZE,
    )
