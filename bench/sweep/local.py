"""Recording a sweep and the local executor. The run and its whole plan are recorded first (every trial
'pending'), then an executor runs what is pending; resuming a run is running what is still pending, running
or interrupted. The local executor trains trial after trial in this process, each recorded the moment it
ends."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

import torch

from bench.data import Dataset, Normalizer
from bench.environment import environment
from bench.errors import BenchError, DiskFull
from bench.files import atomic_write
from bench.signals import sigterm_as_interrupt
from bench.store import Store
from bench.sweep.plan import TrialSpec, check_plan, resolve_plan, spec_from_row
from bench.sweep.trial import CHECKPOINT_FILE, STATE_FILE, TO_RUN, Progress, SplitCache, TrialRun, execute_trial


@dataclass
class SweepOutcome:
    run_id: str
    status: str  # completed | interrupted


def create_run(store: Store, specs: list[TrialSpec], data: Dataset, *, device: torch.device, command: str,
               config: dict) -> tuple[str, list[TrialSpec]]:  # fmt: skip
    """Record the run and its plan; return the run id and the specs with their store ids."""
    check_plan(specs, data)
    specs = resolve_plan(specs, data, device)
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
        trials=[s.row() for s in specs],
    )
    return run_id, pending(store, run_id)


def pending(store: Store, run_id: str) -> list[TrialSpec]:
    """The trials of ``run_id`` still to train, in plan order."""
    from bench.plugins import get_registry

    registry = get_registry()
    return [spec_from_row(t, registry) for t in store.trials(run_id) if t["status"] in TO_RUN]


def run_local(store: Store, run_id: str, specs: list[TrialSpec], data: Dataset, *, device: torch.device,
              progress: Progress | None = None) -> SweepOutcome:  # fmt: skip
    """Train ``specs`` (trials of ``run_id``) one after the other in this process."""
    progress = progress or Progress()
    splits = SplitCache(data, device)
    normalize = Normalizer(data, device)
    store.reopen_run(run_id)
    progress.run_started(run_id, specs)
    status = "interrupted"
    try:
        with sigterm_as_interrupt():
            for spec in specs:
                trial = run_trial(store, run_id, spec, splits, normalize, data, device, progress)
                progress.trial_done(spec, trial)
            status = "completed"
    except KeyboardInterrupt:
        pass
    except DiskFull:
        status = "failed"
        raise
    finally:
        store.interrupt_running(run_id, "stopped by the user")
        if status != "completed":  # a completed sweep's run is finished by whoever deploys its winners
            store.finish_run(run_id, status)
    return SweepOutcome(run_id, status)


def run_trial(store: Store, run_id: str, spec: TrialSpec, splits: SplitCache, normalize: Normalizer, data: Dataset,
              device: torch.device, progress: Progress) -> dict:  # fmt: skip
    """Execute one trial here and record how it ended; one broken trial never ends the sweep."""
    hp = spec.hparams
    trial_splits = splits.get(hp.val_ratio, hp.seed)
    folder = store.trial_dir(run_id, spec.idx)
    store.start_trial(spec.trial_id, trial_splits.sizes(), keep_files=(folder / STATE_FILE).is_file())
    progress.trial_started(spec)
    started = time.perf_counter()
    run = TrialRun()

    def finish(status: str, note: str | None = None, **more) -> None:
        store.finish_trial(spec.trial_id, status=status, note=note, params=run.params,
                           duration_s=time.perf_counter() - started, **more)  # fmt: skip

    try:
        execute_trial(spec, data, trial_splits, normalize, device, folder, meta={"run": run_id}, run=run,
                      on_epoch=lambda stats: progress.epoch_done(spec, stats))  # fmt: skip
        result = run.result
        finish(result.status, result.note, flops=run.flops, result=result, checkpoint=folder / CHECKPOINT_FILE)
    except KeyboardInterrupt:
        finish("interrupted", "stopped by the user")
        raise
    except DiskFull as exc:  # every later trial would fail the same way: stop the sweep
        finish("interrupted", str(exc))
        raise
    except Exception as exc:  # one broken trial must not end the sweep
        note = f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"
        if not isinstance(exc, BenchError):  # keep the traceback for whoever debugs the plugin
            try:
                atomic_write(folder / "error.txt", traceback.format_exc().encode())
                note += f" (traceback in {folder / 'error.txt'})"
            except BenchError:
                pass  # the note still says what went wrong
        finish("failed", note)
    return store.trial(spec.trial_id)
