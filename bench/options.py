"""The options of a run, each declared once: a field of `RunConfig` with its type, choices, range, help and stage.

Everything else follows from that declaration: the options of `bench run` (and of `bench export`, `benchmark`,
`quantize`), the keys a `--config` file may set, the one check that the CLI, config files and the Python API share
(with one spelling of its error), the hyperparameters every trial records (`HParams`: the fields of the
``train`` stage), the plan's fixed parameters, the report's parameter columns and docs/run-options.md.
A new option is one field here plus its use (CONTRIBUTING.md shows the diff).

No torch here: `bench --help` and config files load this module alone."""

from __future__ import annotations

import math
import os
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, make_dataclass
from typing import Any

from bench.errors import UsageError

# The values of options with choices: one definition each, which the stages import.
VARIANT_SETS = ("default", "all")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "step")  # torch's own schedulers (bench.optim)
TRAINING_PRECISIONS = ("auto", "fp32", "bf16")  # what the training steps compute in
SELECT_METRICS = ("val_loss", "val_acc")
AUGMENTATIONS = ("flip", "altflip", "crop", "translate", "grayscale")
SEARCHES = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "halving")
TRACKERS = ("mlflow",)  # where runs are logged as they go (bench.track)  # Optuna's, for --search tpe
EXECUTORS = ("local", "ray")
SCHEDULERS = ("fifo", "asha")
EXPORTERS = ("dynamo", "torchscript")
GRAPH_OPTIMIZATIONS = ("auto", "disable", "basic", "extended", "all")
PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")  # where models run; tensorrt: onnxruntime's TensorRT provider
VARIANT_PRECISIONS = ("int8", "fp16")  # the deployment variants made of an fp32 ONNX export
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")

# Upper limits: more threads than CPUs never trains faster and thousands stall the machine; a benchmark's minimum
# time is bounded so that it ends.
MAX_THREADS = os.cpu_count() or 1
MAX_MIN_TIME = 600.0
MAX_SEED = 2**32 - 1

# What each option is for. plan: which trials (a resume keeps the recorded plan); train: how each trial trains,
# recorded in its hyperparameters (a resume keeps them too); execute: where the trials run; deploy: what happens to
# the winners (its groups are the options of `bench export`, `benchmark` and `quantize`).
PLAN, TRAIN, EXECUTE, DEPLOY = "plan", "train", "execute", "deploy"
STAGES = (PLAN, TRAIN, EXECUTE, DEPLOY)
WINNERS, EXPORT, BENCHMARK, QUANTIZE = "winners", "export", "benchmark", "quantize"


@dataclass(frozen=True)
class Option:
    """How one RunConfig field is given, checked and documented."""

    help: str
    stage: str
    kind: type = str  # the type of one value: str, int, float, bool, or dict (where)
    axis: bool = False  # train stage: a list of values, each a point of the grid
    many: bool = False  # a list of values, comma-separated on the command line
    repeat: bool = False  # a list of values given by repeating the option (--plugin a --plugin b)
    unique: bool = True  # a list drops repeated values (not per-channel ones such as --mean)
    choices: tuple = ()
    subset: bool = False  # text: a comma-separated subset of ``choices`` (--augment flip,crop)
    empty: str | None = None  # a list: this word alone means none (--quantize none)
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False
    pattern: str | None = None  # text matching this regular expression, described by ``pattern_text``
    pattern_text: str = ""
    short: str | None = None  # a one-letter alias (-p)
    trial_default: Any = None  # axes: what a trial gets when neither the option nor the architecture's plugin says
    group: str | None = None  # deploy: winners, export, benchmark or quantize
    metavar: str | None = None
    docs: str = ""  # said in docs/run-options.md beside the help
    nested: bool = False  # kind dict: a table per architecture of train-stage options (per_arch)

    @property
    def is_list(self) -> bool:
        return (self.axis and self.kind is not bool) or self.many or self.repeat

    def requirement(self) -> str:
        """What a valid value is, in words: 'an integer >= 1', 'one of sgd, adam', 'a number in (0, 1)'."""
        if self.choices:
            return ("any of " if self.subset else "one of ") + ", ".join(self.choices)
        if self.pattern:
            return self.pattern_text
        if self.kind is bool:
            return "true or false"
        if self.nested:
            return "ARCH:OPTION=V[,V...] (a --config file: a table per architecture of training options)"
        if self.kind is dict:
            return "a table of PARAM = [values]"
        if self.kind is str:
            return "text"
        what = "an integer" if self.kind is int else "a number"
        low = None if self.low is None else f"{self.low:g}"
        high = None if self.high is None else f"{self.high:g}"
        if low is not None and high is not None:
            if self.kind is int:
                return f"{what} from {low} to {high}"
            return f"{what} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if low is not None:
            return f"{what} {'>' if self.low_open else '>='} {low}"
        if high is not None:
            return f"{what} {'<' if self.high_open else '<='} {high}"
        return "a finite number" if self.kind is float else what

    def value(self, name: str, v):
        """One value of the option, checked (and, for numbers written as text, converted): the value, or a
        UsageError in the one spelling every caller shares."""
        if isinstance(v, str) and self.kind in (int, float):
            v = _number(v, self.kind)
        ok = True
        if self.kind is bool:
            ok = isinstance(v, bool)
        elif self.kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif self.kind is float:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            v = float(v) if ok else v
        elif self.kind is str:
            v = os.fspath(v) if isinstance(v, os.PathLike) else v
            ok = isinstance(v, str)
        if ok and self.kind in (int, float):
            ok = (self.low is None or (v > self.low if self.low_open else v >= self.low)) and (
                self.high is None or (v < self.high if self.high_open else v <= self.high)
            )
        if ok and self.subset:
            names = [s.strip() for s in v.split(",") if s.strip()]
            bad = [n for n in names if n not in self.choices]
            if bad:
                raise invalid(name, bad[0], self.requirement())
            return ",".join(dict.fromkeys(names))
        if ok and self.choices:
            ok = v in self.choices
        if ok and self.pattern:
            ok = re.fullmatch(self.pattern, v) is not None
        if not ok:
            raise invalid(name, v, self.requirement())
        return v


