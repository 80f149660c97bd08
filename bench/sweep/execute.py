"""A run's execution once it is recorded, the same for a new run and a resumed one: train what is pending with the
configured executor (and what a search chooses), rank the trials, then deploy the winners. The run is completed only
once its winners are exported and benchmarked: a stop before that leaves it interrupted, and a resume does what is
missing."""

from __future__ import annotations

import time

from bench.core.signals import sigterm_as_interrupt
from bench.core.status import RUNNABLE, ExportStatus, Precision, RunStatus
from bench.deploy.export import ExportSettings
from bench.deploy.quantize import QuantizeSettings
from bench.deploy.steps import Deployed, DeployPlan, DeployResult, deploy
from bench.deploy.trials import unlearned_warning, winners
from bench.options.config import RunConfig, settings
from bench.results.leaderboard import rank
from bench.results.records import noise_warning, run_records
from bench.runtime.protocol import BenchSettings
from bench.store import Store, now
from bench.sweep.listener import ListenerFailed, Listeners, guarded, wants
from bench.sweep.result import RunResult


def execute(
    store: Store,
    run_id: str,
    specs: list,
    data,
    config: RunConfig,
    device,
    listener,
    finished: bool = False,
    search=None,
    track=None,
) -> RunResult:
    """Train ``specs`` (and what ``search`` chooses after them), rank, then deploy the winners; the result in records
    (``finished``: a run recorded completed, with nothing left to do). ``track`` (bench.tracking.live) is told of
    every step too, and sends the run as it stands at the end, whatever happened."""
    tracked = guarded(Listeners(track, listener)) if track is not None else listener
    try:
        result = _execute(store, run_id, specs, data, config, device, tracked, finished, search)
    finally:
        if track is not None:
            notes = track.finish(run_id)
    if track is not None:
        result.notes += notes
    return result


def _execute(store, run_id: str, specs: list, data, config: RunConfig, device, listener, finished, search) -> RunResult:
    started = now()
    status = RunStatus.COMPLETED
    searching = search is not None and not finished
    if specs or searching:
        if wants(listener, "run_estimated"):  # building every variant to count its FLOPs: only for a listener
            from bench.sweep.estimate import run_estimate

            listener.run_estimated(run_id, run_estimate(store, run_id, config, specs, data, device, search))
        status = _train(store, run_id, specs, data, config, device, listener, search)
        specs = search.asked if search is not None else specs
    ranked = rank(store.trials(run_id))
    row = store.run(run_id)
    deploying = status == RunStatus.COMPLETED and not finished
    try:
        listener.sweep_done({**row, "status": status if specs or searching else row["status"]}, ranked)
    except (KeyboardInterrupt, ListenerFailed) as exc:
        if deploying:  # a completed sweep's run is `running` until its winners are deployed: a resume does that
            store.finish_run(run_id, RunStatus.INTERRUPTED)
            status, deploying = RunStatus.INTERRUPTED, False
        if isinstance(exc, ListenerFailed):
            raise
    chosen, deployed = [], Deployed()
    if deploying:
        chosen, deployed, status = _deploy_winners(store, row, ranked, config, listener)
    elif finished:
        status = row["status"]
    trained = {s.idx for s in specs} | {t["idx"] for t in chosen}
    warning = noise_warning(store, [t for t in store.trials(run_id) if t["idx"] in trained], run_id, since=started)
    at_chance = unlearned_warning(ranked, run_id) if deploying and not config.no_benchmark else None
    return RunResult(
        run_id,
        status,
        run_records(store, run_id),
        trained=[s.idx for s in specs],
        deployed=[t["idx"] for t in chosen],
        problems=deployed.problems,
        store=str(store.path),
        warnings=deployed.undeployable + [w for w in (at_chance, warning) if w],
    )


def _train(store: Store, run_id: str, specs: list, data, config: RunConfig, device, listener, search) -> str:
    """Train ``specs`` with the configured executor; the sweep's status (a stopped or failed sweep is recorded as
    such by its executor)."""
    if config.executor == "ray":
        from bench.sweep.ray import run_ray

        ray_options = {name: getattr(config, name) for name in ("cpus_per_trial", "gpus_per_trial", "storage")}
        outcome = run_ray(
            store,
            run_id,
            specs,
            data,
            address=config.ray_address,
            scheduler=config.scheduler,
            data_options=config.data_options(),
            listener=listener,
            search=search,
            **ray_options,
        )
    else:
        from bench.sweep.local import run_local

        how = {"listener": listener, "search": search, "state_every": config.state_every}
        outcome = run_local(store, run_id, specs, data, device=device, **how)
    return outcome.status


def _deploy_winners(store: Store, row: dict, ranked: list[dict], config: RunConfig, listener):
    """Export, quantize and benchmark the winners not yet deployed, then record the run completed (interrupted by a
    stop): (the trials deployed, what deploy could not do, the run's status)."""
    plan = DeployPlan(
        settings(ExportSettings, config),
        variants=settings(QuantizeSettings, config),
        benchmark=settings(BenchSettings, config),
    )
    chosen = [] if config.no_benchmark else _undeployed(store, winners(ranked, config.top_k), plan)
    deployed, status = Deployed(), RunStatus.COMPLETED
    try:
        with sigterm_as_interrupt():
            if chosen:
                listener.deploy_started(chosen, plan.benchmark)
                started = time.perf_counter()
                deployed = deploy(store, row, chosen, plan, on_event=listener.deploy_event)
                store.record_deploy_time(row["id"], time.perf_counter() - started, len(chosen))
                listener.deploy_done(row, [DeployResult.read(store, t) for t in chosen], plan.benchmark)
            store.finish_run(row["id"], RunStatus.COMPLETED)
    except KeyboardInterrupt:
        status = RunStatus.INTERRUPTED
        store.finish_run(row["id"], status)
    except ListenerFailed:
        store.finish_run(row["id"], RunStatus.INTERRUPTED)
        raise
    return chosen, deployed, status


def _undeployed(store: Store, trials: list[dict], plan: DeployPlan) -> list[dict]:
    """Those of ``trials`` not yet exported, or exported but missing a variant of the plan or a latency figure for a
    batch size it times (of the fp32 model or of a variant that runs)."""
    out = []
    for t in trials:
        export = store.export_of(t["id"])
        made = store.variants_of(t["id"])
        runnable = {Precision.FP32} | {v["precision"] for v in made if v["status"] in RUNNABLE}
        measured = {(m["precision"], m["batch_size"]) for m in store.latency_of(t["id"])}
        wanted = {(p, b) for p in runnable for b in plan.benchmark.batch_sizes}
        missing_variant = set(plan.variants.quantize) - {v["precision"] for v in made}
        if export is None or (export["status"] == ExportStatus.OK and (missing_variant or not wanted <= measured)):
            out.append(t)
    return out
