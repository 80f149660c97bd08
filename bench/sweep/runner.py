"""Running a sweep from Python: `run` a RunConfig, `resume` an interrupted run, read a run's `trials`. Each call opens
the results store, records the whole plan first, trains what is pending with the configured executor, ranks the
trials, then exports and benchmarks the winners (unless ``no_benchmark``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

from bench.errors import UsageError
from bench.options import PLAN, RAY_ONLY, TRAIN, RunConfig, defaults, flag, option_of, settings
from bench.status import RUNNABLE, ExportStatus, RunStatus
from bench.sweep.tracking import Listeners, tracking
from bench.sweep.trial import ListenerFailed, guarded, starting_points


@dataclass
class RunResult:
    """What a run (or a resume) ended with."""

    run_id: str
    status: str  # completed, interrupted or failed (bench.status.RunStatus)
    trials: list[dict]  # every trial's public record (bench.records.run_records), in leaderboard order
    trained: list[int] = field(default_factory=list)  # the trials (numbers) this call trained
    deployed: list[int] = field(default_factory=list)  # the trials exported (and benchmarked) by this call
    problems: list[str] = field(default_factory=list)  # what went wrong in export or benchmark, per trial
    store: str = ""  # the results database
    warnings: list[str] = field(default_factory=list)  # figures not to trust (bench.records.noise_warning)
    notes: list[str] = field(default_factory=list)  # what the plan adapted (a plugin's default that did not fit)

    @property
    def best(self) -> dict | None:
        """The leaderboard's first trial (highest validation accuracy among the finished ones)."""
        return next((t for t in self.trials if t["rank"] == 1), None)


def run(
    config: RunConfig | None = None, *, store_path=None, listener=None, command: str | None = None, **options
) -> RunResult:
    """Plan, record and train the sweep ``config`` describes (or ``RunConfig(**options)``), then export and
    benchmark its winners. ``store_path``: the results database (default ``$BENCH_STORE`` or runs/bench.db);
    ``listener``: a bench.RunListener told of every step; ``command`` is recorded with the run (default: the
    equivalent Python call). torch's thread count is the caller's again when it returns."""
    from bench.environment import resolve_device
    from bench.plugins import load_dataset
    from bench.store import Store
    from bench.sweep.local import create_run
    from bench.sweep.plan import plan_run

    config = replace(config, **options) if config is not None else RunConfig(**options)  # checked as built
    config = _resolve_weights(config, store_path)
    listener = guarded(listener)
    with _threads(config.threads), _listener_errors():
        device = resolve_device(config.device)
        plan_notes: list[str] = []
        specs = plan_run(config, plan_notes)
        if config.search == "tpe":
            from bench.sweep.search import import_optuna

            import_optuna()  # a missing extra is one line before anything is recorded
        if not config.no_benchmark:
            from bench.plugins import get_plugins

            get_plugins().engines.select(config.engines)  # an unknown engine is refused before anything trains
        data = load_dataset(config.dataset, download=config.download, **config.data_options())
        plan_notes += starting_points(specs, data)  # weights that do not fit are refused before anything is recorded
        if not config.no_benchmark:
            from bench.inference import check_batch_sizes

            check_batch_sizes(config.batch_sizes, data.input_shape)  # before anything is recorded
        with Store(store_path) as store:
            track = tracking(store, config)  # an unusable tracker is refused before anything is recorded
            space = specs
            run_id, specs = create_run(
                store,
                specs,
                data,
                device=device,
                config=config.asdict(),
                command=command or f"bench.run({_call_text(config)})",
            )
            with store.owning(run_id, claimed=True):  # create_run made this process the run's owner
                search = _search(store, run_id, config, space, data, device)
                result = _execute(store, run_id, specs, data, config, device, listener, search=search, track=track)
                result.notes[:0] = plan_notes
                return result


