"""The `bench` command's options: click types for numbers and comma lists, the option lists shared by
commands, `bench run`'s options (one per RunConfig field, whose defaults they show) and its --config files."""

from __future__ import annotations

import math
import re
from pathlib import Path

import click

from bench.errors import UsageError
from bench.sweep.config import MAX_MIN_TIME, MAX_THREADS
from bench.sweep.config import defaults as config_defaults


class Finite(click.FloatRange):
    """A number in [min, max], never nan or inf."""

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return value


MAX_SEED = 2**32 - 1


class CommaList(click.ParamType):
    """``1e-3,1e-2`` -> [0.001, 0.01]: each item checked by ``item`` (a click type); repeats dropped, unless
    ``unique`` is False (per-channel values such as --mean 0.5,0.5,0.4, where position matters)."""

    def __init__(self, item: click.ParamType, finite: bool = True, unique: bool = True):
        self.item = item
        self.finite = finite
        self.unique = unique
        self.name = f"{item.name}[,...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        out = []
        for raw in str(value).split(","):
            raw = raw.strip()
            if not raw:
                self.fail(f"{value!r} has an empty item", param, ctx)
            converted = self.item.convert(raw, param, ctx)
            if self.finite and isinstance(converted, float) and not math.isfinite(converted):
                self.fail(f"{raw!r} is not a finite number", param, ctx)
            if converted not in out or not self.unique:
                out.append(converted)
        return out


class DeviceName(click.ParamType):
    """auto, cpu, cuda or cuda:N, checked as typed (whether CUDA is there is asked of torch when the run starts)."""

    name = "device"

    def convert(self, value, param, ctx):
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", str(value)):
            self.fail(f"{value!r} (auto, cpu, cuda or cuda:N)", param, ctx)
        return str(value)


def _note_store(ctx, param, value):
    """Keep the store's path where an error at the command's boundary can name it."""
    ctx.ensure_object(dict)["store"] = value
    return value


def store_option(f):
    return click.option(
        "--store",
        "store_path",
        type=click.Path(dir_okay=True),
        envvar="BENCH_STORE",
        show_envvar=True,
        callback=_note_store,
        help="Results database (default: runs/bench.db).",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


# fmt: off
EXPORT_OPTIONS = [
    click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), show_default=True,
                 help="torch.onnx exporter (dynamo falls back to torchscript if it fails, and says so)."),
    click.option("--opset", type=click.IntRange(min=7), show_default=True, help="ONNX opset."),
    click.option("--tolerance", type=Finite(0, 1), show_default=True,
                 help="Largest |logit difference| against PyTorch accepted."),
]
BENCHMARK_OPTIONS = [
    click.option("--batch-sizes", type=CommaList(click.IntRange(min=1)), show_default=True,
                 help="Batch sizes to time."),
    click.option("--providers", type=CommaList(click.Choice(["auto", "cpu", "cuda"])),
                 show_default=True, help="auto = cpu, plus cuda when a GPU is visible."),
    click.option("--warmup", type=click.IntRange(min=0), show_default=True,
                 help="Untimed runs before timing."),
    click.option("--min-runs", type=click.IntRange(min=1), show_default=True,
                 help="...and count at least this many runs."),
    click.option("--min-time", type=Finite(0, MAX_MIN_TIME), show_default=True,
                 help="Timed runs last at least this many seconds..."),
    click.option("--bench-threads", type=click.IntRange(1, MAX_THREADS),
                 help="Intra-op threads for onnxruntime and PyTorch (default: torch's thread count)."),
    click.option("--graph-optimization", type=click.Choice(["auto", "disable", "basic", "extended", "all"]),
                 show_default=True,
                 help="onnxruntime graph optimization level; auto: the faster of extended and all in a 20-run "
                 "probe, per model and batch size (recorded)."),
    click.option("--batch-curve", is_flag=True,
                 help="Also time batch sizes 1 to 256 (powers of two, at least 10 runs each beyond --batch-sizes), "
                 "stopping after a batch that takes over 2 s or fails (out of memory)."),
]
QUANTIZE_OPTIONS = [
    click.option("--quantize", type=CommaList(click.Choice(["int8", "fp16", "none"])), show_default=True,
                 help="Variants made of each exported model, checked and benchmarked beside fp32: int8 (static, QDQ, "
                 "per-channel; dynamic where static is impossible), fp16; none."),
    click.option("--calibration-images", type=click.IntRange(min=1), show_default=True,
                 help="Training images that calibrate the int8 activations."),
    click.option("--calibration-method", type=click.Choice(["minmax", "entropy", "percentile"]), show_default=True,
                 help="onnxruntime's calibrator for the int8 activation ranges."),
    click.option("--max-accuracy-drop", type=Finite(0, 100), show_default=True,
                 help="Points of test accuracy a variant may lose against fp32 before it is flagged (it is kept)."),
]
# fmt: on


def options(*groups):
    """Apply lists of click options (and single decorators) in the order they are listed."""
    decorators = [d for g in groups for d in (g if isinstance(g, list) else [g])]

    def apply(f):
        for decorate in reversed(decorators):
            f = decorate(f)
        return f

    return apply


