"""The `bench` command: a thin layer over the pipeline modules."""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from bench import __version__
from bench.errors import BenchError, UsageError, unknown


class BenchGroup(click.Group):
    """Turns a BenchError into one line on stderr and its exit status: no traceback for user errors."""

    def main(self, args=None, **extra):
        # Keep the command line as typed, to record it with the run.
        args = list(sys.argv[1:] if args is None else args)
        extra.setdefault("obj", {})["argv"] = args
        return super().main(args=args, **extra)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


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


def store_option(f):
    return click.option(
        "--store",
        "store_path",
        type=click.Path(dir_okay=True),
        envvar="BENCH_STORE",
        show_envvar=True,
        help="Results database (default: runs/bench.db).",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def export_options(f):
    f = click.option(
        "--exporter",
        type=click.Choice(["dynamo", "torchscript"]),
        default="dynamo",
        show_default=True,
        help="torch.onnx exporter (dynamo falls back to torchscript if it fails, and says so).",
    )(f)
    f = click.option("--opset", type=click.IntRange(min=7), default=18, show_default=True, help="ONNX opset.")(f)
    f = click.option(
        "--tolerance",
        type=click.FloatRange(min=0),
        default=1e-4,
        show_default=True,
        help="Largest |logit difference| against PyTorch accepted.",
    )(f)
    return f


def benchmark_options(f):
    f = click.option(
        "--graph-optimization",
        type=click.Choice(["auto", "disable", "basic", "extended", "all"]),
        default="auto",
        show_default=True,
        help="onnxruntime graph optimization level; auto: the faster of extended and all in a 20-run probe, "
        "per model and batch size (recorded).",
    )(f)
    f = click.option(
        "--bench-threads",
        type=click.IntRange(min=1),
        help="Intra-op threads for onnxruntime and PyTorch (default: torch's thread count).",
    )(f)
    f = click.option(
        "--min-time",
        type=click.FloatRange(min=0),
        default=1.0,
        show_default=True,
        help="Timed runs last at least this many seconds...",
    )(f)
    f = click.option(
        "--min-runs",
        type=click.IntRange(min=1),
        default=100,
        show_default=True,
        help="...and count at least this many runs.",
    )(f)
    f = click.option(
        "--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed runs before timing."
    )(f)
    f = click.option(
        "--providers",
        type=CommaList(click.Choice(["auto", "cpu", "cuda"])),
        default="auto",
        show_default=True,
        help="auto = cpu, plus cuda when a GPU is visible.",
    )(f)
    f = click.option(
        "--batch-sizes",
        type=CommaList(click.IntRange(min=1)),
        default="1,64",
        show_default=True,
        help="Batch sizes to time.",
    )(f)
    return f


def _settings(batch_sizes, providers, warmup, min_runs, min_time, bench_threads, graph_optimization):
    from bench.inference import BenchSettings

    return BenchSettings(tuple(batch_sizes), tuple(providers), warmup, min_runs, min_time, bench_threads,
                         graph_optimization)  # fmt: skip


def _deploy(store, run, trials, console, *, tolerance, opset, exporter, settings, as_json, reuse_exports=False):
    """Export (and benchmark when ``settings``) ``trials``, showing each as it ends, then the table."""
    from bench.deploy import export_and_benchmark
    from bench.display import inference_table

    def on_event(kind, trial, payload):
        name = f"t{trial['idx']:03d} {trial['architecture']}"
        if kind == "exported":
            detail = (
                payload["note"]
                if payload["status"] != "ok"
                else (f"max |Δ| {payload['max_abs_diff']:.1e}, ONNX test acc {100 * payload['onnx_test_acc']:.2f}%")
            )
            console.print(f"ONNX {name}: {payload['status']}, {detail}")
        else:
            console.print(f"Benchmarked {name}: {len(payload)} measurements")

    with console.status("exporting and benchmarking" if settings else "exporting"):
        problems = export_and_benchmark(
            store, run, trials, tolerance=tolerance, opset=opset, exporter=exporter, settings=settings,
            reuse_exports=reuse_exports, on_event=on_event,
        )  # fmt: skip
    entries = [(t, store.export_of(t["id"]), store.latency_of(t["id"])) for t in trials]
    out = None
    if as_json:
        out = [_deployment_json(store, run["id"], t, e, rows) for t, e, rows in entries]
    else:
        what = " and inference benchmark (ONNX Runtime vs PyTorch eager)" if settings else ""
        _console().print(inference_table(entries, f"Run {run['id']}: ONNX export{what}"))
    if problems:
        if out is not None:
            _print_json(out)
        raise BenchError("; ".join(problems))
    return out


def _deployment_json(store, run_id, trial, exp, rows) -> dict:
    return {"run": run_id, "trial": trial["idx"], "architecture": trial["architecture"],
            "onnx": _export_json(store, exp), "latency": [_latency_json(r) for r in rows]}  # fmt: skip


def _export_json(store, exp: dict | None) -> dict | None:
    if exp is None:
        return None
    out = {k: v for k, v in exp.items() if k != "trial_id"}
    out["path"] = str(store.artifact_path(exp["path"]).resolve()) if exp["path"] else None
    return out


def _latency_json(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("id", "trial_id", "samples")}


def _console(stderr: bool = False, quiet: bool = False) -> Console:
    """A console for tables; when output goes to a file or pipe, wide enough not to crush them."""
    console = Console(highlight=False, stderr=stderr, quiet=quiet)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, stderr=stderr, quiet=quiet, width=200)
    return console


