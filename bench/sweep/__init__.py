"""Sweeps, from Python as from the command line: `run` a RunConfig, `resume` an interrupted run, read a run's
`trials`. The CLI (`bench run`) is a thin layer over these; a notebook calls them directly:

    import bench
    result = bench.run(bench.RunConfig(plugin=["cnn_dropout"], epochs=[5]))
    result.trials[0]["test_acc"]

Each call opens the results store (``store``: a path, default ``$BENCH_STORE`` or runs/bench.db), records the
whole plan first, trains what is pending with the configured executor, ranks the trials, then exports and
benchmarks the winners (unless ``no_benchmark``). ``progress`` (a bench.sweep.Progress) is told of every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bench.errors import UsageError
from bench.sweep.config import AXES, RAY_ONLY, RunConfig, bench_settings, field_names, quantize_settings, stage_of

# Imported on first use, so that `bench --help` and config files need no torch.
_LAZY = {"Progress": "bench.sweep.trial", "TrialSpec": "bench.sweep.plan", "plan_run": "bench.sweep.plan",
         "SweepOutcome": "bench.sweep.local"}  # fmt: skip
__all__ = ["AXES", "RunConfig", "RunResult", "load_run_dataset", "resume", "run", "trials", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bench.sweep' has no attribute {name!r}")


@dataclass
class RunResult:
    """What a run (or a resume) ended with."""

    run_id: str
    status: str  # completed | interrupted | failed
    trials: list[dict]  # every trial's public record (bench.records.trial_record), in leaderboard order
    trained: list[int] = field(default_factory=list)  # the trials (numbers) this call trained
    deployed: list[int] = field(default_factory=list)  # the trials exported (and benchmarked) by this call
    problems: list[str] = field(default_factory=list)  # what went wrong in export or benchmark, per trial
    store: str = ""  # the results database

    @property
    def best(self) -> dict | None:
        """The leaderboard's first trial (highest validation accuracy among the finished ones)."""
        return next((t for t in self.trials if t["rank"] == 1), None)


def run(config: RunConfig | None = None, *, store=None, progress=None, command: str | None = None,
        **options) -> RunResult:  # fmt: skip
    """Plan, record and train the sweep ``config`` describes (or ``RunConfig(**options)``), then export and
    benchmark its winners. ``command`` is recorded with the run (default: the equivalent Python call)."""
    from bench.environment import resolve_device
    from bench.plugins import load_dataset
    from bench.store import Store
    from bench.sweep.local import create_run
    from bench.sweep.plan import plan_run
    from bench.sweep.trial import Progress

    config = replace(config, **options) if config is not None else RunConfig(**options)  # checked as built
    _set_threads(config.threads)
    device = resolve_device(config.device)
    specs = plan_run(config)
    data = load_dataset(config.dataset, download=config.download, **config.data_options())
    with Store(store) as db:
        run_id, specs = create_run(db, specs, data, device=device, config=config.asdict(),
                                   command=command or f"bench.run({_call_text(config)})")  # fmt: skip
        with db.owning(run_id, claimed=True):  # create_run made this process the run's owner
            return _execute(db, run_id, specs, data, config, device, progress or Progress())


def resume(run_id: str = "latest", *, store=None, progress=None, **options) -> RunResult:
    """Finish what run ``run_id`` ('latest', an id or a unique prefix) has not: its pending, running and
    interrupted trials, with the recorded plan; then export and benchmark its winners. ``options`` may change
    how the trials run (executor, device, threads...) and what happens to the winners, never the plan."""
    from bench.environment import resolve_device
    from bench.store import Store
    from bench.sweep.local import pending
    from bench.sweep.trial import Progress

    planned = [k for k in options if k in field_names() and stage_of(k) == "plan"]
    if planned:
        raise UsageError(f"--resume runs the stored plan of its run: drop --{planned[0].replace('_', '-')}")
    with Store(store, create=False) as db:
        row = db.run(None if run_id == "latest" else run_id)
        recorded = RunConfig.from_record(row["config"])
        if options.get("executor") == "local":  # a Ray run finished here: its Ray options no longer apply
            recorded = replace(recorded, **{k: v for k, v in RAY_ONLY.items() if k not in options})
        config = replace(recorded, **options)  # checked as built
        _set_threads(config.threads)  # the run's own thread count unless told otherwise: the same arithmetic
        device = resolve_device(config.device)
        with db.owning(row["id"]):  # one process at a time: a second resume is refused, naming the owner
            row = db.run(row["id"])
            data = load_run_dataset(row)
            specs = pending(db, row["id"])
            return _execute(db, row["id"], specs, data, config, device, progress or Progress(),
                            finished=row["status"] == "completed")  # fmt: skip


