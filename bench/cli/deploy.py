"""`bench export`, `benchmark` and `quantize`: the deploy steps on a stored run's winners, or on the trials named;
`bench predict`: image files classified by the shipped model."""

from __future__ import annotations

import click

from bench.cli.group import cli, console, print_json
from bench.cli.options import json_option, options_of, store_option
from bench.core.errors import BenchError, UsageError
from bench.options.choices import BENCHMARK, DEPLOY, EXPORT, QUANTIZE
from bench.options.config import RunConfig, option_names, settings

EXPORT_OPTIONS = ("top_k", *option_names(DEPLOY, EXPORT))
BENCHMARK_OPTIONS = ("top_k", *option_names(DEPLOY, BENCHMARK), *option_names(DEPLOY, EXPORT))
QUANTIZE_OPTIONS = ("top_k", *option_names(DEPLOY, QUANTIZE), "no_benchmark", *BENCHMARK_OPTIONS[1:])


def _deploy(store, run_ref, trial_refs, options: dict, *, as_json: bool, steps) -> None:
    """`bench export`, `benchmark` and `quantize`: the trials of RUN (or its winners) put through ``steps(config)``
    (the command's DeployPlan, from its options as RunConfig fields), shown as `bench run` shows its winners; their
    JSON records with --json."""
    from bench.cli.progress import RichDisplay
    from bench.deploy.steps import DeployResult, deploy
    from bench.deploy.trials import select_trials
    from bench.plugins.dataset_loading import load_run_dataset
    from bench.results.records import deployment_record, noise_warning
    from bench.store import now

    started = now()
    config = RunConfig(**options)  # the one check of every option
    plan = steps(config)
    run = store.run(None if run_ref == "latest" else run_ref)
    trials = select_trials(store, run, trial_refs, config.top_k)
    data = load_run_dataset(run)  # refused before any table when it is no longer the run's data
    show = RichDisplay(console(stderr=as_json))
    show.tables = None if as_json else console()
    show.deploy_started(trials, plan.benchmark)
    try:
        done = deploy(store, run, trials, plan, data=data, on_event=show.deploy_event)
    finally:
        show.deploy_done(run, [DeployResult.read(store, t) for t in trials], plan.benchmark)
    if as_json:
        print_json([deployment_record(store, run["id"], t) for t in trials])
    if plan.benchmark is not None and (warning := noise_warning(store, trials, run["id"], epochs=False, since=started)):
        click.echo(f"Warning: {warning}", err=True)
    if done.problems or done.undeployable:  # asked for by name, or the winners the command was run for
        raise BenchError("; ".join(done.undeployable + done.problems))


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
        _deploy(store, run_ref, trial_refs, options, as_json=as_json, steps=_export_steps)


@_deploy_command("benchmark", BENCHMARK_OPTIONS)
def benchmark_cmd(run_ref, trial_refs, store_path, as_json, **options):
    """Benchmark trials of RUN with onnxruntime, beside PyTorch eager on the same real images: latency
    percentiles and throughput per provider and batch size, of the fp32 model and of its int8/fp16 variants
    (`bench quantize`). Trials never exported are exported first (the export options apply to them); an ONNX
    file that changed since it was made is refused."""
    from bench.store import Store

    with Store(store_path, create=False) as store:
        _deploy(store, run_ref, trial_refs, options, as_json=as_json, steps=_benchmark_steps)


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
        _deploy(store, run_ref, trial_refs, options, as_json=as_json, steps=_quantize_steps)


# Each command's steps (bench.deploy.steps.DeployPlan), from its options. Imported when a command runs: `bench --help`
# needs no torch.


def _export_steps(config: RunConfig):
    """`bench export`: each trial exported again."""
    from bench.deploy.export import ExportSettings
    from bench.deploy.steps import DeployPlan

    return DeployPlan(settings(ExportSettings, config), export_again=True)


def _benchmark_steps(config: RunConfig):
    """`bench benchmark`: exported first where it never was, then benchmarked."""
    from bench.deploy.export import ExportSettings
    from bench.deploy.steps import DeployPlan
    from bench.runtime.protocol import BenchSettings

    return DeployPlan(settings(ExportSettings, config), benchmark=settings(BenchSettings, config))


def _quantize_steps(config: RunConfig):
    """`bench quantize`: every variant made again, then benchmarked beside fp32 (unless --no-benchmark)."""
    from bench.deploy.export import ExportSettings
    from bench.deploy.quantize import QuantizeSettings
    from bench.deploy.steps import DeployPlan
    from bench.runtime.protocol import BenchSettings

    return DeployPlan(
        settings(ExportSettings, config),
        variants=settings(QuantizeSettings, config),
        variants_again=True,
        benchmark=None if config.no_benchmark else settings(BenchSettings, config),
    )


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("images", metavar="IMAGES...", nargs=-1, required=True)
@click.option("--trial", "trial_ref", metavar="TRIAL", help="The trial whose model classifies (3 or t003).")
@click.option("--engine", default=None, help="The engine that runs it [default: onnxruntime].")
@click.option("--precision", default=None, help="fp32, int8, fp16, bf16: one the engine ran [default: fp32].")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda... (with --trial, --engine, --precision).")
@store_option
@json_option
def predict(run_ref, images, trial_ref, engine, precision, device, store_path, as_json):
    """Classify image files (or folders of them) with RUN's shipped model: by default the one its report recommends
    for ONNX Runtime on the CPU (the fastest within the run's --max-accuracy-drop), else the trial, engine and
    precision given. Each image: its class, probability and the next classes."""
    from bench.core.formats import pct, trial_label
    from bench.deploy.predict import predict as classify

    shipped, rows = classify(
        run_ref, images, trial=trial_ref, engine=engine, precision=precision, device=device, store_path=store_path
    )
    if as_json:
        print_json(rows)
        return
    t = shipped.trial
    click.echo(
        f"{trial_label(t['idx'])} {t['architecture']} at {shipped.precision} in {shipped.engine} on "
        f"{shipped.device}: {shipped.why}",
        err=True,
    )
    from bench.cli.tables import rich_table
    from bench.results.columns import Column

    columns = (
        Column("image", lambda r: r["image"], left=True),
        Column("class", lambda r: r["class"], left=True),
        Column("probability %", lambda r: pct(r["probability"])),
        Column("next", lambda r: ", ".join(f"{c} {pct(p)}%" for c, p in r["top"][1:]), left=True),
    )
    console().print(rich_table(columns, rows, markup=False))