def _print_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cnnbench")
def cli():
    """cnnbench: train CNN architectures from plugins over a sweep of hyperparameters, keep the
    best-validation checkpoint of every trial, and rank them.

    Start with `bench run --plugin cnn_dropout`, then `bench report`."""


# --- run --------------------------------------------------------------------------------------------


def _parse_where(items: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parts = [v.strip() for v in values.split(",")]
        if not sep or not key.strip() or not all(parts):
            raise UsageError(f"invalid value for --where: {item!r} (expected PARAM=VALUE[,VALUE...])")
        out.setdefault(key.strip(), []).extend(parts)
    return out


PLAN_OPTIONS = (
    "plugin_names", "arch_patterns", "variants", "where_items", "dataset", "batch_size", "lr", "epochs", "optimizer",
    "momentum", "weight_decay", "val_ratio", "seed", "select", "search", "trials", "patience", "augment", "precision",
    "channels_last", "compile", "data_dir", "image_size", "mean", "std", "config", "schedule", "warmup_epochs",
    "label_smoothing", "nesterov",
)  # fmt: skip
# Keys of a --config file that name an option differently.
CONFIG_ALIASES = {"plugin": "plugin_names", "plugins": "plugin_names", "arch": "arch_patterns", "where": "where_items"}


def load_config(ctx, param, value):
    """--config FILE.toml: the file's keys become the defaults of `bench run`'s options, so options given on
    the command line override them. Every key is checked against its option, with the file named."""
    import tomllib

    if not value:
        return value
    path = Path(value)
    try:
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", ctx, param) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}", ctx, param) from None
    params = {p.name: p for p in ctx.command.params}
    defaults = {}
    for key, raw in table.items():
        name = CONFIG_ALIASES.get(key, key.replace("-", "_"))
        if name not in params or name in ("config", "resume_ref", "store_path", "as_json", "quiet"):
            known = sorted(k for k in params if k not in ("config", "resume_ref", "store_path", "as_json", "quiet"))
            raise click.UsageError(f"{path}: unknown key '{key}' (known: {', '.join(known)})", ctx)
        option = params[name]
        try:
            defaults[name] = _config_value(raw, option, ctx)
        except click.BadParameter as exc:
            raise click.UsageError(f"{path}: key '{key}': {exc.message}", ctx) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _config_value(raw, option, ctx):
    """A TOML value checked and converted as the option would convert it from the command line."""
    if option.name == "where_items":
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