def trials(run_id: str = "latest", *, store=None) -> list[dict]:
    """The public records of a stored run's trials, in leaderboard order."""
    from bench.leaderboard import rank
    from bench.records import trial_record
    from bench.store import Store

    with Store(store, readonly=True) as db:
        row = db.run(None if run_id == "latest" else run_id)
        return [trial_record(db, row["id"], t) for t in rank(db.trials(row["id"]))]


def load_run_dataset(run: dict):
    """The dataset a stored run trained on, loaded with the same options."""
    from bench.plugins import load_dataset

    return load_dataset(run["dataset"], **RunConfig.from_record(run["config"]).data_options())


def _execute(db, run_id: str, specs: list, data, config: RunConfig, device, progress,
             finished: bool = False) -> RunResult:  # fmt: skip
    """Train ``specs`` with the configured executor, rank, then deploy the winners; the result in records. The run
    is completed only once its winners are exported and benchmarked: a stop before that leaves it interrupted, and
    a resume does what is missing (``finished``: a run recorded completed, with nothing left to do)."""
    from bench.deploy import export_and_benchmark, winners
    from bench.leaderboard import rank
    from bench.records import trial_record
    from bench.signals import sigterm_as_interrupt
    from bench.sweep.local import run_local

    status = "completed"
    if specs:
        if config.executor == "ray":
            from bench.sweep.ray import run_ray

            outcome = run_ray(db, run_id, specs, data, address=config.ray_address,
                              cpus_per_trial=config.cpus_per_trial, gpus_per_trial=config.gpus_per_trial,
                              storage=config.storage, scheduler=config.scheduler,
                              data_options=config.data_options(), progress=progress)  # fmt: skip
        else:
            outcome = run_local(db, run_id, specs, data, device=device, progress=progress)
        status = outcome.status  # a stopped or failed sweep is recorded as such by its executor
    ranked = rank(db.trials(run_id))
    row = db.run(run_id)
    progress.sweep_done({**row, "status": status if specs else row["status"]}, ranked)  # the sweep's own ending
    chosen, problems = [], []
    if status == "completed" and not finished:
        settings, quantize = bench_settings(config), quantize_settings(config)
        chosen = [] if config.no_benchmark else _undeployed(db, winners(ranked, config.top_k), settings, quantize)
        try:
            with sigterm_as_interrupt():
                if chosen:
                    progress.deploy_started(chosen, settings)
                    problems = export_and_benchmark(db, row, chosen, tolerance=config.tolerance, opset=config.opset,
                                                    exporter=config.exporter, settings=settings, quantize=quantize,
                                                    reuse_exports=True, on_event=progress.deploy_event)  # fmt: skip
                    progress.deploy_done(row, [(t, db.export_of(t["id"]), db.latency_of(t["id"])) for t in chosen],
                                         settings, [(t, db.variants_of(t["id"])) for t in chosen])  # fmt: skip
                db.finish_run(run_id, "completed")
        except KeyboardInterrupt:
            status = "interrupted"
            db.finish_run(run_id, status)
    elif finished:
        status = row["status"]
    return RunResult(run_id, status, [trial_record(db, run_id, t) for t in rank(db.trials(run_id))],
                     [s.idx for s in specs], [t["idx"] for t in chosen], problems, str(db.path))  # fmt: skip


def _undeployed(db, trials: list[dict], settings, quantize) -> list[dict]:
    """Those of ``trials`` not yet exported, or exported but missing a variant of ``quantize`` or a latency figure
    for a batch size of ``settings`` (of the fp32 model or of a variant that runs)."""
    out = []
    for t in trials:
        export = db.export_of(t["id"])
        variants = db.variants_of(t["id"])
        runnable = {"fp32"} | {v["precision"] for v in variants if v["status"] in ("ok", "flagged")}
        measured = {(m["precision"], m["batch_size"]) for m in db.latency_of(t["id"])}
        wanted = {(p, b) for p in runnable for b in settings.batch_sizes}
        missing_variant = set(quantize.precisions) - {v["precision"] for v in variants}
        if export is None or (export["status"] == "ok" and (missing_variant or not wanted <= measured)):
            out.append(t)
    return out


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _call_text(config: RunConfig) -> str:
    """``RunConfig`` as the keyword arguments that differ from the defaults."""
    from bench.sweep.config import defaults

    base = defaults()
    return ", ".join(f"{k}={v!r}" for k, v in config.asdict().items() if v != base[k])
