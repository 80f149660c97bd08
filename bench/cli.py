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

from bench import __version__
from bench.errors import BenchError, UsageError
from bench.sweep.config import MAX_MIN_TIME, MAX_THREADS
from bench.sweep.config import defaults as config_defaults


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


def _deploy(store, run, trials, *, as_json, settings=None, reuse_exports=False, **export):
    """Export (and benchmark, with ``settings``) ``trials`` for `bench export` and `bench benchmark`, shown as
    `bench run` shows its winners; returns their JSON records."""
    from bench.deploy import export_and_benchmark
    from bench.display import RichProgress
    from bench.records import deployment_record

    show = RichProgress(_console(stderr=as_json))
    show.tables = None if as_json else _console()
    show.deploy_started(trials, settings)
    try:
        problems = export_and_benchmark(store, run, trials, settings=settings, reuse_exports=reuse_exports,
                                        on_event=show.deploy_event, **export)  # fmt: skip
    finally:
        show.deploy_done(run, [(t, store.export_of(t["id"]), store.latency_of(t["id"])) for t in trials], settings)
    out = [deployment_record(store, run["id"], t) for t in trials] if as_json else None
    if problems:
        if out is not None:
            _print_json(out)
        raise BenchError("; ".join(problems))
    return out


def _settings(batch_sizes, providers, warmup, min_runs, min_time, bench_threads, graph_optimization):
    from bench.inference import BenchSettings

    return BenchSettings(tuple(batch_sizes), tuple(providers), warmup, min_runs, min_time, bench_threads,
                         graph_optimization)  # fmt: skip


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
         help="Keep variants whose PARAM is one of the values, e.g. --where kernel_size=3,5."),
    _opt("--dataset", "-d", show_default=True,
         help="Dataset name, or imagefolder:PATH (see `bench datasets`)."),
    _opt("--data-dir", type=click.Path(file_okay=False), help="Where the dataset's files are (default: ./data)."),
    _opt("--download", is_flag=True, help="Download the dataset's files into --data-dir when missing."),
    _opt("--image-size", type=click.IntRange(min=4), help="imagefolder: resize images to this size (default 32)."),
    _opt("--mean", type=FLOATS, help="Replace the dataset's per-channel mean (after scaling)."),
    _opt("--std", type=POSITIVE, help="Replace its per-channel std."),
    _opt("--augment", help="Augmentations on the training device: flip,crop,grayscale."),
    _opt("--precision", type=click.Choice(["auto", "fp32", "bf16"]), show_default=True,
         help="bf16: autocast the training steps (evaluation stays fp32). auto: bf16 where it was measured faster "
         "(CPUs with AMX/AVX-512 bf16, models of 5 MFLOPs or more per image), else fp32."),
    _opt("--channels-last/--no-channels-last", default=None,
         help="NHWC memory layout for training (default: on when the model accepts it; it was never slower)."),
    _opt("--compile", is_flag=True, help="torch.compile the model for training (slow start, faster steps)."),
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
    _opt("--device", show_default=True, help="auto, cpu, cuda or cuda:N (local executor)."),
    _opt("--threads", type=click.IntRange(1, MAX_THREADS),
         help="CPU threads for torch, at most this machine's CPU count (default: torch's choice)."),
    store_option,
    _opt("--top-k", type=click.IntRange(min=1), show_default=True,
         help="Export and benchmark the best K trials of each architecture."),
    _opt("--no-benchmark", is_flag=True, help="Skip the ONNX export and inference benchmark of the winners."),
    *EXPORT_OPTIONS,
    *BENCHMARK_OPTIONS,
    _opt("--quiet", "-q", is_flag=True, help="No progress display."),
    json_option,
]
# fmt: on


@cli.command()
@options(RUN_OPTIONS)
@click.pass_context
def run(ctx, config, resume_ref, store_path, as_json, quiet, **options):  # fmt: skip
    """Train every selected architecture variant over the grid of hyperparameters.

    Each list option (comma-separated) is one axis of the grid; an axis not given takes the architecture's
    default from its plugin. The whole plan is recorded first; every trial keeps its best-validation checkpoint
    and is recorded the moment it ends, so `--resume RUN` finishes an interrupted run. At the end, the winner
    of each architecture is exported to ONNX and benchmarked (unless --no-benchmark).
    """
    import bench.sweep
    from bench.display import RichProgress

    options["where"] = _parse_where(options["where"])
    progress = RichProgress(_console(stderr=as_json, quiet=quiet))
    progress.tables = None if as_json else _console()
    with progress:
        if resume_ref:
            source = ctx.get_parameter_source
            given = {k: v for k, v in options.items() if source(k) == click.core.ParameterSource.COMMANDLINE}
            result = bench.sweep.resume(resume_ref, store=store_path, progress=progress, **given)
            if not result.trained:
                click.echo(f"Run {result.run_id} has nothing left to run.", err=True)
        else:
            result = bench.sweep.run(bench.sweep.RunConfig(**options), store=store_path, progress=progress,
                                     command=shlex.join(["bench", *ctx.obj["argv"]]))  # fmt: skip
    if as_json:
        _print_json(result.trials)
    if result.problems:
        raise BenchError("; ".join(result.problems))
    if result.status == "interrupted":
        click.echo(f"Interrupted: finished trials are kept; `bench run --resume {result.run_id}` runs the rest.",
                   err=True)  # fmt: skip
        ctx.exit(130)


# --- export, benchmark ---------------------------------------------------------------------------------