@cli.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    is_eager=True,
    expose_value=True,
    callback=load_config,
    help="A TOML file of these options (e.g. configs/rob313.toml); options given here override it.",
)
@click.option("--plugin", "-p", "plugin_names", multiple=True, help="Run every architecture of this plugin.")
@click.option(
    "--arch",
    "-a",
    "arch_patterns",
    multiple=True,
    help="Run architectures whose name matches this pattern (e.g. 'cnn_*').",
)
@click.option(
    "--variants",
    type=click.Choice(["default", "all"]),
    default="default",
    show_default=True,
    help="The plugin's default variant set, or its whole variant space.",
)
@click.option(
    "--where",
    "where_items",
    multiple=True,
    metavar="PARAM=V[,V...]",
    help="Keep variants whose PARAM is one of the values, e.g. --where kernel_size=3,5.",
)
@click.option(
    "--dataset",
    "-d",
    default="digits",
    show_default=True,
    help="Dataset name, or imagefolder:PATH (see `bench datasets`).",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the dataset's files are (default: ./data).")
@click.option("--download", is_flag=True, help="Download the dataset's files into --data-dir when missing.")
@click.option("--image-size", type=click.IntRange(min=4), help="imagefolder: resize images to this size (default 32).")
@click.option(
    "--mean", type=CommaList(click.FLOAT, unique=False), help="Replace the dataset's per-channel mean (after scaling)."
)
@click.option(
    "--std", type=CommaList(click.FloatRange(min=0, min_open=True), unique=False), help="Replace its per-channel std."
)
@click.option("--augment", default="", help="Augmentations on the training device: flip,crop,grayscale.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="bf16: autocast the training steps (evaluation stays fp32). auto: bf16 where it was measured faster "
    "(CPUs with AMX/AVX-512 bf16, models of 5 MFLOPs or more per image), else fp32.",
)
@click.option(
    "--channels-last/--no-channels-last",
    default=None,
    help="NHWC memory layout for training (default: on when the model accepts it; it was never slower).",
)
@click.option("--compile", is_flag=True, help="torch.compile the model for training (slow start, faster steps).")
@click.option("--batch-size", "-b", type=CommaList(click.IntRange(min=1)), help="Batch sizes, e.g. 32,64.")
@click.option("--lr", type=CommaList(click.FloatRange(min=0, min_open=True)), help="Learning rates, e.g. 1e-3,1e-2.")
@click.option("--epochs", "-e", type=CommaList(click.IntRange(min=1)), help="Epochs per trial.")
@click.option(
    "--optimizer", type=CommaList(click.Choice(["sgd", "adam", "adamw"])), help="sgd (momentum), adam, adamw."
)
@click.option("--momentum", type=CommaList(click.FloatRange(0, 1, max_open=True)), help="SGD momentum (default 0.9).")
@click.option("--weight-decay", type=CommaList(click.FloatRange(min=0)), help="Weight decay (default 0).")
@click.option(
    "--val-ratio",
    type=CommaList(click.FloatRange(0, 1, min_open=True, max_open=True)),
    help="Share of the training images held out for validation (default 0.2).",
)
@click.option("--seed", type=CommaList(click.IntRange(min=0)), help="Seeds (default 0): init, shuffling, split.")
@click.option(
    "--schedule",
    type=CommaList(click.Choice(["constant", "cosine", "onecycle", "step"])),
    help="Learning rate over the steps (default constant): cosine annealing to 0, onecycle (torch's OneCycleLR), "
    "step (x0.1 at 50% and 75%).",
)
@click.option(
    "--warmup-epochs",
    type=CommaList(click.FloatRange(min=0)),
    help="Linear warm-up to --lr over this many epochs (default none; onecycle: 30% of the steps).",
)
@click.option(
    "--label-smoothing",
    type=CommaList(click.FloatRange(0, 1, max_open=True)),
    help="Label smoothing of the training loss (default 0).",
)
@click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum for SGD (default off).")
@click.option(
    "--select",
    type=click.Choice(["val_loss", "val_acc"]),
    default="val_loss",
    show_default=True,
    help="The best checkpoint: lowest validation loss or highest validation accuracy.",
)
@click.option(
    "--search",
    type=click.Choice(["grid", "random"]),
    default="grid",
    show_default=True,
    help="Every combination, or --trials of them drawn without repeats (seeded by the first --seed).",
)
@click.option("--trials", type=click.IntRange(min=1), help="With --search random: how many trials.")
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    help="Stop a trial after this many epochs without a better selection metric (early_stopped).",
)
@click.option(
    "--resume",
    "resume_ref",
    metavar="RUN",
    help="Run what RUN has not finished (pending, running or interrupted trials), in the same run.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: trial after trial in this process; ray: Ray Tune trials (pip install 'cnnbench[ray]').",
)
@click.option("--ray-address", help="With --executor ray: an existing cluster (default: start a local Ray).")
@click.option(
    "--cpus-per-trial",
    type=click.FloatRange(min=0, min_open=True),
    default=1,
    show_default=True,
    help="With --executor ray: CPUs (and torch threads) per trial.",
)
@click.option(
    "--gpus-per-trial",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="With --executor ray: GPUs per trial.",
)
@click.option(
    "--storage",
    help="With --executor ray: where trials put checkpoints, reachable by every node "
    "(a shared directory or a URI Ray accepts; default: <store dir>/ray).",
)
@click.option(
    "--scheduler",
    type=click.Choice(["fifo", "asha"]),
    default="fifo",
    show_default=True,
    help="With --executor ray: asha stops weak trials early (recorded as pruned).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (local executor).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch (default: torch's choice).")
