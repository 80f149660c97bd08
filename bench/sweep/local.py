"""Recording a sweep and the local executor. The run and its whole plan are recorded first (every trial
'pending'), then an executor runs what is pending; resuming a run is running what is still pending, running
or interrupted. The local executor trains trial after trial in this process, each recorded the moment it
ends."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

import torch

from bench.core.errors import BenchError, DiskFull
from bench.core.files import atomic_write
from bench.core.signals import sigterm_as_interrupt
from bench.core.status import TO_RUN, RunStatus, TrialStatus
from bench.data.splits import Dataset, Normalizer
from bench.store import Store
from bench.sweep.listener import ListenerFailed, RunListener
from bench.sweep.plan import TrialSpec, check_plan, resolve_plan, spec_from_row
from bench.sweep.trial import CHECKPOINT_FILE, STATE_FILE, SplitCache, TrialRun, execute_trial
from bench.train.device import environment


@dataclass
class SweepOutcome:
    run_id: str
    status: str  # completed, interrupted or failed (bench.core.status.RunStatus)


def create_run(
    store: Store,
    specs: list[TrialSpec],
    data: Dataset,
    *,
    device: torch.device,
    command: str,
    config: dict,
    name: str | None = None,
) -> tuple[str, list[TrialSpec]]:
    """Record the run and its plan; return the run id and the specs with their store ids. A search that chooses its
    trials as it goes (``config['search']`` tpe) records none: ``specs`` are the space it chooses from."""
    check_plan(specs, data)
    chosen_later = config.get("search") == "tpe"
    specs = specs if chosen_later else resolve_plan(specs, data, device)
    first = specs[0].hparams
    run_id = store.create_run(
        command=command,
        dataset=data.name,
        input_shape=data.input_shape,
        classes=data.classes,
        split=data.split(first.val_ratio, first.seed).sizes(),
        seed=first.seed,
        config=config,
        environment=environment(device),
        trials=[] if chosen_later else [s.row() for s in specs],
        data=data.record(),
        name=name,
    )
    return run_id, pending(store, run_id, data, device)


def pending(store: Store, run_id: str, data: Dataset, device: torch.device) -> list[TrialSpec]:
    """The trials of ``run_id`` still to train, in plan order. A plan recorded before precision and layout were
    resolved at plan time (cnnbench <= 0.6 left 'auto' to the trainer) is resolved now, and recorded."""
    from bench.plugins.manager import get_registry

    registry = get_registry()
    specs = [spec_from_row(t, registry) for t in store.trials(run_id) if t["status"] in TO_RUN]
    resolved = resolve_plan(specs, data, device)
    for old, new in zip(specs, resolved, strict=True):
        if new.hparams != old.hparams:
            store.record_hparams(new.trial_id, new.hparams.as_dict())
    return resolved


def run_local(
    store: Store,
    run_id: str,
    specs: list[TrialSpec],
    data: Dataset,
    *,
    device: torch.device,
    listener: RunListener | None = None,
    search=None,
    state_every: float | None = None,
) -> SweepOutcome:
    """Train ``specs`` (trials of ``run_id``) one after the other in this process; with ``search`` (a
    bench.sweep.search.TpeSearch), those first and then the trials it chooses, each stopped early where its
    pruner says."""
    listener = listener or RunListener()
    splits = SplitCache(data, device)
    normalize = Normalizer(data, device)
    store.reopen_run(run_id)
    status = RunStatus.INTERRUPTED
    try:
        listener.run_started(run_id, specs)
        with sigterm_as_interrupt():
            for spec in search.specs(specs) if search is not None else specs:
                prune = (lambda stats, spec=spec: search.prune(spec, stats)) if search is not None else None
                trial = run_trial(store, run_id, spec, splits, normalize, data, device, listener, prune, state_every)
                listener.trial_done(spec, trial)
            status = RunStatus.COMPLETED
    except KeyboardInterrupt:
        pass
    except ListenerFailed:
        raise  # recorded interrupted below; bench.run raises the listener's own exception
    except DiskFull:
        status = RunStatus.FAILED
        raise
    finally:
        store.interrupt_running(run_id, "stopped by the user")
        if status != RunStatus.COMPLETED:  # a completed sweep's run is finished by whoever deploys its winners
            store.finish_run(run_id, status)
    return SweepOutcome(run_id, status)


def run_trial(
    store: Store,
    run_id: str,
    spec: TrialSpec,
    splits: SplitCache,
    normalize: Normalizer,
    data: Dataset,
    device: torch.device,
    listener: RunListener,
    prune=None,
    state_every: float | None = None,
) -> dict:
    """Execute one trial here and record how it ended; one broken trial never ends the sweep."""
    hp = spec.hparams
    trial_splits = splits.get(hp.val_ratio, hp.seed)
    folder = store.trial_dir(run_id, spec.idx)
    store.start_trial(spec.trial_id, trial_splits.sizes(), keep_files=(folder / STATE_FILE).is_file())
    listener.trial_started(spec)
    started = time.perf_counter()
    run = TrialRun()

    def finish(status: str, note: str | None = None, **more) -> None:
        store.finish_trial(
            spec.trial_id, status=status, note=note, params=run.params, duration_s=time.perf_counter() - started, **more
        )

    try:
        execute_trial(
            spec,
            data,
            trial_splits,
            normalize,
            device,
            folder,
            meta={"run": run_id},
            run=run,
            on_epoch=lambda stats: listener.epoch_done(spec, stats),
            prune=prune,
            state_every=state_every,
        )
        result = run.result
        finish(result.status, result.note, flops=run.flops, result=result, checkpoint=folder / CHECKPOINT_FILE)
    except KeyboardInterrupt:
        finish(TrialStatus.INTERRUPTED, "stopped by the user")
        raise
    except ListenerFailed as exc:  # the caller's code, not the trial's: stopped, to be resumed
        finish(TrialStatus.INTERRUPTED, str(exc))
        raise
    except DiskFull as exc:  # every later trial would fail the same way: stop the sweep
        finish(TrialStatus.INTERRUPTED, str(exc))
        raise
    except Exception as exc:  # one broken trial must not end the sweep
        note = f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"
        if not isinstance(exc, BenchError):  # keep the traceback for whoever debugs the plugin
            try:
                atomic_write(folder / "error.txt", traceback.format_exc().encode())
                note += f" (traceback in {folder / 'error.txt'})"
            except BenchError:
                pass  # the note still says what went wrong
        finish(TrialStatus.FAILED, note)
    return store.trial(spec.trial_id)
