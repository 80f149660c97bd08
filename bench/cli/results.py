"""`bench report`, `compare`, `mlflow` and `runs`: what the store holds, as a report, tables, JSON, CSV or MLflow
runs."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.group import cli, console, print_json
from bench.cli.options import json_option, store_option
from bench.core.formats import run_label
from bench.options.config import default


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
    "--serving",
    "serving_rows",
    is_flag=True,
    help="With csv or --json: one row per serving figure (trial, engine, device, precision, scenario, server "
    "configuration, repetition).",
)
@click.option(
    "--history",
    is_flag=True,
    help="With --json: each trial with its per-epoch history; with csv: one row per trial and epoch.",
)
@json_option
@store_option
def report(
    run_refs, all_runs, out_root, top, fmt, target_acc, measurements, serving_rows, history, as_json, store_path
):
    """Write the report of stored runs (the latest by default; RUN is 'latest', an id or a unique prefix):
    leaderboard, every parameter, loss plots, confusion matrices, trade-offs, diagnosis and method."""
    from bench import report as r
    from bench.cli.tables import leaderboard_table
    from bench.store import Store

    fmt = "json" if as_json else fmt
    if sum((measurements, serving_rows, history)) > 1:
        raise click.UsageError("--measurements, --serving and --history go one at a time")
    for flag, name in ((measurements, "--measurements"), (serving_rows, "--serving"), (history, "--history")):
        if flag and fmt == "md":
            raise click.UsageError(f"{name} goes with --format csv or --json")
    with Store(store_path, readonly=True) as store:
        runs = r.select_runs(store, run_refs, all_runs)
        if fmt == "json":
            views = r.gather(store, runs)
            if measurements or serving_rows:
                print_json(r.measurements(views) if measurements else r.serving_records(views))
            else:
                print_json(r.records(store, views, history))
            return
        if fmt == "csv":
            views = r.gather(store, runs)
            if measurements:
                text = r.measurements_csv(views)
            elif serving_rows:
                text = r.serving_csv(views)
            else:
                text = r.history_csv(views, store) if history else r.to_csv(views)
            click.echo(text, nl=False)
            return
        path, views = r.write_report(store, runs, Path(out_root), top, None if target_acc is None else target_acc / 100)
    from bench.report.plots import fonts_for

    if note := fonts_for(c for run in runs for c in run["classes"])[1]:
        click.echo(f"Warning: {note}", err=True)
    from bench.report.views import comparable

    ranked = [{**v.trial, "rank": v.test_rank, "test_set": comparable(v.run), "run_name": v.run["name"]} for v in views]
    where = run_label(runs[0]) if len(runs) == 1 else f"{len(runs)} runs"
    out = console()
    out.print(leaderboard_table(ranked, f"{where}: ranked by test accuracy (★ selected by validation accuracy)"))
    out.print(f"Report: {path}")


@cli.command()
@click.argument("run_a", metavar="A")
@click.argument("run_b", metavar="B")
@store_option
@json_option
def compare(run_a, run_b, store_path, as_json):
    """Two runs on the same test set side by side (A and B: 'latest', ids or unique prefixes): per architecture
    and variant trained in both, each run's best configuration, its test accuracy over seeds and its ONNX Runtime
    latency (CPU, batch 1), the hyperparameters that differ, and B's change against A."""
    from bench.cli.tables import compare_table
    from bench.report.compare import compare as compare_runs
    from bench.store import Store

    with Store(store_path, readonly=True) as store:
        a, b = (store.run(None if ref == "latest" else ref) for ref in (run_a, run_b))
        rows = compare_runs(store, a, b)
    if as_json:
        print_json(rows)
    elif not rows:
        click.echo(f"Runs {a['id']} and {b['id']} trained no architecture variant in common.")
    else:
        console().print(compare_table(rows, run_label(a), run_label(b)))


@cli.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option(
    "--uri",
    default=None,
    help="MLflow tracking URI: a server (http://HOST:5000), sqlite:///FILE or a folder "
    "[default: $MLFLOW_TRACKING_URI, else sqlite:///<store dir>/mlflow.db].",
)
@click.option("--experiment", default=default("experiment"), show_default=True, help="The MLflow experiment.")
@store_option
@json_option
def mlflow(run_refs, uri, experiment, store_path, as_json):
    """Send runs (default: the latest; 'latest', ids or unique prefixes) to MLflow: one MLflow run per run, one
    nested run per trial with its parameters, per-epoch metrics, test and latency figures, tags and ONNX files; the
    report under the run. Sending a run again adds only what MLflow lacks. Browse them with `mlflow ui
    --backend-store-uri URI`."""
    from bench.tracking.mlflow import send_runs

    sent = send_runs(store_path, list(run_refs), uri, experiment)
    if as_json:
        print_json([vars(s) for s in sent])
        return
    for s in sent:
        what = (
            f"{s.trials} new trial runs, {s.metrics} metric values, {s.params} parameters, {s.artifacts} files"
            if s.new
            else "nothing new"
        )
        click.echo(f"{s.run} -> MLflow run {s.mlflow_run} (experiment '{s.experiment}', {s.uri}): {what}")
        click.echo(f"  open {s.link}")


@cli.command()
@store_option
@json_option
def runs(store_path, as_json):
    """List the runs in the store, oldest first: id, name, status, size and the test accuracy of each run's best trial
    (ranked first by validation accuracy)."""
    from bench.results.leaderboard import rank
    from bench.store import Store

    keys = ("id", "name", "created_at", "finished_at", "status", "command", "dataset", "split", "seed", "trials")
    keys += ("best_test_acc",)
    rows = []
    with Store(store_path, readonly=True) as store:
        for r in store.runs():
            ranked = rank(store.trials(r["id"]))
            best = ranked[0]["test_acc"] if ranked and ranked[0]["rank"] is not None else None
            rows.append({**r, "trials": len(ranked), "best_test_acc": best})
    if as_json:
        print_json([{k: r[k] for k in keys} for r in rows])
        return
    from bench.cli.tables import runs_table

    console().print(runs_table(rows))
