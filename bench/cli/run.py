"""`bench run`: plan, train and deploy a sweep (or `--resume` one, or `--dry-run` its plan)."""

from __future__ import annotations

import shlex

import click

from bench.cli.group import cli, console, print_json
from bench.cli.options import run_options, where_given
from bench.core.errors import BenchError, UsageError, WhereError
from bench.core.status import RunStatus
from bench.options.choices import PLAN, TRAIN
from bench.options.config import RunConfig, option_of


@cli.command()
@run_options
@click.pass_context
def run(ctx, config, resume_ref, store_path, as_json, quiet, dry_run, name, **options):
    """Train every selected architecture variant over the grid of hyperparameters.

    Each list option (comma-separated) is one axis of the grid; an axis not given takes the architecture's
    default from its plugin. The whole plan is recorded first; every trial keeps its best-validation checkpoint
    and is recorded the moment it ends, so `--resume RUN` finishes an interrupted run. At the end, the winner
    of each architecture is exported to ONNX and benchmarked (unless --no-benchmark).
    """
    from bench.cli.progress import RichDisplay
    from bench.sweep import runner

    options["where"] = where_given(ctx, options["where"])
    if name is not None and resume_ref:
        raise UsageError("--name names a new run; a resumed run keeps its own")
    if dry_run:
        if resume_ref:
            raise UsageError("--dry-run shows the plan of a new run; a resumed run's plan is `bench report RUN`")
        from bench.cli.tables import plan_table
        from bench.sweep.estimate import dry_run as plan_of

        planned = plan_of(RunConfig(**options), store_path)
        if as_json:
            print_json(planned)
        else:
            console().print(plan_table(planned))
        for note in planned["notes"]:
            click.echo(f"Note: {note}", err=True)
        return
    display = RichDisplay(console(stderr=as_json, quiet=quiet))
    display.tables = None if as_json else console()
    display.name = name if not resume_ref else _name_of(resume_ref, store_path)
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
                    name=name,
                )
            except WhereError as exc:
                if ctx.get_parameter_source("where") == click.core.ParameterSource.DEFAULT_MAP:  # the file's table
                    raise UsageError(f"{config}: key 'where': {exc}") from None
                raise
    if as_json:
        print_json(result.trials)
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


def _name_of(ref: str, store_path) -> str | None:
    """The name of the run ``ref`` names, for the display (None: unnamed, or not there: the resume says so)."""
    from bench.store import Store

    try:
        with Store(store_path, readonly=True) as store:
            return store.run(None if ref == "latest" else ref)["name"]
    except BenchError:
        return None