TOP_K = click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Without TRIAL: the best K trials of each architecture.")  # fmt: skip


def _run_and_trials(store, run_ref, trial_refs, top_k):
    from bench.deploy import select_trials

    run = store.run(None if run_ref == "latest" else run_ref)
    return run, select_trials(store, run, trial_refs, top_k)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("trial_refs", metavar="[TRIAL]...", nargs=-1)
@TOP_K
@options(EXPORT_OPTIONS)
@store_option
@json_option
def export(run_ref, trial_refs, top_k, tolerance, opset, exporter, store_path, as_json):
    """Export trials of RUN ('latest', an id or a unique prefix) to ONNX: by default the winner of each
    architecture; TRIAL is a number (3 or t003). Each file is checked by onnx and compared with PyTorch on
    real test images; it is written to <store dir>/<run>/t<NNN>/model.onnx."""
    from bench.store import Store

    with Store(store_path, create=False) as store:
        run, trials = _run_and_trials(store, run_ref, trial_refs, top_k)
        out = _deploy(store, run, trials, as_json=as_json, tolerance=tolerance, opset=opset, exporter=exporter)
    if as_json:
        _print_json(out)


@cli.command(name="benchmark")
@click.argument("run_ref", metavar="RUN")
@click.argument("trial_refs", metavar="[TRIAL]...", nargs=-1)
@TOP_K
@options(BENCHMARK_OPTIONS)
@options(EXPORT_OPTIONS)
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
        out = _deploy(store, run, trials, as_json=as_json, settings=settings, reuse_exports=True, tolerance=tolerance,
                      opset=opset, exporter=exporter)  # fmt: skip
    if as_json:
        _print_json(out)


# --- report, runs -----------------------------------------------------------------------------------


@cli.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option("--all", "all_runs", is_flag=True, help="Every run in the store, in one leaderboard.")
@click.option("--out", "out_root", type=click.Path(file_okay=False), default="reports", show_default=True,
              help="Reports go to OUT/<run>/report.md, their figures beside them.")  # fmt: skip
@click.option("--top", type=click.IntRange(min=0), default=3, show_default=True,
              help="Trials shown in detail: loss plot, confusion matrix, per-class accuracy.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), metavar="[md|csv]", default="md",
              show_default=True, help="md writes the report; csv prints a row per trial (--json: JSON).")  # fmt: skip
@click.option("--target-acc", type=click.FloatRange(0, 100, min_open=True),
              help="Time to accuracy: seconds of training to this validation accuracy, in % (default: the highest "
              "that every completed trial reached, whole percent).")  # fmt: skip
@json_option
@store_option
def report(run_refs, all_runs, out_root, top, fmt, target_acc, as_json, store_path):
    """Write the report of stored runs (the latest by default; RUN is 'latest', an id or a unique prefix):
    leaderboard, every parameter, loss plots, confusion matrices, trade-offs, diagnosis and method."""
    from bench.display import leaderboard_table
    from bench.report import gather, records, select_runs, to_csv, write_report
    from bench.store import Store

    fmt = "json" if as_json else fmt
    with Store(store_path, create=False) as store:
        runs = select_runs(store, run_refs, all_runs)
        if fmt == "json":
            _print_json(records(store, gather(store, runs)))
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

    keys = ("id", "created_at", "finished_at", "status", "command", "dataset", "split", "seed", "trials")
    with Store(store_path, create=False) as store:
        rows = [{**r, "trials": len(store.trials(r["id"]))} for r in store.runs()]
    if as_json:
        _print_json([{k: r[k] for k in keys} for r in rows])
        return
    from bench.display import runs_table

    _console().print(runs_table(rows))


# --- list, plugins, datasets ------------------------------------------------------------------------


@cli.command(name="list")
@click.argument("pattern", default="*")
@click.option("--variants", type=click.Choice(["default", "all"]), default="default", show_default=True)
@click.option("--dataset", "-d", default="digits", show_default=True,
              help="Parameter counts are for this dataset's image shape and classes.")  # fmt: skip
@json_option
def list_(pattern, variants, dataset, as_json):
    """List architectures (matching PATTERN) with their variants and parameter counts."""
    from bench.display import catalog_tables
    from bench.plugins import catalog

    out = catalog(pattern, variants, dataset)
    if as_json:
        _print_json(out)
        return
    console = _console()
    if not out["architectures"]:
        console.print(f"No architecture matches '{pattern}'.")
    for heading, table, note in catalog_tables(out):
        console.print(heading)
        console.print(table)
        console.print(note)


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
    from bench.display import plugins_table

    _console().print(plugins_table(infos))


@cli.command()
@json_option
def datasets(as_json):
    """List the datasets cnnbench can train on."""
    from bench.display import datasets_table
    from bench.plugins import get_plugins

    rows = [d.as_dict() for d in get_plugins().datasets.entries.values()]
    if as_json:
        _print_json(rows)
        return
    _console().print(datasets_table(rows))


@cli.command(name="new-plugin")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to create the package folder.")  # fmt: skip
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


def _defaults_from_run_config(*commands: click.Command) -> None:
    """RunConfig holds the defaults of the run options; the commands show and use those."""
    defaults = config_defaults()
    for command in commands:
        for param in command.params:
            if param.name in defaults:
                value = defaults[param.name]
                param.default = tuple(value) if param.multiple else value
                param.show_default = not getattr(param, "is_flag", False) and value not in (None, [], {}, "")


_defaults_from_run_config(run, export, benchmark_cmd)


def main():
    cli()