@store_option
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Export and benchmark the best K trials of each architecture.",
)
@click.option("--no-benchmark", is_flag=True, help="Skip the ONNX export and inference benchmark of the winners.")
@export_options
@benchmark_options
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@json_option
@click.pass_context
def run(ctx, **o):  # fmt: skip
    """Train every selected architecture variant over the grid of hyperparameters.

    Each list option (comma-separated) is one axis of the grid; an axis not given takes the architecture's
    default from its plugin. The whole plan is recorded first; every trial keeps its best-validation checkpoint
    and is recorded the moment it ends, so `--resume RUN` finishes an interrupted run. At the end, the winner
    of each architecture is exported to ONNX and benchmarked (unless --no-benchmark).
    """
    import torch

    from bench.data import load_dataset, load_run_dataset
    from bench.deploy import winners
    from bench.display import RichProgress, leaderboard_table, run_title
    from bench.environment import resolve_device
    from bench.leaderboard import rank
    from bench.runner import create_run, pending, run_local
    from bench.store import Store

    if o["threads"]:
        torch.set_num_threads(o["threads"])
    torch_device = resolve_device(o["device"])
    console = _console(stderr=o["as_json"], quiet=o["quiet"])
    with Store(o["store_path"]) as store:
        if o["resume_ref"]:
            given = [n for n in PLAN_OPTIONS if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
            if given:
                option = next(p.opts[0] for p in ctx.command.params if p.name == given[0])
                raise UsageError(f"--resume runs the stored plan of its run: drop {option}")
            run_id = store.run(None if o["resume_ref"] == "latest" else o["resume_ref"])["id"]
            recorded_threads = store.run(run_id)["config"].get("threads")
            if recorded_threads and not o["threads"]:  # the same arithmetic as the run's first part
                torch.set_num_threads(recorded_threads)
            data = load_run_dataset(store.run(run_id))
            specs = pending(store, run_id)
            if not specs:
                click.echo(f"Run {run_id} has nothing left to run.", err=True)
        else:
            specs, config = _plan(o)
            data = load_dataset(o["dataset"], download=o["download"], **config["data"])
            command = shlex.join(["bench", *ctx.obj["argv"]])
            run_id, specs = create_run(store, specs, data, device=torch_device, command=command, config=config)
        outcome = None
        if specs:
            with RichProgress(console) as progress:
                if o["executor"] == "ray":
                    from bench.ray_executor import run_ray

                    outcome = run_ray(
                        store, run_id, specs, data, address=o["ray_address"], cpus_per_trial=o["cpus_per_trial"],
                        gpus_per_trial=o["gpus_per_trial"], storage=o["storage"], scheduler=o["scheduler"],
                        data_options=store.run(run_id)["config"].get("data"), progress=progress,
                    )  # fmt: skip
                else:
                    outcome = run_local(store, run_id, specs, data, device=torch_device, progress=progress)
        ranked = rank(store.trials(run_id))
        run_row = store.run(run_id)
        if not o["as_json"]:
            _console().print(leaderboard_table(ranked, run_title(run_row)))
        chosen = winners(ranked, o["top_k"])
        if run_row["status"] == "completed" and not o["no_benchmark"] and chosen and specs:
            settings = _settings(o["batch_sizes"], o["providers"], o["warmup"], o["min_runs"], o["min_time"],
                                 o["bench_threads"], o["graph_optimization"])  # fmt: skip
            _deploy(store, run_row, chosen, console, tolerance=o["tolerance"], opset=o["opset"],
                    exporter=o["exporter"], settings=settings, as_json=o["as_json"])  # fmt: skip
        if o["as_json"]:
            _print_json([_trial_json(store, run_id, t) for t in rank(store.trials(run_id))])
        if outcome is not None and outcome.status == "interrupted":
            click.echo(f"Interrupted: finished trials are kept; `bench run --resume {run_id}` runs the rest.", err=True)
            ctx.exit(130)


def _plan(o: dict):
    """The trials the options describe, and the options as recorded with the run."""
    from bench.data import dataset_info
    from bench.plugins import get_plugins
    from bench.sweep import AXES, plan

    if not o["plugin_names"] and not o["arch_patterns"]:
        raise UsageError("choose what to train: --plugin NAME or --arch PATTERN (see `bench list`)")
    if o["trials"] and o["search"] != "random":
        raise UsageError("--trials needs --search random (a grid runs every combination)")
    plugins = get_plugins()
    archs = []
    for name in o["plugin_names"]:
        info = plugins.plugin(name)
        if info.error:
            raise BenchError(f"plugin '{name}' is broken: {info.error}")
        archs += [a for a in plugins.registry.by_plugin(name) if a not in archs]
    for pattern in o["arch_patterns"]:
        found = plugins.registry.list(pattern)
        if not found:
            raise unknown("architecture", pattern, plugins.registry.names())
        archs += [a for a in found if a not in archs]
    if not archs:
        raise UsageError(f"plugin {', '.join(o['plugin_names'])} registers no architecture")
    dataset_info(o["dataset"])  # an unknown dataset is reported before anything else
    from bench.augment import parse

    fixed = {"augment": ",".join(parse(o["augment"])), "precision": o["precision"],
             "channels_last": o["channels_last"], "compile": o["compile"]}  # fmt: skip
    data_options = {"data_dir": str(Path(o["data_dir"]).resolve()) if o["data_dir"] else None,
                    "image_size": o["image_size"], "mean": o["mean"], "std": o["std"]}  # fmt: skip
    axes = {k: o[k] for k in AXES if k != "nesterov"}
    axes["nesterov"] = None if o["nesterov"] is None else [o["nesterov"]]
    where = _parse_where(o["where_items"])
    specs = plan(archs, axes, variants=o["variants"], where=where, select=o["select"], patience=o["patience"],
                 search=o["search"], trials=o["trials"], search_seed=(o["seed"] or [0])[0], fixed=fixed)  # fmt: skip
    config = {
        "plugins": list(o["plugin_names"]), "architectures": [a.name for a in archs], "variants": o["variants"],
        "where": where, "dataset": o["dataset"], "axes": axes, "select": o["select"], "search": o["search"],
        "trials": o["trials"], "patience": o["patience"], "executor": o["executor"], "device": o["device"],
        "threads": o["threads"], "cpus_per_trial": o["cpus_per_trial"], "gpus_per_trial": o["gpus_per_trial"],
        "scheduler": o["scheduler"], "data": data_options, "config_file": o["config"],
    }  # fmt: skip
    return specs, config


def _trial_json(store, run_id: str, t: dict) -> dict:
    ckpt = store.checkpoint_path(t)
    return {
        "run": run_id,
        "trial": t["idx"],
        "rank": t["rank"],
        "winner": t["winner"],
        "architecture": t["architecture"],
        "plugin": t["plugin"],
        "variant": t["variant"],
        "hparams": t["hparams"],
        "status": t["status"],
        "note": t["note"],
        "params": t["params"],
        "epochs_run": t["epochs_run"],
        "best_epoch": t["best_epoch"],
        "train_acc": t["train_acc"],
        "val_acc": t["val_acc"],
        "test_acc": t["test_acc"],
        "train_loss": t["train_loss"],
        "val_loss": t["val_loss"],
        "test_loss": t["test_loss"],
        "split": t["split"],
        "duration_s": t["duration_s"],
        "checkpoint": str(ckpt.resolve()) if ckpt else None,
        "checkpoint_sha256": t["checkpoint_sha256"],
        "onnx": _export_json(store, store.export_of(t["id"])),
        "latency": [_latency_json(r) for r in store.latency_of(t["id"])],
    }


# --- export, benchmark ---------------------------------------------------------------------------------


def _run_and_trials(store, run_ref, trial_refs, top_k):
    from bench.deploy import select_trials

    run = store.run(None if run_ref == "latest" else run_ref)
    return run, select_trials(store, run, trial_refs, top_k)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("trial_refs", metavar="[TRIAL]...", nargs=-1)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Without TRIAL: the best K trials of each architecture.",
)
@export_options
@store_option
@json_option
def export(run_ref, trial_refs, top_k, tolerance, opset, exporter, store_path, as_json):
    """Export trials of RUN ('latest', an id or a unique prefix) to ONNX: by default the winner of each
    architecture; TRIAL is a number (3 or t003). Each file is checked by onnx and compared with PyTorch on
    real test images; it is written to <store dir>/<run>/t<NNN>/model.onnx."""
    from bench.store import Store

    with Store(store_path, create=False) as store:
        run, trials = _run_and_trials(store, run_ref, trial_refs, top_k)
        out = _deploy(store, run, trials, _console(stderr=as_json), tolerance=tolerance, opset=opset,
                      exporter=exporter, settings=None, as_json=as_json)  # fmt: skip
    if as_json:
        _print_json(out)