def parse_where(items: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parts = [v.strip() for v in values.split(",")]
        if not sep or not key.strip() or not all(parts):
            raise UsageError(f"invalid value for --where: {item!r} (expected PARAM=VALUE[,VALUE...])")
        out.setdefault(key.strip(), []).extend(parts)
    return out


def where_given(ctx, items: tuple[str, ...]) -> dict[str, list[str]]:
    """`bench run`'s variant filter: a config file's ``where`` table with the command line's --where replacing it
    parameter by parameter (``--where widths=64-256-256`` changes one axis of a file that fixes five, rather
    than dropping the other four and planning every variant they had kept out)."""
    where = parse_where(items)
    if ctx.get_parameter_source("where") is click.core.ParameterSource.COMMANDLINE:
        where = {**parse_where(tuple((ctx.default_map or {}).get("where", ()))), **where}
    return where


# `bench run`'s parameters that are not RunConfig fields.
NOT_CONFIG = ("config", "resume_ref", "store_path", "as_json", "quiet")


def load_config(ctx, param, value):
    """--config FILE.toml: the file's keys (RunConfig's fields) become the defaults of `bench run`'s options, so
    options given on the command line override them. Every key is checked as its option, with the file named."""
    import tomllib

    from bench.sweep.config import ALIASES

    if not value:
        return value
    path = Path(value)
    try:
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", ctx, param) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}", ctx, param) from None
    params = {p.name: p for p in ctx.command.params if p.name not in NOT_CONFIG}
    defaults = {}
    for key, raw in table.items():
        name = ALIASES.get(key, key).replace("-", "_")
        if name not in params:
            raise click.UsageError(f"{path}: unknown key '{key}' (known: {', '.join(sorted(params))})", ctx)
        try:
            defaults[name] = _config_value(raw, params[name], ctx)
        except click.BadParameter as exc:
            raise click.UsageError(f"{path}: key '{key}': {exc.message}", ctx) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _config_value(raw, option, ctx):
    """A TOML value checked and converted as the option would convert it from the command line."""
    if option.name == "where":
        if not isinstance(raw, dict):
            raise click.BadParameter("expected a table, e.g. where = { kernel_size = [3, 5] }")
        return tuple(f"{k}={','.join(map(str, v if isinstance(v, list) else [v]))}" for k, v in raw.items())
    if option.multiple:
        items = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(i, str) for i in items):
            raise click.BadParameter(f"expected text or a list of text, not {raw!r}")
        return tuple(items)
    if option.is_flag:
        if not isinstance(raw, bool):
            raise click.BadParameter(f"expected true or false, not {raw!r}")
        return raw
    if isinstance(raw, bool | dict):
        raise click.BadParameter(f"unexpected value {raw!r}")
    text = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
    if isinstance(raw, list) and not isinstance(option.type, CommaList):
        raise click.BadParameter(f"takes one value, not a list ({raw!r})")
    return option.type.convert(text, option, ctx)


FLOATS, POSITIVE = CommaList(click.FLOAT, unique=False), CommaList(click.FloatRange(min=0, min_open=True), unique=False)


_opt = click.option


