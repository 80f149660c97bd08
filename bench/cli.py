"""The `bench` command: a thin layer over the pipeline modules."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import sys
from pathlib import Path

import click
from rich.console import Console

from bench.cli_options import json_option, options_of, run_options, store_option, where_given
from bench.errors import BenchError, UsageError, WhereError
from bench.options import BENCHMARK, DEPLOY, EXPORT, PLAN, QUANTIZE, TRAIN, RunConfig, option_names, option_of, settings
from bench.status import RunStatus
from bench.version import __version__

EXPORT_OPTIONS = ("top_k", *option_names(DEPLOY, EXPORT))
BENCHMARK_OPTIONS = ("top_k", *option_names(DEPLOY, BENCHMARK), *option_names(DEPLOY, EXPORT))
QUANTIZE_OPTIONS = ("top_k", *option_names(DEPLOY, QUANTIZE), "no_benchmark", *BENCHMARK_OPTIONS[1:])


class BenchGroup(click.Group):
    """Turns a BenchError into one line on stderr and its exit status: no traceback for user errors."""

    def main(self, args=None, **extra):
        # Keep the command line as typed, to record it with the run.
        args = list(sys.argv[1:] if args is None else args)
        extra.setdefault("obj", {})["argv"] = args
        import warnings

        from bench.signals import sigterm_as_interrupt

        warnings.formatwarning = lambda message, *_, **__: f"Warning: {message}\n"  # one line, no source line
        with sigterm_as_interrupt():  # SIGTERM stops any command as Ctrl-C does, in every phase
            return super().main(args=args, **extra)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a path that cannot be used (too long, a symlink loop, read-only...): name it
            from bench.files import os_error_line

            click.echo(f"Error: {os_error_line(exc)}", err=True)
            ctx.exit(1)
        except sqlite3.DatabaseError as exc:  # a damaged store: a dropped table, a corrupt page
            from bench.store import default_path

            store = (ctx.obj or {}).get("store") or default_path()
            click.echo(f"Error: the results store {store} cannot be used ({exc}); it may be damaged", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:  # a stop outside a sweep (loading data, planning, exporting): 130, as in one
            click.echo("Interrupted: nothing in progress was recorded as finished.", err=True)
            ctx.exit(130)


def _deploy(store, run_ref, trial_refs, options: dict, *, as_json, benchmark=True, quantize=False, **how):
    """`bench export`, `benchmark` and `quantize`: the trials of RUN (or its winners) exported, made into variants
    and timed as ``options`` (RunConfig fields) say, shown as `bench run` shows its winners; their JSON records."""
    from bench.deploy import export_and_benchmark, select_trials
    from bench.display import RichDisplay
    from bench.export import ExportSettings
    from bench.inference import BenchSettings
    from bench.plugins import load_run_dataset
    from bench.quantize import QuantizeSettings
    from bench.records import deployment_record, noise_warning
    from bench.store import now

    started = now()
    config = RunConfig(**options)  # the one check of every option
    run = store.run(None if run_ref == "latest" else run_ref)
    trials = select_trials(store, run, trial_refs, config.top_k)
    data = load_run_dataset(run)  # refused before any table when it is no longer the run's data
    timing = settings(BenchSettings, config) if benchmark and not config.no_benchmark else None
    variants = settings(QuantizeSettings, config) if quantize else None
    show = RichDisplay(_console(stderr=as_json))
    show.tables = None if as_json else _console()
    show.deploy_started(trials, timing)
    try:
        problems = export_and_benchmark(
            store,
            run,
            trials,
            export=settings(ExportSettings, config),
            benchmark=timing,
            quantize=variants,
            on_event=show.deploy_event,
            data=data,
            **how,
        )
    finally:
        show.deploy_done(
            run,
            [(t, store.export_of(t["id"]), store.latency_of(t["id"]), store.evaluations_of(t["id"])) for t in trials],
            timing,
            [(t, store.variants_of(t["id"])) for t in trials],
        )
    out = [deployment_record(store, run["id"], t) for t in trials] if as_json else None
    if as_json:
        _print_json(out)
    if timing is not None and (warning := noise_warning(store, trials, run["id"], epochs=False, since=started)):
        click.echo(f"Warning: {warning}", err=True)
    if problems:
        raise BenchError("; ".join(problems))


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


@cli.command()
@run_options
@click.pass_context
def run(ctx, config, resume_ref, store_path, as_json, quiet, dry_run, **options):
    """Train every selected architecture variant over the grid of hyperparameters.

    Each list option (comma-separated) is one axis of the grid; an axis not given takes the architecture's
    default from its plugin. The whole plan is recorded first; every trial keeps its best-validation checkpoint
    and is recorded the moment it ends, so `--resume RUN` finishes an interrupted run. At the end, the winner
    of each architecture is exported to ONNX and benchmarked (unless --no-benchmark).
    """
    from bench.display import RichDisplay
    from bench.sweep import runner

    options["where"] = where_given(ctx, options["where"])
    if dry_run:
        if resume_ref:
            raise UsageError("--dry-run shows the plan of a new run; a resumed run's plan is `bench report RUN`")
        from bench.display import plan_table
        from bench.sweep.estimate import dry_run as plan_of

        planned = plan_of(RunConfig(**options), store_path)
        if as_json:
            _print_json(planned)
        else:
            _console().print(plan_table(planned))
        for note in planned["notes"]:
            click.echo(f"Note: {note}", err=True)
        return
    display = RichDisplay(_console(stderr=as_json, quiet=quiet))
    display.tables = None if as_json else _console()
    with display:
        if resume_ref:
            source = ctx.get_parameter_source
            from_file = {k for k in options if source(k) == click.core.ParameterSource.DEFAULT_MAP}
            planned = [k for k in from_file if option_of(k).stage in (PLAN, TRAIN)]
            if planned:  # a --config file's keys apply to a resume as the same options would
                raise click.UsageError(
                    f"--resume runs the stored plan of its run: {config} sets '{planned[0]}' (drop it, or the file)"
                )
            given = {k: v for k, v in options.items() if source(k) == click.core.ParameterSource.COMMANDLINE}
            given.update({k: options[k] for k in from_file})
            result = runner.resume(resume_ref, store_path=store_path, listener=display, **given)
            if not result.trained and not result.deployed:
                click.echo(f"Run {result.run_id} has nothing left to run.", err=True)
        else:
            try:
                result = runner.run(
                    RunConfig(**options),
                    store_path=store_path,
                    listener=display,
                    command=shlex.join(["bench", *ctx.obj["argv"]]),
                )
            except WhereError as exc:
                if ctx.get_parameter_source("where") == click.core.ParameterSource.DEFAULT_MAP:  # the file's table
                    raise UsageError(f"{config}: key 'where': {exc}") from None
                raise
    if as_json:
        _print_json(result.trials)
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if result.problems:
        raise BenchError("; ".join(result.problems))
    if result.status == RunStatus.INTERRUPTED:
        click.echo(
            f"Interrupted: finished trials are kept; `bench run --resume {result.run_id}` runs the rest.", err=True
        )
        ctx.exit(130)


# --- export, benchmark, quantize --------------------------------------------------------------------------


def _deploy_command(name: str, option_fields: tuple[str, ...]):
    """A command taking RUN, [TRIAL]..., the options of ``option_fields``, --store and --json."""

    def decorate(f):
        f = json_option(store_option(options_of(*option_fields)(f)))
        f = click.argument("trial_refs", metavar="[TRIAL]...", nargs=-1)(f)
        return cli.command(name=name)(click.argument("run_ref", metavar="RUN")(f))

    return decorate


@_deploy_command("export", EXPORT_OPTIONS)
def export(run_ref, trial_refs, store_path, as_json, **options):
    """Export trials of RUN ('latest', an id or a unique prefix) to ONNX: by default the winner of each
    architecture; TRIAL is a number (3 or t003). Each file is checked by onnx and compared with PyTorch on
    real test images; it is written to <store dir>/<run>/t<NNN>/model.onnx."""
    from bench.store import Store

    with Store(store_path, create=False) as store:
        _deploy(store, run_ref, trial_refs, options, as_json=as_json, benchmark=False)


@_deploy_command("benchmark", BENCHMARK_OPTIONS)
def benchmark_cmd(run_ref, trial_refs, store_path, as_json, **options):
    """Benchmark trials of RUN with onnxruntime, beside PyTorch eager on the same real images: latency
    percentiles and throughput per provider and batch size, of the fp32 model and of its int8/fp16 variants
    (`bench quantize`). Trials never exported are exported first (the export options apply to them); an ONNX
    file that changed since it was made is refused."""
    from bench.store import Store

    with Store(store_path, create=False) as store:
        _deploy(store, run_ref, trial_refs, options, as_json=as_json, reuse_exports=True)


@_deploy_command("quantize", QUANTIZE_OPTIONS)
def quantize(run_ref, trial_refs, store_path, as_json, **options):
    """Make int8 and fp16 variants of trials of RUN (by default the winner of each architecture) from their
    verified ONNX export, with onnxruntime's own tools: each is checked on the whole test set (accuracy, top-1
    agreement with fp32, size), flagged if it loses more than --max-accuracy-drop points (and kept), then
    benchmarked beside fp32 (unless --no-benchmark). Variants made before are made again."""
    from bench.store import Store

    if options["quantize"] == []:
        raise UsageError("--quantize none: nothing to make (choose int8, fp16 or both)")
    with Store(store_path, create=False) as store:
        _deploy(
            store,
            run_ref,
            trial_refs,
            options,
            as_json=as_json,
            quantize=True,
            reuse_exports=True,
            reuse_variants=False,
        )


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
    type=click.Choice(["md", "csv", "json"]),
    metavar="[md|csv]",
    default="md",
    show_default=True,
    help="md writes the report; csv prints a row per trial (--json: JSON).",
)
@click.option(
    "--target-acc",
    type=click.FloatRange(0, 100, min_open=True),
    help="Time to accuracy: seconds of training to this validation accuracy, in % (default: the highest "
    "that every completed trial reached, whole percent).",
)
@click.option(
    "--measurements",
    is_flag=True,
    help="With csv or --json: one row per stored measurement (trial, precision, engine, provider, batch "
    "size) instead of one per trial.",
)
@click.option(
    "--history",
    is_flag=True,
    help="With --json: each trial with its per-epoch history; with csv: one row per trial and epoch.",
)
@json_option
@store_option
def report(run_refs, all_runs, out_root, top, fmt, target_acc, measurements, history, as_json, store_path):
    """Write the report of stored runs (the latest by default; RUN is 'latest', an id or a unique prefix):
    leaderboard, every parameter, loss plots, confusion matrices, trade-offs, diagnosis and method."""
    from bench import report as r
    from bench.display import leaderboard_table
    from bench.store import Store

    fmt = "json" if as_json else fmt
    if measurements and fmt == "md":
        raise click.UsageError("--measurements goes with --format csv or --json")
    if history and (fmt == "md" or measurements):
        raise click.UsageError("--history goes with --format csv or --json, without --measurements")
    with Store(store_path, readonly=True) as store:
        runs = r.select_runs(store, run_refs, all_runs)
        if fmt == "json":
            views = r.gather(store, runs)
            _print_json(r.measurements(views) if measurements else r.records(store, views, history))
            return
        if fmt == "csv":
            views = r.gather(store, runs)
            text = r.measurements_csv(views) if measurements else r.history_csv(views, store) if history else None
            click.echo(text if text is not None else r.to_csv(views), nl=False)
            return
        path, views = r.write_report(store, runs, Path(out_root), top, None if target_acc is None else target_acc / 100)
    from bench.figures import fonts_for

    if note := fonts_for(c for run in runs for c in run["classes"])[1]:
        click.echo(f"Warning: {note}", err=True)
    from bench.report.views import comparable

    ranked = [{**v.trial, "rank": v.test_rank, "test_set": comparable(v.run)} for v in views]
    where = runs[0]["id"] if len(runs) == 1 else f"{len(runs)} runs"
    console = _console()
    console.print(leaderboard_table(ranked, f"{where}: ranked by test accuracy (★ selected by validation accuracy)"))
    console.print(f"Report: {path}")


@cli.command()
@click.argument("run_a", metavar="A")
@click.argument("run_b", metavar="B")
@store_option
@json_option
def compare(run_a, run_b, store_path, as_json):
    """Two runs on the same test set side by side (A and B: 'latest', ids or unique prefixes): per architecture
    and variant trained in both, each run's best configuration, its test accuracy over seeds and its ONNX Runtime
    latency (CPU, batch 1), the hyperparameters that differ, and B's change against A."""
    from bench.display import compare_table
    from bench.report.compare import compare as compare_runs
    from bench.store import Store

    with Store(store_path, readonly=True) as store:
        a, b = (store.run(None if ref == "latest" else ref) for ref in (run_a, run_b))
        rows = compare_runs(store, a, b)
    if as_json:
        _print_json(rows)
    elif not rows:
        click.echo(f"Runs {a['id']} and {b['id']} trained no architecture variant in common.")
    else:
        _console().print(compare_table(rows, a["id"], b["id"]))