@cli.command(name="benchmark")
@click.argument("run_ref", metavar="RUN")
@click.argument("trial_refs", metavar="[TRIAL]...", nargs=-1)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Without TRIAL: the best K trials of each architecture.",
)
@benchmark_options
@export_options
@store_option
@json_option
def benchmark_cmd(run_ref, trial_refs, top_k, batch_sizes, providers, warmup, min_runs, min_time, bench_threads,
                  graph_optimization, tolerance, opset, exporter, store_path, as_json):  # fmt: skip
    """Benchmark trials of RUN with onnxruntime, beside PyTorch eager on the same real images: latency
    percentiles and throughput per provider and batch size. Trials never exported are exported first (the
    export options apply to them); an ONNX file that changed since its export is refused."""
    from bench.store import Store

    settings = _settings(batch_sizes, providers, warmup, min_runs, min_time, bench_threads, graph_optimization)
    with Store(store_path, create=False) as store:
        run, trials = _run_and_trials(store, run_ref, trial_refs, top_k)
        out = _deploy(store, run, trials, _console(stderr=as_json), tolerance=tolerance, opset=opset,
                      exporter=exporter, settings=settings, as_json=as_json, reuse_exports=True)  # fmt: skip
    if as_json:
        _print_json(out)


# --- report, runs -----------------------------------------------------------------------------------