def resume(run_id: str = "latest", *, store_path=None, listener=None, **options) -> RunResult:
    """Finish what run ``run_id`` ('latest', an id or a unique prefix) has not: its pending, running and
    interrupted trials, with the recorded plan; then export and benchmark its winners. ``options`` may change
    how the trials run (executor, device, threads...) and what happens to the winners, never the plan."""
    from bench.environment import resolve_device
    from bench.plugins import load_run_dataset
    from bench.store import Store
    from bench.sweep.local import pending

    unknown = sorted(set(options) - set(defaults()))
    if unknown:
        raise UsageError(f"unknown option '{unknown[0]}' (see bench.RunConfig)")
    planned = [k for k in options if option_of(k).stage in (PLAN, TRAIN)]
    if planned:
        raise UsageError(f"--resume runs the stored plan of its run: drop --{flag(planned[0])}")
    with Store(store_path, create=False) as store:
        row = store.run(None if run_id == "latest" else run_id)
        recorded = RunConfig.from_record(row["config"])
        if options.get("executor") == "local":  # a Ray run finished here: its Ray options no longer apply
            recorded = replace(recorded, **{k: v for k, v in RAY_ONLY.items() if k not in options})
        config = replace(recorded, **options)  # checked as built
        _resolve_weights(config, store_path)  # the files the run started from, unchanged: else one line
        listener = guarded(listener)
        # the run's own thread count unless told otherwise: the same arithmetic
        with _threads(config.threads), _listener_errors():
            device = resolve_device(config.device)
            with store.owning(row["id"]):  # one process at a time: a second resume is refused, naming the owner
                row = store.run(row["id"])
                data = load_run_dataset(row)
                specs = pending(store, row["id"], data, device)
                search = None
                if config.search == "tpe":
                    from bench.sweep.plan import plan_run

                    search = _search(store, row["id"], config, plan_run(config), data, device)
                return _execute(
                    store,
                    row["id"],
                    specs,
                    data,
                    config,
                    device,
                    listener,
                    finished=row["status"] == RunStatus.COMPLETED,
                    search=search,
                    track=tracking(store, config),
                )


def trials(run_id: str = "latest", *, store_path=None, history: bool = False):
    """The public records of a stored run's trials, in leaderboard order (a list; ``.to_pandas()`` makes it a
    DataFrame); with ``history``, each with its per-epoch history."""
    from bench.records import run_records
    from bench.store import Store

    with Store(store_path, readonly=True) as store:
        row = store.run(None if run_id == "latest" else run_id)
        return run_records(store, row["id"], history)


def _resolve_weights(config: RunConfig, store_path) -> RunConfig:
    """--weights (the run's, and any architecture's own) as the plan records them: PATH#sha256=HEX (recorded ones are
    checked against their file)."""
    from bench.transfer import resolve

    per_arch = {
        arch: {**own, "weights": resolve(own["weights"], store_path)} if own.get("weights") else own
        for arch, own in config.per_arch.items()
    }
    weights = resolve(config.weights, store_path) if config.weights else None
    return replace(config, weights=weights, per_arch=per_arch) if weights or per_arch != config.per_arch else config


def _search(store, run_id: str, config: RunConfig, space: list, data, device):
    """The search that chooses a run's trials as it goes (--search tpe), over ``space``; None for a planned run."""
    if config.search != "tpe":
        return None
    from bench.sweep.search import TpeSearch

    return TpeSearch(
        store,
        run_id,
        space,
        trials=config.trials,
        seed=(config.seed or [0])[0],
        pruner=config.pruner,
        data=data,
        device=device,
    )