def invalid(name: str, value, requirement: str | None = None, *, why: str | None = None) -> UsageError:
    """The one spelling of a bad value, whoever finds it: `Invalid value for '--lr': -1.0 (a number > 0)`, or with
    ``why`` instead of the requirement, `Invalid value for '--lr': '1e-3,,x' has an empty item`."""
    return UsageError(f"Invalid value for '--{flag(name)}': {value!r} " + (why or f"({requirement})"))


def flag(name: str) -> str:
    """The command-line spelling of a field: top_k -> top-k."""
    return name.replace("_", "-")


def _number(text: str, kind: type):
    try:
        return kind(text.strip())
    except ValueError:
        return text  # refused by the type check, as text


def _opt(stage: str, help: str, default=None, *, factory=None, **spec):
    meta = {"option": Option(help=help, stage=stage, **spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


_POSITIVE = {"low": 0, "low_open": True}
_COUNT = {"kind": int, "low": 1}


@dataclass
class RunConfig:
    """Everything `bench run` can be told. Every field is the option of the same name (``--top-k`` for ``top_k``)
    with the same meaning; list fields are axes of the grid where they are hyperparameters (each value is tried)."""

    # --- what to train (plan) ---
    plugin: list[str] = _opt(PLAN, "Run every architecture of this plugin.", factory=list, repeat=True, short="-p")
    arch: list[str] = _opt(
        PLAN, "Run architectures whose name matches this pattern (e.g. 'cnn_*').", factory=list, repeat=True, short="-a"
    )
    variants: str = _opt(
        PLAN, "The plugin's default variant set, or its whole variant space.", "default", choices=VARIANT_SETS
    )
    where: dict[str, list] = _opt(
        PLAN,
        "Keep variants whose PARAM is one of the values, e.g. --where kernel_size=3,5. Replaces a --config "
        "file's filter for the parameters it names only.",
        factory=dict,
        kind=dict,
        repeat=True,
        metavar="PARAM=V[,V...]",
        docs="Of the default variants, or of the whole space when none of them has the "
        "values; across several architectures, each keeps the values it has (`--where model=resnet18,mobilenet_v2` "
        "over the torchvision zoo), and a value none of them has is an error.",
    )
    per_arch: dict[str, dict] = _opt(
        PLAN,
        "How one architecture's trials train, over the run's options: e.g. --per-arch fast_cnn:lr=0.4 --per-arch "
        "fast_cnn:batch_size=256,512.",
        factory=dict,
        kind=dict,
        repeat=True,
        nested=True,
        metavar="ARCH:OPTION=V[,V...]",
        docs="Any option of the training table below; its values replace the run's (and the plugin's defaults) for "
        "that architecture only, an axis given there being that architecture's grid. In a `--config` file: a table "
        "per architecture, `[per_arch.fast_cnn]` with `lr = 0.4`.",
    )
    dataset: str = _opt(PLAN, "Dataset name, or imagefolder:PATH (see `bench datasets`).", "digits", short="-d")
    data_dir: str | None = _opt(PLAN, "Where the dataset's files are (default: ./data).")
    image_size: int | None = _opt(
        PLAN,
        "imagefolder: resize images to this size (default: their own size; a folder of mixed sizes: the most common "
        "one, said in the dataset's resize record).",
        kind=int,
        low=4,
        high=2048,
    )
    limit_train: int | None = _opt(
        PLAN,
        "Train (and validate) on a seeded, stratified subset of this many of the training images; the test part "
        "stays whole.",
        kind=int,
        low=2,
    )
    mean: list[float] | None = _opt(
        PLAN, "Replace the dataset's per-channel mean (after scaling).", kind=float, many=True, unique=False
    )
    std: list[float] | None = _opt(
        PLAN, "Replace its per-channel std.", kind=float, many=True, unique=False, **_POSITIVE
    )
    search: str = _opt(
        PLAN,
        "grid: every combination; random: --trials of them drawn without repeats; tpe: --trials chosen one after "
        "the other by Optuna's TPE sampler from the results so far (pip install 'cnnbench[optuna]'). Seeded by the "
        "first --seed.",
        "grid",
        choices=SEARCHES,
        docs="TPE chooses among the same combinations a grid would run (the variants, and the values given for each "
        "axis), after the selection metric of `--select` (lowest validation loss, or highest accuracy); its study "
        "is kept with the run (`study.log` in the "
        "run's folder), so `--resume` continues it.",
    )
    trials: int | None = _opt(PLAN, "With --search random or tpe: how many trials.", **_COUNT)
    pruner: str = _opt(
        PLAN,
        "With --search tpe: stop a trial whose selection metric after an epoch (the second or later) is worse than "
        "the median of earlier trials at that epoch (median), or outside the best third of its rung (halving: "
        "successive halving); recorded as pruned.",
        "none",
        choices=PRUNERS,
    )

    # --- how each trial trains (train: recorded with every trial; the axes, in the grid's nesting order) ---
    optimizer: list[str] | None = _opt(
        TRAIN, "sgd (momentum), adam, adamw.", axis=True, choices=OPTIMIZERS, trial_default="sgd"
    )
    lr: list[float] | None = _opt(
        TRAIN, "Learning rates, e.g. 1e-3,1e-2 (default 0.01).", kind=float, axis=True, trial_default=0.01, **_POSITIVE
    )
    batch_size: list[int] | None = _opt(
        TRAIN, "Batch sizes, e.g. 32,64 (default 64).", axis=True, short="-b", trial_default=64, **_COUNT
    )
    epochs: list[int] | None = _opt(
        TRAIN, "Epochs per trial (default 20).", axis=True, short="-e", trial_default=20, **_COUNT
    )
    momentum: list[float] | None = _opt(
        TRAIN, "SGD momentum (default 0.9).", kind=float, axis=True, low=0, high=1, high_open=True, trial_default=0.9
    )
    weight_decay: list[float] | None = _opt(
        TRAIN, "Weight decay, as the optimizer defines it (default 0).", kind=float, axis=True, low=0, trial_default=0.0
    )
    val_ratio: list[float] | None = _opt(
        TRAIN,
        "Share of the training images held out for validation (default 0.2).",
        kind=float,
        axis=True,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        trial_default=0.2,
    )
    seed: list[int] | None = _opt(
        TRAIN,
        "Seeds (default 0), 0 to 2^32-1: init, shuffling, split.",
        kind=int,
        axis=True,
        low=0,
        high=MAX_SEED,
        trial_default=0,
    )
    schedule: list[str] | None = _opt(
        TRAIN,
        "Learning rate over the steps (default constant): cosine annealing to 0, onecycle (torch's "
        "OneCycleLR), step (x0.1 at 50% and 75%).",
        axis=True,
        choices=SCHEDULES,
        trial_default="constant",
    )
    warmup_epochs: list[float] | None = _opt(
        TRAIN,
        "Linear warm-up to --lr over this many epochs (default none; onecycle: 30% of the steps).",
        kind=float,
        axis=True,
        low=0,
    )
    label_smoothing: list[float] | None = _opt(
        TRAIN,
        "Label smoothing of the training loss (default 0).",
        kind=float,
        axis=True,
        low=0,
        high=1,
        high_open=True,
        trial_default=0.0,
    )
    nesterov: bool | None = _opt(
        TRAIN, "Nesterov momentum for SGD (default off).", kind=bool, axis=True, trial_default=False
    )
    freeze: list[str] | None = _opt(
        TRAIN,
        "Layers that do not train: none, backbone (all but the logits layer) or N (the first N layers with weights).",
        axis=True,
        pattern=r"none|backbone|[0-9]+",
        pattern_text="none, backbone or a number of layers",
        trial_default="none",
        docs="Frozen batch-norm layers keep their statistics; with --weights, this is fine-tuning "
        "([runs.md](runs.md#starting-from-weights)).",
    )
    head_lr: list[float] | None = _opt(
        TRAIN,
        "The logits layer's learning rate as a multiple of --lr (default 1), e.g. 10 to fine-tune a new head faster.",
        kind=float,
        axis=True,
        trial_default=1.0,
        **_POSITIVE,
    )
    augment: str = _opt(
        TRAIN,
        "Augmentations on the training device: flip,altflip,crop,translate,grayscale (altflip: "
        "each image mirrored in every other epoch).",
        "",
        choices=AUGMENTATIONS,
        subset=True,
    )
    precision: str = _opt(
        TRAIN,
        "bf16: autocast the training steps (evaluation stays fp32). auto: bf16 where it was "
        "measured faster (a probe, once per machine; models of 5 MFLOPs or more per image), else "
        "fp32.",
        "auto",
        choices=TRAINING_PRECISIONS,
    )
    channels_last: bool | None = _opt(
        TRAIN,
        "NHWC memory layout for training (default: on when the model accepts it; it was never slower).",
        kind=bool,
    )
    compile: bool = _opt(TRAIN, "torch.compile the model for training (slow start, faster steps).", False, kind=bool)
    lookahead: bool = _opt(
        TRAIN,
        "airbench's lookahead: every 5 steps the weights move to their running average, "
        "whose decay rises over the trial to 0.77; the last step leaves them at the average.",
        False,
        kind=bool,
    )
    select: str = _opt(
        TRAIN,
        "The best checkpoint: lowest validation loss or highest validation accuracy.",
        "val_loss",
        choices=SELECT_METRICS,
    )
    patience: int | None = _opt(
        TRAIN, "Stop a trial after this many epochs without a better selection metric (early_stopped).", **_COUNT
    )
    weights: str | None = _opt(
        TRAIN,
        "Start every trial from these weights: a checkpoint or state-dict file (.pt), or a stored trial RUN/tNNN. "
        "What matches by name and shape is loaded; a logits layer for another class count is re-initialized.",
        metavar="PATH|RUN/tNNN",
        docs="Recorded with each trial as `PATH#sha256=HEX` (checked whenever a trial loads it) and named in the "
        "ONNX metadata (`initial_weights`); a note says what was loaded, skipped and re-initialized.",
    )

    # --- where the trials run (execute) ---
    download: bool = _opt(EXECUTE, "Download the dataset's files into --data-dir when missing.", False, kind=bool)
    cache_dir: str | None = _opt(
        EXECUTE,
        "Where decoded datasets are kept (default $BENCH_CACHE, else ~/.cache/cnnbench): decoded once, in parallel, "
        "again when a source file changes; never inside the dataset's folder unless given.",
    )
    executor: str = _opt(
        EXECUTE,
        "local: trial after trial in this process; ray: Ray Tune trials (pip install 'cnnbench[ray]').",
        "local",
        choices=EXECUTORS,
    )
    device: str = _opt(
        EXECUTE,
        "auto, cpu, cuda or cuda:N (local executor).",
        "auto",
        pattern=r"auto|cpu|cuda(:[0-9]+)?",
        pattern_text="auto, cpu, cuda or cuda:N",
    )
    threads: int | None = _opt(
        EXECUTE,
        "CPU threads for torch, at most this machine's CPU count (default: torch's choice).",
        kind=int,
        low=1,
        high=MAX_THREADS,
    )
    state_every: float = _opt(
        EXECUTE,
        "Also save an unfinished trial's training state within an epoch, every this many seconds (0: after each epoch "
        "only): a stop then loses at most that much of a long epoch, and --resume continues from that step.",
        300.0,
        kind=float,
        low=0,
    )
    ray_address: str | None = _opt(EXECUTE, "With --executor ray: an existing cluster (default: start a local Ray).")
    cpus_per_trial: float = _opt(
        EXECUTE, "With --executor ray: CPUs (and torch threads) per trial.", 1.0, kind=float, **_POSITIVE
    )
    gpus_per_trial: float = _opt(EXECUTE, "With --executor ray: GPUs per trial.", 0.0, kind=float, low=0)
    storage: str | None = _opt(
        EXECUTE,
        "With --executor ray: where trials put checkpoints, reachable by every node "
        "(a shared directory or a URI Ray accepts; default: <store dir>/ray).",
    )
    scheduler: str = _opt(
        EXECUTE, "With --executor ray: asha stops weak trials early (recorded as pruned).", "fifo", choices=SCHEDULERS
    )
    track: list[str] = _opt(
        EXECUTE,
        "Also log the run to a tracking tool as its trials finish: mlflow (pip install 'cnnbench[mlflow]'); none.",
        factory=list,
        many=True,
        choices=TRACKERS,
        empty="none",
        docs="A tracking failure never stops the run: it is said once, and `bench mlflow RUN` sends the run later.",
    )
    tracking_uri: str | None = _opt(
        EXECUTE,
        "With --track mlflow: the MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///<store dir>/"
        "mlflow.db).",
    )
    experiment: str = _opt(EXECUTE, "With --track mlflow: the MLflow experiment.", "cnnbench")

    # --- what happens to the winners (deploy) ---
    top_k: int = _opt(
        DEPLOY,
        "Export and benchmark the best K trials of each architecture (`bench export`, "
        "`benchmark`, `quantize`: when no TRIAL is named).",
        1,
        group=WINNERS,
        **_COUNT,
    )
    no_benchmark: bool = _opt(
        DEPLOY, "Skip the inference benchmark (`bench run`: the ONNX export too).", False, kind=bool, group=WINNERS
    )
    exporter: str = _opt(
        DEPLOY,
        "torch.onnx exporter (dynamo falls back to torchscript if it fails, and says so).",
        "dynamo",
        choices=EXPORTERS,
        group=EXPORT,
    )
    opset: int = _opt(DEPLOY, "ONNX opset.", 18, kind=int, low=7, group=EXPORT)
    tolerance: float = _opt(
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
    batch_sizes: list[int] = _opt(
        DEPLOY, "Batch sizes to time.", factory=lambda: [1, 64], many=True, group=BENCHMARK, **_COUNT
    )
    engines: list[str] = _opt(
        DEPLOY,
        "Inference engines to time (`bench plugins` lists them): auto = every installed engine that runs here "
        "(onnxruntime, torch, openvino with its extra); torch-compile by name.",
        factory=lambda: ["auto"],
        many=True,
        group=BENCHMARK,
    )
    providers: list[str] = _opt(
        DEPLOY,
        "Devices: auto = cpu, plus cuda when a GPU is visible; tensorrt (onnxruntime's TensorRT provider) by name.",
        factory=lambda: ["auto"],
        many=True,
        choices=PROVIDERS,
        group=BENCHMARK,
    )
    warmup: int = _opt(DEPLOY, "Untimed runs before timing.", 10, kind=int, low=0, group=BENCHMARK)
    min_runs: int = _opt(DEPLOY, "Timed runs: at least this many...", 100, group=BENCHMARK, **_COUNT)
    min_time: float = _opt(
        DEPLOY, "...lasting at least this many seconds.", 1.0, kind=float, low=0, high=MAX_MIN_TIME, group=BENCHMARK
    )
    bench_threads: int | None = _opt(
        DEPLOY,
        "Intra-op threads for onnxruntime and PyTorch (default: torch's thread count).",
        kind=int,
        low=1,
        high=MAX_THREADS,
        group=BENCHMARK,
    )
    graph_optimization: str = _opt(
        DEPLOY,
        "onnxruntime graph optimization level; auto: the faster of extended and all "
        "in a 20-run probe, per model and batch size (recorded).",
        "auto",
        choices=GRAPH_OPTIMIZATIONS,
        group=BENCHMARK,
    )
    batch_curve: bool = _opt(
        DEPLOY,
        "Also time batch sizes 1 to 256 (powers of two, at least 10 runs each beyond "
        "--batch-sizes), stopping after a batch that takes over 2 s or fails (out of memory).",
        False,
        kind=bool,
        group=BENCHMARK,
    )
    repeat: int = _opt(
        DEPLOY,
        "Time every model this many times, one after the other; every repetition is kept, and the report shows "
        "their spread.",
        1,
        group=BENCHMARK,
        **_COUNT,
    )
    quantize: list[str] = _opt(
        DEPLOY,
        "Variants made of each exported model, checked and benchmarked beside fp32: "
        "int8 (static, QDQ, per-channel; dynamic where static is impossible), fp16; none.",
        factory=lambda: list(VARIANT_PRECISIONS),
        many=True,
        choices=VARIANT_PRECISIONS,
        empty="none",
        group=QUANTIZE,
    )
    calibration_images: int = _opt(
        DEPLOY, "Training images that calibrate the int8 activations.", 512, group=QUANTIZE, **_COUNT
    )
    calibration_method: str = _opt(
        DEPLOY,
        "onnxruntime's calibrator for the int8 activation ranges.",
        "minmax",
        choices=CALIBRATION_METHODS,
        group=QUANTIZE,
    )
    max_accuracy_drop: float = _opt(
        DEPLOY,
        "Points of test accuracy a variant may lose against fp32 before it is flagged (it is kept).",
        1.0,
        kind=float,
        low=0,
        high=100,
        group=QUANTIZE,
    )

    def __post_init__(self):
        self.check()

    def asdict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """A config from ``asdict()`` output or a --config file's table (unknown keys refused, naming them)."""
        names = set(option_names())
        d = {ALIASES.get(k, k).replace("-", "_"): v for k, v in d.items()}
        extra = sorted(set(d) - names)
        if extra:
            raise UsageError(f"unknown option '{extra[0]}' (known: {', '.join(sorted(names))})")
        return cls(**d)

    @classmethod
    def from_record(cls, recorded: dict) -> RunConfig:
        """The config a stored run recorded, including runs recorded before RunConfig (cnnbench <= 0.5). A run stays
        usable on another machine: thread counts recorded on a larger one are this machine's CPU count here."""
        names = set(option_names())
        recorded = {
            k: min(v, MAX_THREADS) if k in MACHINE_BOUND and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in recorded.items()
        }
        if "axes" not in recorded:
            return cls(**{k: v for k, v in recorded.items() if k in names})
        legacy = {k: v for k, v in recorded.items() if k in names and k != "plugins"}
        legacy.update({k: v for k, v in (recorded.get("axes") or {}).items() if k in AXES})
        legacy.update({k: v for k, v in (recorded.get("data") or {}).items() if v is not None})
        legacy["plugin"] = recorded.get("plugins") or []
        legacy["arch"] = recorded.get("architectures") or []
        if isinstance(legacy.get("nesterov"), list):
            legacy["nesterov"] = legacy["nesterov"][0]
        return cls(**legacy)

    def data_options(self) -> dict:
        """The keyword arguments of bench.plugins.load_dataset, besides the dataset's name."""
        return {
            "data_dir": self.data_dir,
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
            "limit_train": self.limit_train,
            "cache_dir": self.cache_dir,
        }

    def axes(self) -> dict[str, list | None]:
        """The grid's axes: values per hyperparameter, None where the architecture's default applies."""
        out = {k: getattr(self, k) for k in AXES}
        out["nesterov"] = None if self.nesterov is None else [self.nesterov]
        return out

    def fixed(self) -> dict:
        """The train-stage options that are not axes: one value for every trial of the run."""
        return {name: getattr(self, name) for name in option_names(TRAIN) if name not in AXES}

    def check(self) -> None:
        """Refuse values no run can use, naming the option, before anything is recorded; normalize the rest (one
        value where a list is expected becomes a list, repeated values go, numbers become their type)."""
        for f in fields(self):
            setattr(self, f.name, check_field(f.name, f.metadata["option"], getattr(self, f.name), _default(f)))
        if self.trials and self.search == "grid":
            raise UsageError("--trials needs --search random or tpe (a grid runs every combination)")
        if self.search != "grid" and not self.trials:
            raise UsageError(f"--search {self.search} needs --trials N")
        if self.pruner != "none" and self.search != "tpe":
            raise UsageError(f"--pruner {self.pruner} needs --search tpe")
        if self.pruner != "none" and self.executor == "ray":
            raise UsageError(f"--pruner {self.pruner} is for the local executor: with --executor ray, --scheduler asha")
        if not self.track and (self.tracking_uri or self.experiment != "cnnbench"):
            given = "tracking-uri" if self.tracking_uri else "experiment"
            raise UsageError(f"--{given} is for --track mlflow")
        if self.executor == "local":
            given = [name for name, default in RAY_ONLY.items() if getattr(self, name) != default]
            if given:
                raise UsageError(f"--{flag(given[0])} is for --executor ray; the local executor would ignore it")


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


def check_field(name: str, option: Option, value, default):
    if value is None and default is None:
        return None
    if option.nested:
        return _check_nested(name, value)
    if option.kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise invalid(name, value, option.requirement())
        return {k: list(v) if isinstance(v, list | tuple) else [v] for k, v in value.items()}
    if not option.is_list:
        return option.value(name, value)
    if isinstance(value, tuple):
        value = list(value)
    elif not isinstance(value, list):
        value = [value]  # one value given where a list is expected
    if option.empty is not None and option.empty in value:
        if value != [option.empty]:
            raise invalid(name, ",".join(map(str, value)), f"{option.empty} alone, or {option.requirement()}")
        return []
    out = [option.value(name, v) for v in value]
    return list(dict.fromkeys(out)) if option.unique else out


def _check_nested(name: str, value) -> dict[str, dict]:
    """per_arch: {ARCH: {OPTION: value}} (or the command line's "ARCH:OPTION=V[,V...]" items), every OPTION a
    training option and every value checked as that option checks it."""
    if isinstance(value, list | tuple):  # the command line's items
        table: dict[str, dict] = {}
        for item in value:
            arch, colon, rest = str(item).partition(":")
            key, equals, values = rest.partition("=")
            if not (colon and equals and arch.strip() and key.strip() and values.strip()):
                raise invalid(name, item, option_of(name).requirement())
            table.setdefault(arch.strip(), {})[key.strip()] = [v.strip() for v in values.split(",")]
        value = table
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in value.items()):
        raise invalid(name, value, option_of(name).requirement())
    trainable = option_names(TRAIN)
    out: dict[str, dict] = {}
    for arch, options in value.items():
        out[arch] = {}
        for key, given in options.items():
            field_name = key.replace("-", "_")
            if field_name not in trainable:
                raise invalid(name, f"{arch}:{key}", why=f"is not a training option ({', '.join(trainable)})")
            option = option_of(field_name)
            values = list(given) if isinstance(given, list | tuple) else [given]
            if option.kind is bool:  # true/false as the command line writes them
                values = [{"true": True, "false": False}.get(v.lower(), v) if isinstance(v, str) else v for v in values]
            if option.subset:  # --augment flip,crop: one value written with commas
                values = [",".join(map(str, values))]
            if not option.is_list:
                if len(values) != 1:
                    raise invalid(field_name, ",".join(map(str, values)), why="takes one value")
                values = values[0]
            try:
                out[arch][field_name] = check_field(field_name, option, values, None)
            except UsageError as exc:
                raise UsageError(f"--per-arch {arch}: {exc}") from None
    return out


# Options whose upper limit is this machine's (MAX_THREADS): a recorded value is clipped to it (from_record).
MACHINE_BOUND = ("threads", "bench_threads")
# The grid's axes, in their nesting order (the order of their fields).
AXES = tuple(f.name for f in fields(RunConfig) if f.metadata["option"].axis)
# The Ray executor's own options, with their defaults: the local executor refuses other values.
RAY_ONLY = {"ray_address": None, "storage": None, "scheduler": "fifo", "cpus_per_trial": 1, "gpus_per_trial": 0}
# Keys of a --config file that name a field differently (kept from earlier releases).
ALIASES = {"plugins": "plugin", "architectures": "arch"}


def option_of(name: str) -> Option:
    return next(f.metadata["option"] for f in fields(RunConfig) if f.name == name)


def option_names(stage: str | None = None, group: str | None = None) -> list[str]:
    """The fields of ``stage`` (and of its ``group``), in declaration order."""
    return [
        f.name
        for f in fields(RunConfig)
        if (stage is None or f.metadata["option"].stage == stage)
        and (group is None or f.metadata["option"].group == group)
    ]


def defaults() -> dict:
    return {f.name: _default(f) for f in fields(RunConfig)}


def default(name: str):
    """The default of field ``name``, as a stage's settings dataclass holds it (lists as tuples)."""
    return _frozen(defaults()[name])


def settings(cls, config: RunConfig):
    """A stage's settings dataclass ``cls`` filled from the config fields of the same names (lists as tuples)."""
    return cls(**{f.name: _frozen(getattr(config, f.name)) for f in fields(cls)})


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


# --- the hyperparameters of one trial -------------------------------------------------------------------------


def _trial_fields() -> list[tuple[str, Any, Any]]:
    out = []
    for f in fields(RunConfig):
        option = f.metadata["option"]
        if option.stage == TRAIN:
            default = option.trial_default if option.axis else _default(f)
            out.append((f.name, option.kind | None, field(default=default, metadata=f.metadata)))
    return out


def _check_trial(hp) -> None:
    for f in fields(hp):
        option = f.metadata["option"]
        value = getattr(hp, f.name)
        if value is not None or f.default is not None:
            object.__setattr__(hp, f.name, option.value(f.name, value))
    epochs = hp.epochs
    if hp.warmup_epochs is not None and hp.warmup_epochs >= epochs:
        raise invalid("warmup_epochs", hp.warmup_epochs, "a number >= 0 and below --epochs")
    if hp.nesterov and hp.optimizer == "sgd" and hp.momentum == 0:
        raise UsageError("Invalid value for '--nesterov': Nesterov momentum needs --momentum above 0")


def _hparams_as_dict(hp) -> dict:
    return asdict(hp)


def _hparams_from_dict(cls, d: dict):
    """The hyperparameters a stored trial recorded; one recorded before a field existed has its default."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


HParams = make_dataclass(
    "HParams",
    _trial_fields(),
    frozen=True,
    namespace={
        "__doc__": "The hyperparameters of one trial: RunConfig's train-stage fields, one value each (the axes at "
        "their cnnbench defaults). Checked as they are built, with the options' own checks.",
        "__post_init__": _check_trial,
        "as_dict": _hparams_as_dict,
        "from_dict": classmethod(_hparams_from_dict),
    },
)
HParams.__module__ = __name__  # pickled by name (Ray, saved training states); Python 3.12's make_dataclass(module=)


# --- the options as documentation -----------------------------------------------------------------------------

STAGE_HEADINGS = {
    PLAN: "What to train (the run's plan: a resume keeps it)",
    TRAIN: "How each trial trains (recorded with every trial; the axes are lists, one grid point per value; a resume "
    "keeps them)",
    EXECUTE: "Where and how the trials run (a resume may change these)",
    DEPLOY: "What happens to the winners (a resume may change these; `bench export`, `benchmark` and `quantize` take "
    "the options of their group)",
}


def docs_markdown() -> str:
    """docs/run-options.md, made from the declarations (tests/test_options.py checks the committed file)."""
    lines = [
        "# Run options: `bench run`, `--config` files and `bench.RunConfig`",
        "",
        "<!-- Generated from bench/options.py by `python -m bench.options > docs/run-options.md`: edit the "
        "declarations, not this file. -->",
        "",
        "Every option of `bench run` is a field of `bench.RunConfig` with the same name (`--top-k` is `top_k`), a key "
        "a `--config` file may set (TOML: `top_k = 2`; lists as arrays or comma-separated text; `where` as a table, "
        "`where = { kernel_size = [3, 5] }`), and part of what the store records with the run (`bench runs --json`, "
        "the report's parameters). A value is checked the same way wherever it comes from, and a bad one is one line: "
        "`Invalid value for '--lr': -1.0 (a number > 0)`. An axis left unset takes the architecture's default from its "
        "plugin, then cnnbench's (`bench list --json` shows each architecture's `defaults`).",
        "",
        "`bench run --resume RUN` trains the stored plan of RUN: it refuses the options of the first two tables, and "
        "takes those of the others from the command line or, where not given, from what RUN recorded.",
    ]
    for stage in STAGES:
        lines += [
            "",
            f"## {STAGE_HEADINGS[stage]}",
            "",
            "| field | option | default | values | meaning |",
            "| --- | --- | --- | --- | --- |",
        ]
        for f in fields(RunConfig):
            option = f.metadata["option"]
            if option.stage != stage:
                continue
            names = f"`--{flag(f.name)}`" + (f", `{option.short}`" if option.short else "")
            if option.kind is bool and _default(f) is None:
                names += f", `--no-{flag(f.name)}`"
            default = option.trial_default if option.axis else _default(f)
            shown = "-" if default in (None, [], {}, "") else f"`{_toml(default)}`"
            values = option.requirement() + (", comma-separated" if option.is_list and not option.repeat else "")
            if option.group:
                values += f" ({option.group})"
            meaning = " ".join(x for x in (option.help, option.docs) if x).replace("|", "\\|")
            lines.append(f"| `{f.name}` | {names} | {shown} | {values} | {meaning} |")
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":  # python -m bench.options > docs/run-options.md
    print(docs_markdown(), end="")