@cli.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option("--all", "all_runs", is_flag=True, help="Every run in the store, in one leaderboard.")
@click.option(
    "--out",
    "out_root",
    type=click.Path(file_okay=False),
    default="reports",
    show_default=True,
    help="Reports go to OUT/<run>/report.md, their figures beside them.",
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Trials shown in detail: loss plot, confusion matrix, per-class accuracy.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "json", "csv"]),
    default="md",
    show_default=True,
    help="md writes the report; json and csv print one record per trial.",
)
@click.option(
    "--target-acc",
    type=click.FloatRange(0, 100, min_open=True),
    help="Time to accuracy: seconds of training to this validation accuracy, in % (default: the highest that "
    "every completed trial reached, whole percent).",
)
@json_option
@store_option
def report(run_refs, all_runs, out_root, top, fmt, target_acc, as_json, store_path):
    """Write the report of stored runs (the latest by default; RUN is 'latest', an id or a unique prefix):
    leaderboard, every parameter, loss plots, confusion matrices, trade-offs, diagnosis and method."""
    from bench.display import leaderboard_table
    from bench.report import gather, to_csv, write_report
    from bench.store import Store

    fmt = "json" if as_json else fmt
    with Store(store_path, create=False) as store:
        if all_runs:
            runs = store.runs()
            if not runs:
                raise BenchError(f"store {store.path} has no runs yet (start one with `bench run`)")
        else:
            refs = run_refs or ("latest",)
            runs = list({r["id"]: r for r in (store.run(None if ref == "latest" else ref) for ref in refs)}.values())
        if fmt == "json":
            views = gather(store, runs)
            _print_json([{**_trial_json(store, v.run["id"], v.trial), "test_rank": v.test_rank,
                          "diagnosis": [f.text for f in v.findings]} for v in views])  # fmt: skip
            return
        if fmt == "csv":
            click.echo(to_csv(gather(store, runs)), nl=False)
            return
        path, views = write_report(store, runs, Path(out_root), top, None if target_acc is None else target_acc / 100)
    ranked = [{**v.trial, "rank": v.test_rank} for v in views]
    where = runs[0]["id"] if len(runs) == 1 else f"{len(runs)} runs"
    console = _console()
    console.print(leaderboard_table(ranked, f"{where}: ranked by test accuracy (★ selected by validation accuracy)"))
    console.print(f"Report: {path}")