@cli.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option(
    "--uri",
    default=None,
    help="MLflow tracking URI: a server (http://HOST:5000), sqlite:///FILE or a folder "
    "[default: $MLFLOW_TRACKING_URI, else sqlite:///<store dir>/mlflow.db].",
)
@click.option("--experiment", default="cnnbench", show_default=True, help="The MLflow experiment.")
@store_option
@json_option
def mlflow(run_refs, uri, experiment, store_path, as_json):
    """Send runs (default: the latest; 'latest', ids or unique prefixes) to MLflow: one MLflow run per run, one
    nested run per trial with its parameters, per-epoch metrics, test and latency figures, tags and ONNX files; the
    report under the run. Sending a run again adds only what MLflow lacks. Browse them with `mlflow ui
    --backend-store-uri URI`."""
    from bench.track import send_runs

    sent = send_runs(store_path, list(run_refs), uri, experiment)
    if as_json:
        _print_json([vars(s) for s in sent])
        return
    for s in sent:
        what = (
            f"{s.trials} new trial runs, {s.metrics} metric values, {s.params} parameters, {s.artifacts} files"
            if s.new
            else "nothing new"
        )
        click.echo(f"{s.run} -> MLflow run {s.mlflow_run} (experiment '{s.experiment}', {s.uri}): {what}")


