"""The options of a run, in one place: `RunConfig`. Its fields are the options of `bench run`, the keys a
`--config` file may set, and (``asdict``) what the store records with the run."""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields

from bench.errors import UsageError

# The hyperparameters that can be swept (a list of values each, None = the architecture's default). The order
# is the nesting of the grid.
AXES = ("optimizer", "lr", "batch_size", "epochs", "momentum", "weight_decay", "val_ratio", "seed", "schedule",
        "warmup_epochs", "label_smoothing", "nesterov")  # fmt: skip

# Upper limits of run options (the CLI's option types use the same): more threads than CPUs never trains faster
# and thousands stall the machine; a benchmark's minimum time is bounded so that it ends.
MAX_THREADS = os.cpu_count() or 1
MAX_MIN_TIME = 600.0

# What each field is for: "plan" fields decide the trials (a resumed run keeps its recorded plan), "execute"
# fields how they run, "deploy" fields what happens to the winners.
PLAN, EXECUTE, DEPLOY = "plan", "execute", "deploy"


def _f(stage: str, default=None, *, factory=None):
    if factory is not None:
        return field(default_factory=factory, metadata={"stage": stage})
    return field(default=default, metadata={"stage": stage})


@dataclass
class RunConfig:
    """Everything `bench run` can be told; every field has the CLI option of the same name (``--top-k`` for
    ``top_k``) and the same meaning. List fields are axes of the grid: each value is tried."""

    # What to train
    plugin: list[str] = _f(PLAN, factory=list)  # every architecture of these plugins
    arch: list[str] = _f(PLAN, factory=list)  # architectures whose name matches these patterns ('cnn_*')
    variants: str = _f(PLAN, "default")  # the plugins' default variant set, or 'all'
    where: dict[str, list] = _f(PLAN, factory=dict)  # keep variants whose PARAM is one of the values
    # The data
    dataset: str = _f(PLAN, "digits")  # a dataset name, or imagefolder:PATH (see `bench datasets`)
    data_dir: str | None = _f(PLAN)  # where the dataset's files are (default ./data)
    download: bool = _f(EXECUTE, False)  # download missing dataset files into data_dir
    image_size: int | None = _f(PLAN)  # imagefolder: resize images to this size (default 32)
    mean: list[float] | None = _f(PLAN)  # replaces the dataset's per-channel mean (one value, or one per channel)
    std: list[float] | None = _f(PLAN)  # replaces its per-channel standard deviation
    augment: str = _f(PLAN, "")  # on the training device: flip, altflip, crop, translate, grayscale (comma-separated)
    # Hyperparameter axes (None: the architecture's default from its plugin, then cnnbench's)
    batch_size: list[int] | None = _f(PLAN)
    lr: list[float] | None = _f(PLAN)
    epochs: list[int] | None = _f(PLAN)
    optimizer: list[str] | None = _f(PLAN)  # sgd (with momentum), adam, adamw
    momentum: list[float] | None = _f(PLAN)
    weight_decay: list[float] | None = _f(PLAN)
    val_ratio: list[float] | None = _f(PLAN)  # share of the training images held out for validation
    seed: list[int] | None = _f(PLAN)  # initialization, shuffling and the train/validation split
    schedule: list[str] | None = _f(PLAN)  # constant, cosine, onecycle, step
    warmup_epochs: list[float] | None = _f(PLAN)  # linear warm-up to lr over this many epochs
    label_smoothing: list[float] | None = _f(PLAN)  # of the training loss only
    nesterov: bool | None = _f(PLAN)  # Nesterov momentum (sgd)
    # How each trial trains
    precision: str = _f(PLAN, "auto")  # fp32, bf16 (autocast of the training steps), auto (measured choice)
    channels_last: bool | None = _f(PLAN)  # NHWC layout for training; None: on where the model accepts it
    compile: bool = _f(PLAN, False)  # torch.compile the model for training
    lookahead: bool = _f(PLAN, False)  # airbench's lookahead: weights pulled towards their average every 5 steps
    select: str = _f(PLAN, "val_loss")  # the best checkpoint: lowest val_loss or highest val_acc
    patience: int | None = _f(PLAN)  # stop a trial after this many epochs without a better selection metric
    search: str = _f(PLAN, "grid")  # every combination, or `trials` of them drawn without repeats (random)
    trials: int | None = _f(PLAN)  # with search 'random': how many
    # Where the trials run
    executor: str = _f(EXECUTE, "local")  # local: one after the other in this process; ray: Ray Tune trials
    device: str = _f(EXECUTE, "auto")  # auto, cpu, cuda or cuda:N (local executor)
    threads: int | None = _f(EXECUTE)  # torch's CPU threads (default: torch's choice; a resume reuses the run's)
    ray_address: str | None = _f(EXECUTE)  # ray: an existing cluster (default: start a local Ray)
    cpus_per_trial: float = _f(EXECUTE, 1)  # ray: CPUs (and torch threads) per trial
    gpus_per_trial: float = _f(EXECUTE, 0)  # ray: GPUs per trial
    storage: str | None = _f(EXECUTE)  # ray: where trials put checkpoints, reachable by every node
    scheduler: str = _f(EXECUTE, "fifo")  # ray: fifo, or asha (stops weak trials early, recorded as pruned)
    # What happens to the winners
    top_k: int = _f(DEPLOY, 1)  # export and benchmark the best K trials of each architecture
    no_benchmark: bool = _f(DEPLOY, False)  # skip the ONNX export and benchmark of the winners
    exporter: str = _f(DEPLOY, "dynamo")  # torch.onnx exporter: dynamo (falls back to torchscript) or torchscript
    opset: int = _f(DEPLOY, 18)  # ONNX opset
    tolerance: float = _f(DEPLOY, 1e-4)  # largest |logit difference| against PyTorch accepted
    batch_sizes: list[int] = _f(DEPLOY, factory=lambda: [1, 64])  # batch sizes to time
    providers: list[str] = _f(DEPLOY, factory=lambda: ["auto"])  # cpu, cuda; auto = cpu, plus cuda when visible
    warmup: int = _f(DEPLOY, 10)  # untimed runs before timing
    min_runs: int = _f(DEPLOY, 100)  # timed runs: at least this many...
    min_time: float = _f(DEPLOY, 1.0)  # ...lasting at least this many seconds
    bench_threads: int | None = _f(DEPLOY)  # intra-op threads for onnxruntime and PyTorch (default: torch's)
    graph_optimization: str = _f(DEPLOY, "auto")  # onnxruntime level; auto: the faster of extended and all
    batch_curve: bool = _f(DEPLOY, False)  # also time batch sizes 1..256 (powers of two) until time or memory runs out
    quantize: list[str] = _f(DEPLOY, factory=lambda: ["int8", "fp16"])  # variants of each exported winner; [] = none
    calibration_images: int = _f(DEPLOY, 512)  # training images that calibrate the int8 activations
    calibration_method: str = _f(DEPLOY, "minmax")  # minmax, entropy, percentile (onnxruntime's calibrators)
    max_accuracy_drop: float = _f(DEPLOY, 1.0)  # points of test accuracy a variant may lose before it is flagged

    def __post_init__(self):
        self.check()

    def asdict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """A config from ``asdict()`` output or a --config file's table (unknown keys refused, naming them)."""
        names = {f.name for f in fields(cls)}
        d = {ALIASES.get(k, k).replace("-", "_"): v for k, v in d.items()}
        extra = sorted(set(d) - names)
        if extra:
            raise UsageError(f"unknown option '{extra[0]}' (known: {', '.join(sorted(names))})")
        return cls(**d)

    @classmethod
    def from_record(cls, recorded: dict) -> RunConfig:
        """The config a stored run recorded, including runs recorded before RunConfig (cnnbench <= 0.5)."""
        if "axes" not in recorded:
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in recorded.items() if k in names})
        legacy = {k: v for k, v in recorded.items() if k in {f.name for f in fields(cls)} and k != "plugins"}
        legacy.update({k: v for k, v in (recorded.get("axes") or {}).items() if k in AXES})
        legacy.update({k: v for k, v in (recorded.get("data") or {}).items() if v is not None})
        legacy["plugin"] = recorded.get("plugins") or []
        legacy["arch"] = recorded.get("architectures") or []
        if isinstance(legacy.get("nesterov"), list):
            legacy["nesterov"] = legacy["nesterov"][0]
        return cls(**legacy)

    def data_options(self) -> dict:
        """The keyword arguments of bench.plugins.load_dataset, besides the dataset's name."""
        return {"data_dir": self.data_dir, "image_size": self.image_size, "mean": self.mean, "std": self.std}

    def axes(self) -> dict[str, list | None]:
        """The grid's axes: values per hyperparameter, None where the architecture's default applies."""
        out = {k: getattr(self, k) for k in AXES}
        out["nesterov"] = None if self.nesterov is None else [self.nesterov]
        return out

    def check(self) -> None:
        """Refuse values no run can use, with the option named, before anything is recorded."""
        if self.quantize in ("none", ["none"], ("none",)):
            self.quantize = []
        for name in ("plugin", "arch", "batch_sizes", "providers", "quantize", "mean", "std") + AXES:
            value = getattr(self, name)
            if name != "nesterov" and value is not None and not isinstance(value, list):
                # one value given where a list is expected; tuples (from click) become lists
                setattr(self, name, list(value) if isinstance(value, tuple) else [value])
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            for v in value if isinstance(value, list) else [value]:
                if v not in allowed:
                    raise UsageError(f"invalid value for --{_opt(name)}: {v!r} (one of {', '.join(allowed)})")
        for name, low in (("cpus_per_trial", 0), ("min_time", -1), ("tolerance", -1), ("gpus_per_trial", -1),
                          ("max_accuracy_drop", -1)):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v <= low:
                what = "> 0" if low == 0 else ">= 0"
                raise UsageError(f"invalid value for --{_opt(name)}: {v!r} (a finite number {what})")
        for name, low in (("top_k", 1), ("opset", 7), ("warmup", 0), ("min_runs", 1), ("threads", 1),
                          ("bench_threads", 1), ("trials", 1), ("patience", 1), ("image_size", 4),
                          ("calibration_images", 1)):  # fmt: skip
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise UsageError(f"invalid value for --{_opt(name)}: {v!r} (an integer >= {low})")
        limits = {"threads": MAX_THREADS, "bench_threads": MAX_THREADS, "min_time": MAX_MIN_TIME, "tolerance": 1,
                  "max_accuracy_drop": 100}  # fmt: skip
        for name, high in limits.items():
            if (getattr(self, name) or 0) > high:
                raise UsageError(f"invalid value for --{_opt(name)}: {getattr(self, name)} (at most {high} here)")
        if self.trials and self.search != "random":
            raise UsageError("--trials needs --search random (a grid runs every combination)")
        if self.executor == "local":
            given = [name for name, default in RAY_ONLY.items() if getattr(self, name) != default]
            if given:
                raise UsageError(f"--{_opt(given[0])} is for --executor ray; the local executor would ignore it")