@cli.command()
@store_option
@json_option
def runs(store_path, as_json):
    """List the runs in the store, oldest first."""
    from bench.store import Store

    with Store(store_path, create=False) as store:
        rows = [{**r, "trials": len(store.trials(r["id"]))} for r in store.runs()]
    if as_json:
        _print_json(
            [
                {
                    k: r[k]
                    for k in (
                        "id",
                        "created_at",
                        "finished_at",
                        "status",
                        "command",
                        "dataset",
                        "split",
                        "seed",
                        "trials",
                    )
                }
                for r in rows
            ]
        )
        return
    table = Table("run", "created (UTC)", "status", "dataset", "trials", "command")
    for r in rows:
        table.add_row(r["id"], r["created_at"], r["status"], r["dataset"], str(r["trials"]), r["command"])
    _console().print(table)


# --- list, plugins, datasets ------------------------------------------------------------------------


@cli.command(name="list")
@click.argument("pattern", default="*")
@click.option("--variants", type=click.Choice(["default", "all"]), default="default", show_default=True)
@click.option(
    "--dataset",
    "-d",
    default="digits",
    show_default=True,
    help="Parameter counts are for this dataset's image shape and classes.",
)
@json_option
def list_(pattern, variants, dataset, as_json):
    """List architectures (matching PATTERN) with their variants and parameter counts."""
    from bench.architectures import format_variant
    from bench.data import dataset_info
    from bench.modelstats import count_parameters
    from bench.plugins import get_registry

    info = dataset_info(dataset)
    if info.input_shape is None or info.num_classes is None:  # known only once loaded (e.g. an image folder)
        from bench.data import load_dataset

        loaded = load_dataset(dataset)
        info = type(info)(**{**info.__dict__, "input_shape": loaded.input_shape, "num_classes": loaded.num_classes})
    archs = get_registry().list(pattern)
    out = []
    for arch in archs:
        rows = []
        for v in arch.variants(variants):
            try:
                n = count_parameters(arch.build(info.input_shape, info.num_classes, v))
                rows.append({"variant": v, "params": n})
            except Exception as exc:
                rows.append({"variant": v, "params": None, "error": f"{exc.__class__.__name__}: {exc}"})
        out.append(
            {
                "name": arch.name,
                "plugin": arch.plugin,
                "description": arch.description,
                "parameters": {k: arch.values(k) for k in arch.parameters},
                "defaults": arch.defaults,
                "variants_default": len(arch.variants("default")),
                "variants_all": len(arch.all_variants()),
                "variants": rows,
            }
        )
    if as_json:
        _print_json(
            {
                "dataset": dataset,
                "input_shape": list(info.input_shape),
                "num_classes": info.num_classes,
                "architectures": out,
            }
        )
        return
    from bench.display import count

    console = _console()
    if not out:
        console.print(f"No architecture matches '{pattern}'.")
    for a in out:
        table = Table(
            "variant",
            "params",
            title=f"[bold]{a['name']}[/] ({a['plugin']}): {a['description']}",
            title_justify="left",
            caption=f"{a['variants_default']} default variants of {a['variants_all']}; params for "
            f"{dataset} {'x'.join(map(str, info.input_shape))}, {info.num_classes} classes",
            caption_justify="left",
        )
        for row in a["variants"]:
            table.add_row(
                format_variant(row["variant"]) or "-",
                count(row["params"]) if row["params"] is not None else f"error: {row['error']}",
            )
        console.print(table)


