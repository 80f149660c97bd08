"""Running a sweep from Python: `run` a RunConfig, `resume` an interrupted run, read a run's `trials`. Each call opens
the results store, records the whole plan first, trains what is pending with the configured executor, ranks the
trials, then exports and benchmarks the winners (unless ``no_benchmark``)."""

from __future__ import annotations

import contextlib
from dataclasses import replace

from bench.core.errors import UsageError
from bench.core.status import RunStatus
from bench.options.choices import PLAN, TRAIN
from bench.options.config import RAY_ONLY, RunConfig, defaults, option_of
from bench.options.option import flag
from bench.sweep.execute import execute
from bench.sweep.listener import ListenerFailed, guarded
from bench.sweep.result import RunResult
from bench.sweep.trial import resolve_weights, starting_points
from bench.tracking.live import tracking


def run(
    config: RunConfig | None = None,
    *,
    store_path=None,
    listener=None,
    command: str | None = None,
    name: str | None = None,
    **options,
) -> RunResult:
    """Plan, record and train the sweep ``config`` describes (or ``RunConfig(**options)``), then export and
    benchmark its winners. ``store_path``: the results database (default ``$BENCH_STORE`` or runs/bench.db);
    ``listener``: a bench.RunListener told of every step; ``command`` is recorded with the run (default: the
    equivalent Python call); ``name``: the run's own name, unique in its store, usable wherever its id is. torch's
    thread count is the caller's again when it returns."""
    from bench.plugins.dataset_loading import load_dataset
    from bench.store import Store
    from bench.sweep.local import create_run
    from bench.sweep.plan import plan_run
    from bench.train.device import resolve_device

    config = replace(config, **options) if config is not None else RunConfig(**options)  # checked as built
    if name is not None:
        from bench.store.writes import check_run_name

        check_run_name(name)  # before anything is loaded
    config = resolve_weights(config, store_path)
    listener = guarded(listener)
    with _threads(config.threads), _listener_errors():
        device = resolve_device(config.device)
        plan_notes: list[str] = []
        specs = plan_run(config, plan_notes)
        if config.search == "tpe":
            from bench.sweep.search import import_optuna

            import_optuna()  # a missing extra is one line before anything is recorded
        if not config.no_benchmark:
            from bench.plugins.manager import get_plugins

            get_plugins().engines.select(config.engines)  # an unknown engine is refused before anything trains
        data = load_dataset(config.dataset, download=config.download, **config.data_options())
        plan_notes += starting_points(specs, data)  # weights that do not fit are refused before anything is recorded
        if not config.no_benchmark:
            from bench.runtime.protocol import check_batch_sizes

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
                name=name,
            )
            with store.owning(run_id, claimed=True):  # create_run made this process the run's owner
                search = _search(store, run_id, config, space, data, device)
                result = execute(store, run_id, specs, data, config, device, listener, search=search, track=track)
                result.notes[:0] = plan_notes
                return result


def resume(run_id: str = "latest", *, store_path=None, listener=None, **options) -> RunResult:
    """Finish what run ``run_id`` ('latest', an id or a unique prefix) has not: its pending, running and
    interrupted trials, with the recorded plan; then export and benchmark its winners. ``options`` may change
    how the trials run (executor, device, threads...) and what happens to the winners, never the plan."""
    from bench.plugins.dataset_loading import load_run_dataset
    from bench.store import Store
    from bench.sweep.local import pending
    from bench.train.device import resolve_device

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
        resolve_weights(config, store_path)  # the files the run started from, unchanged: else one line
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
                return execute(
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
    from bench.results.records import run_records
    from bench.store import Store

    with Store(store_path, readonly=True) as store:
        row = store.run(None if run_id == "latest" else run_id)
        return run_records(store, row["id"], history)


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