def _execute(
    store,
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
    """Train ``specs`` with the configured executor (and what ``search`` chooses after them), rank, then deploy
    the winners; the result in records. ``track`` (bench.sweep.tracking) is told of every step too, and sends the
    run as it stands at the end, whatever happened."""
    tracked = guarded(Listeners(track, listener)) if track is not None else listener
    try:
        result = _execute_tracked(store, run_id, specs, data, config, device, tracked, finished, search)
    finally:
        if track is not None:
            notes = track.finish(run_id)
    if track is not None:
        result.notes += notes
    return result


def _execute_tracked(
    store, run_id: str, specs: list, data, config: RunConfig, device, listener, finished: bool, search
) -> RunResult:
    """Train ``specs`` with the configured executor (and what ``search`` chooses after them), rank, then deploy
    the winners; the result in records. The run is completed only once its winners are exported and benchmarked: a
    stop before that leaves it interrupted, and a resume does what is missing (``finished``: a run recorded
    completed, with nothing left to do)."""
    from bench.deploy import export_and_benchmark, winners
    from bench.export import ExportSettings
    from bench.inference import BenchSettings
    from bench.leaderboard import rank
    from bench.quantize import QuantizeSettings
    from bench.records import noise_warning, run_records
    from bench.signals import sigterm_as_interrupt
    from bench.store import now
    from bench.sweep.local import run_local

    started = now()
    status = RunStatus.COMPLETED
    searching = search is not None and not finished
    if specs or searching:
        if config.executor == "ray":
            from bench.sweep.ray import run_ray

            outcome = run_ray(
                store,
                run_id,
                specs,
                data,
                address=config.ray_address,
                cpus_per_trial=config.cpus_per_trial,
                gpus_per_trial=config.gpus_per_trial,
                storage=config.storage,
                scheduler=config.scheduler,
                data_options=config.data_options(),
                listener=listener,
                search=search,
            )
        else:
            how = {"listener": listener, "search": search, "state_every": config.state_every}
            outcome = run_local(store, run_id, specs, data, device=device, **how)
        if search is not None:
            specs = search.asked
        status = outcome.status  # a stopped or failed sweep is recorded as such by its executor
    ranked = rank(store.trials(run_id))
    row = store.run(run_id)
    chosen, problems, notes = [], [], []
    deploying = status == RunStatus.COMPLETED and not finished
    try:
        ended = status if specs or searching else row["status"]
        listener.sweep_done({**row, "status": ended}, ranked)  # the sweep's own end
    except (KeyboardInterrupt, ListenerFailed) as exc:
        if deploying:  # a completed sweep's run is `running` until its winners are deployed: a resume does that
            store.finish_run(run_id, RunStatus.INTERRUPTED)
            status, deploying = RunStatus.INTERRUPTED, False
        if isinstance(exc, ListenerFailed):
            raise
    if deploying:
        benchmark, quantize = settings(BenchSettings, config), settings(QuantizeSettings, config)
        chosen = [] if config.no_benchmark else _undeployed(store, winners(ranked, config.top_k), benchmark, quantize)
        try:
            with sigterm_as_interrupt():
                if chosen:
                    listener.deploy_started(chosen, benchmark)
                    problems = export_and_benchmark(
                        store,
                        row,
                        chosen,
                        export=settings(ExportSettings, config),
                        benchmark=benchmark,
                        quantize=quantize,
                        reuse_exports=True,
                        on_event=listener.deploy_event,
                        notes=notes,
                    )
                    entries = [
                        (t, store.export_of(t["id"]), store.latency_of(t["id"]), store.evaluations_of(t["id"]))
                        for t in chosen
                    ]
                    listener.deploy_done(row, entries, benchmark, [(t, store.variants_of(t["id"])) for t in chosen])
                store.finish_run(run_id, RunStatus.COMPLETED)
        except KeyboardInterrupt:
            status = RunStatus.INTERRUPTED
            store.finish_run(run_id, status)
        except ListenerFailed:
            store.finish_run(run_id, RunStatus.INTERRUPTED)
            raise
    elif finished:
        status = row["status"]
    trained = {s.idx for s in specs} | {t["idx"] for t in chosen}
    measured = [t for t in store.trials(run_id) if t["idx"] in trained]
    warning = noise_warning(store, measured, run_id, since=started)
    return RunResult(
        run_id,
        status,
        run_records(store, run_id),
        [s.idx for s in specs],
        [t["idx"] for t in chosen],
        problems,
        str(store.path),
        notes + ([warning] if warning else []),
    )


def _undeployed(store, trials: list[dict], benchmark, quantize) -> list[dict]:
    """Those of ``trials`` not yet exported, or exported but missing a variant of ``quantize`` or a latency figure
    for a batch size of ``benchmark`` (of the fp32 model or of a variant that runs)."""
    out = []
    for t in trials:
        export = store.export_of(t["id"])
        made = store.variants_of(t["id"])
        runnable = {"fp32"} | {v["precision"] for v in made if v["status"] in RUNNABLE}
        measured = {(m["precision"], m["batch_size"]) for m in store.latency_of(t["id"])}
        wanted = {(p, b) for p in runnable for b in benchmark.batch_sizes}
        missing_variant = set(quantize.quantize) - {v["precision"] for v in made}
        if export is None or (export["status"] == ExportStatus.OK and (missing_variant or not wanted <= measured)):
            out.append(t)
    return out


@contextlib.contextmanager
def _listener_errors():
    """The caller's listener raised: the run is recorded interrupted (by the stage it stopped); raise its error."""
    try:
        yield
    except ListenerFailed as exc:
        raise exc.error from None


@contextlib.contextmanager
def _threads(threads: int | None):
    """torch's intra-op thread count set to ``threads`` for the block (None: left as it is), then restored; so is
    torch's global random state, which every trial seeds (the caller's own random numbers go on as before)."""
    import torch

    previous = torch.get_num_threads()
    rng = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        torch.set_rng_state(rng)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _call_text(config: RunConfig) -> str:
    """``RunConfig`` as the keyword arguments that differ from the defaults."""
    base = defaults()
    return ", ".join(f"{k}={v!r}" for k, v in config.asdict().items() if v != base[k])