@cli.command()
@store_option
@json_option
def runs(store_path, as_json):
    """List the runs in the store, oldest first."""
    from bench.store import Store

    keys = ("id", "created_at", "finished_at", "status", "command", "dataset", "split", "seed", "trials")
    with Store(store_path, readonly=True) as store:
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
@click.option(
    "--dataset",
    "-d",
    default="digits",
    show_default=True,
    help="Parameter counts are for this dataset's image shape and classes.",
)
@json_option
def list_(pattern, variants, dataset, as_json):
    """List architectures (whose name matches PATTERN, or of the plugin PATTERN) with their variants, parameter
    counts and FLOPs per image."""
    from bench.display import catalog_tables
    from bench.plugins import catalog, get_plugins

    out = catalog(pattern, variants, dataset)
    broken = get_plugins().info.get(pattern)
    if not out["architectures"] and broken is not None and broken.error:
        raise BenchError(f"plugin '{pattern}' did not load: {broken.error}")  # not "no architecture matches"
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
    from bench.plugins import get_plugins, get_registry
    from bench.scaffold import new_plugin as scaffold

    folder = scaffold(name, Path(parent), get_registry().names(), get_plugins().info)
    click.echo(f"Created {folder}/ (plugin '{name}', architecture '{name}'). Next:")
    click.echo(f"  pip install -e {folder}")
    click.echo(f"  bench run --plugin {name} --epochs 2")
    click.echo(f"  pip install -e '{folder}[test]' && python -m pytest {folder}/tests")


def main():
    cli()


if __name__ == "__main__":  # python -m bench.cli, where the `bench` script is not on PATH
    main()