@cli.command()
@json_option
def plugins(as_json):
    """List plugins: version, hooks, what each registered, and errors of broken ones. Every architecture is
    built and run forward once (1x8x8 and 3x32x32) so that a model that cannot run is named here."""
    from bench.plugins import get_plugins, smoke_check

    loaded = get_plugins()
    smoke_check(loaded)
    infos = [i.as_dict() for i in loaded.info.values()]
    if as_json:
        _print_json(infos)
        return
    table = Table("plugin", "version", "source", "hooks", "registered", "error")
    for i in infos:
        errors = [i["error"]] if i["error"] else []
        errors += [f"{name}: {err}" for name, err in i["architecture_errors"].items()]
        table.add_row(
            i["name"],
            i["version"] or "-",
            "built-in" if i["builtin"] else (i["distribution"] or "-"),
            ", ".join(i["hooks"]) or "-",
            ", ".join(i["architectures"]) or "-",
            f"[red]{'; '.join(errors)}[/]" if errors else "",
        )
    _console().print(table)


@cli.command()
@json_option
def datasets(as_json):
    """List the datasets cnnbench can train on."""
    from bench.plugins import get_plugins

    rows = [
        {"name": d.name + (":ARGUMENT" if d.takes_argument else ""), "plugin": d.plugin,
         "input_shape": list(d.input_shape) if d.input_shape else None, "num_classes": d.num_classes,
         "description": d.description}
        for d in get_plugins().datasets.entries.values()
    ]  # fmt: skip
    if as_json:
        _print_json(rows)
        return
    table = Table("dataset", "plugin", "shape", "classes", "description")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"])) if r["input_shape"] else "-"
        table.add_row(r["name"], r["plugin"], shape, str(r["num_classes"] or "-"), r["description"])
    _console().print(table)


@cli.command(name="new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Where to create the package folder.",
)
def new_plugin(name, parent):
    """Create a plugin package cnnbench-NAME (module cnnbench_NAME, entry point NAME) with one registered
    architecture and its tests, ready to `pip install -e`."""
    from bench.plugins import get_registry
    from bench.scaffold import new_plugin as scaffold

    folder = scaffold(name, Path(parent), get_registry().names())
    click.echo(f"Created {folder}/ (plugin '{name}', architecture '{name}'). Next:")
    click.echo(f"  pip install -e {folder}")
    click.echo(f"  bench run --plugin {name} --epochs 2")
    click.echo(f"  pip install -e '{folder}[test]' && python -m pytest {folder}/tests")


def main():
    cli()