# fmt: off
RUN_OPTIONS = [
    _opt("--config", type=click.Path(dir_okay=False), is_eager=True, callback=load_config,
         help="A TOML file of these options (e.g. configs/rob313.toml); options given here override it."),
    _opt("--plugin", "-p", "plugin", multiple=True, help="Run every architecture of this plugin."),
    _opt("--arch", "-a", "arch", multiple=True,
         help="Run architectures whose name matches this pattern (e.g. 'cnn_*')."),
    _opt("--variants", type=click.Choice(["default", "all"]), show_default=True,
         help="The plugin's default variant set, or its whole variant space."),
    _opt("--where", multiple=True, metavar="PARAM=V[,V...]",
         help="Keep variants whose PARAM is one of the values, e.g. --where kernel_size=3,5. Replaces a --config "
              "file's filter for the parameters it names only."),
    _opt("--dataset", "-d", show_default=True,
         help="Dataset name, or imagefolder:PATH (see `bench datasets`)."),
    _opt("--data-dir", type=click.Path(file_okay=False), help="Where the dataset's files are (default: ./data)."),
    _opt("--download", is_flag=True, help="Download the dataset's files into --data-dir when missing."),
    _opt("--image-size", type=click.IntRange(min=4), help="imagefolder: resize images to this size (default 32)."),
    _opt("--mean", type=FLOATS, help="Replace the dataset's per-channel mean (after scaling)."),
    _opt("--std", type=POSITIVE, help="Replace its per-channel std."),
    _opt("--augment", help="Augmentations on the training device: flip,altflip,crop,translate,grayscale "
         "(altflip: each image mirrored in every other epoch)."),
    _opt("--precision", type=click.Choice(["auto", "fp32", "bf16"]), show_default=True,
         help="bf16: autocast the training steps (evaluation stays fp32). auto: bf16 where it was measured faster "
         "(a probe, once per machine; models of 5 MFLOPs or more per image), else fp32."),
    _opt("--channels-last/--no-channels-last", default=None,
         help="NHWC memory layout for training (default: on when the model accepts it; it was never slower)."),
    _opt("--compile", is_flag=True, help="torch.compile the model for training (slow start, faster steps)."),
    _opt("--lookahead", is_flag=True, help="airbench's lookahead: every 5 steps the weights move to their running "
         "average, whose decay rises over the trial to 0.77; the last step leaves them at the average."),
    _opt("--batch-size", "-b", type=CommaList(click.IntRange(min=1)), help="Batch sizes, e.g. 32,64."),
    _opt("--lr", type=CommaList(click.FloatRange(min=0, min_open=True)), help="Learning rates, e.g. 1e-3,1e-2."),
    _opt("--epochs", "-e", type=CommaList(click.IntRange(min=1)), help="Epochs per trial."),
    _opt("--optimizer", type=CommaList(click.Choice(["sgd", "adam", "adamw"])), help="sgd (momentum), adam, adamw."),
    _opt("--momentum", type=CommaList(click.FloatRange(0, 1, max_open=True)), help="SGD momentum (default 0.9)."),
    _opt("--weight-decay", type=CommaList(click.FloatRange(min=0)), help="Weight decay (default 0)."),
    _opt("--val-ratio", type=CommaList(click.FloatRange(0, 1, min_open=True, max_open=True)),
         help="Share of the training images held out for validation (default 0.2)."),
    _opt("--seed", type=CommaList(click.IntRange(0, MAX_SEED)),
         help="Seeds (default 0), 0 to 2^32-1: init, shuffling, split."),
    _opt("--schedule", type=CommaList(click.Choice(["constant", "cosine", "onecycle", "step"])),
         help="Learning rate over the steps (default constant): cosine annealing to 0, onecycle (torch's "
         "OneCycleLR), step (x0.1 at 50% and 75%)."),
    _opt("--warmup-epochs", type=CommaList(click.FloatRange(min=0)),
         help="Linear warm-up to --lr over this many epochs (default none; onecycle: 30% of the steps)."),
    _opt("--label-smoothing", type=CommaList(click.FloatRange(0, 1, max_open=True)),
         help="Label smoothing of the training loss (default 0)."),
    _opt("--nesterov/--no-nesterov", help="Nesterov momentum for SGD (default off)."),
    _opt("--select", type=click.Choice(["val_loss", "val_acc"]), show_default=True,
         help="The best checkpoint: lowest validation loss or highest validation accuracy."),
    _opt("--search", type=click.Choice(["grid", "random"]), show_default=True,
         help="Every combination, or --trials of them drawn without repeats (seeded by the first --seed)."),
    _opt("--trials", type=click.IntRange(min=1), help="With --search random: how many trials."),
    _opt("--patience", type=click.IntRange(min=1),
         help="Stop a trial after this many epochs without a better selection metric (early_stopped)."),
    _opt("--resume", "resume_ref", metavar="RUN",
         help="Run what RUN has not finished (pending, running or interrupted trials), in the same run."),
    _opt("--executor", type=click.Choice(["local", "ray"]), show_default=True,
         help="local: trial after trial in this process; ray: Ray Tune trials (pip install 'cnnbench[ray]')."),
    _opt("--ray-address", help="With --executor ray: an existing cluster (default: start a local Ray)."),
    _opt("--cpus-per-trial", type=click.FloatRange(min=0, min_open=True), show_default=True,
         help="With --executor ray: CPUs (and torch threads) per trial."),
    _opt("--gpus-per-trial", type=click.FloatRange(min=0), show_default=True,
         help="With --executor ray: GPUs per trial."),
    _opt("--storage", help="With --executor ray: where trials put checkpoints, reachable by every node "
         "(a shared directory or a URI Ray accepts; default: <store dir>/ray)."),
    _opt("--scheduler", type=click.Choice(["fifo", "asha"]), show_default=True,
         help="With --executor ray: asha stops weak trials early (recorded as pruned)."),
    _opt("--device", type=DeviceName(), show_default=True, help="auto, cpu, cuda or cuda:N (local executor)."),
    _opt("--threads", type=click.IntRange(1, MAX_THREADS),
         help="CPU threads for torch, at most this machine's CPU count (default: torch's choice)."),
    store_option,
    _opt("--top-k", type=click.IntRange(min=1), show_default=True,
         help="Export and benchmark the best K trials of each architecture."),
    _opt("--no-benchmark", is_flag=True, help="Skip the ONNX export and inference benchmark of the winners."),
    *EXPORT_OPTIONS,
    *BENCHMARK_OPTIONS,
    *QUANTIZE_OPTIONS,
    _opt("--quiet", "-q", is_flag=True, help="No progress display."),
    json_option,
]
# fmt: on


def defaults_from_run_config(*commands: click.Command) -> None:
    """RunConfig holds the defaults of the run options; the commands show and use those."""
    defaults = config_defaults()
    for command in commands:
        for param in command.params:
            if param.name in defaults:
                value = defaults[param.name]
                param.default = tuple(value) if param.multiple else value
                param.show_default = not getattr(param, "is_flag", False) and value not in (None, [], {}, "")