# The Ray executor's own options, with their defaults: the local executor refuses other values.
RAY_ONLY = {"ray_address": None, "storage": None, "scheduler": "fifo", "cpus_per_trial": 1, "gpus_per_trial": 0}
# Keys of a --config file that name a field differently (kept from earlier releases).
ALIASES = {"plugins": "plugin", "architectures": "arch"}
CHOICES = {
    "variants": ("default", "all"),
    "precision": ("auto", "fp32", "bf16"),
    "select": ("val_loss", "val_acc"),
    "search": ("grid", "random"),
    "executor": ("local", "ray"),
    "scheduler": ("fifo", "asha"),
    "exporter": ("dynamo", "torchscript"),
    "graph_optimization": ("auto", "disable", "basic", "extended", "all"),
    "providers": ("auto", "cpu", "cuda"),
    "quantize": ("int8", "fp16"),
    "calibration_method": ("minmax", "entropy", "percentile"),
}


def _opt(name: str) -> str:
    return name.replace("_", "-")


def stage_of(name: str) -> str:
    return next(f.metadata["stage"] for f in fields(RunConfig) if f.name == name)


def field_names(stage: str | None = None) -> list[str]:
    return [f.name for f in fields(RunConfig) if stage is None or f.metadata["stage"] == stage]


def defaults() -> dict:
    return {f.name: (f.default_factory() if f.default is MISSING else f.default) for f in fields(RunConfig)}


def bench_settings(config: RunConfig):
    """The inference benchmark's settings in ``config``."""
    from bench.inference import BenchSettings

    return BenchSettings(tuple(config.batch_sizes), tuple(config.providers), config.warmup, config.min_runs,
                         config.min_time, config.bench_threads, config.graph_optimization,
                         config.batch_curve)  # fmt: skip


def quantize_settings(config: RunConfig):
    """The int8/fp16 variants' settings in ``config``."""
    from bench.quantize import QuantizeSettings

    return QuantizeSettings(tuple(config.quantize), config.calibration_images, config.calibration_method,
                            config.max_accuracy_drop)  # fmt: skip
