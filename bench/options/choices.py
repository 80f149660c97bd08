"""The words and limits options are declared with: each option's choices (one definition each, which the stages
import), the upper limits that depend on this machine, and the names of the stages and deploy groups."""

from __future__ import annotations

import os

from bench.core.status import Precision

VARIANT_SETS = ("default", "all")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "step")  # torch's own schedulers (bench.train.optim)
TRAINING_PRECISIONS = ("auto", Precision.FP32, Precision.BF16)  # what the training steps compute in
SELECT_METRICS = ("val_loss", "val_acc")
BN_RECALIBRATION = ("auto", "on", "off")
AUGMENTATIONS = ("flip", "altflip", "crop", "translate", "grayscale")
SEARCHES = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "halving")  # Optuna's, for --search tpe
TRACKERS = ("mlflow",)  # where runs are logged as they go (bench.tracking)
EXECUTORS = ("local", "ray")
SCHEDULERS = ("fifo", "asha")
EXPORTERS = ("dynamo", "torchscript")
GRAPH_OPTIMIZATIONS = ("auto", "disable", "basic", "extended", "all")
PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")  # where models run; tensorrt: onnxruntime's TensorRT provider
VARIANT_PRECISIONS = (Precision.INT8, Precision.FP16)  # the deployment variants made of an fp32 ONNX export
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
SWITCH = ("on", "off")  # an engine setting turned on or off
SCENARIOS = ("single-stream", "offline", "server")  # serving scenarios (bench.runtime.scenarios)

# Upper limits: more threads than CPUs never trains faster and thousands stall the machine (options declared
# machine_bound stop at this machine's CPU count); a benchmark's minimum time is bounded so that it ends.
MAX_THREADS = os.cpu_count() or 1
MAX_MIN_TIME = 600.0
MAX_SEED = 2**32 - 1

# What each option is for. plan: which trials (a resume keeps the recorded plan); train: how each trial trains,
# recorded in its hyperparameters (a resume keeps them too); execute: where the trials run; deploy: what happens to
# the winners (its groups are the options of `bench export`, `benchmark` and `quantize`).
PLAN, TRAIN, EXECUTE, DEPLOY = "plan", "train", "execute", "deploy"
STAGES = (PLAN, TRAIN, EXECUTE, DEPLOY)
WINNERS, EXPORT, BENCHMARK, QUANTIZE = "winners", "export", "benchmark", "quantize"
