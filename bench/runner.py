"""Running a sweep: the run and its whole plan are recorded first (every trial 'pending'), then an
executor runs what is pending. Resuming a run is running what is still pending, running or interrupted.

The local executor lives here: trial after trial in this process, each recorded the moment it ends."""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from dataclasses import dataclass, replace

import torch

from bench.checkpoints import atomic_write
from bench.data import Dataset, Normalizer, Split, Splits
from bench.environment import environment
from bench.errors import BenchError, DiskFull, UsageError
from bench.modelstats import count_flops, count_parameters
from bench.store import Store
from bench.sweep import TrialSpec, spec_from_row
from bench.training import EpochStats, resolve_speed, train_trial

TO_RUN = ("pending", "running", "interrupted")  # what a resumed run trains (again)
CHECKPOINT_FILE = "best.pt"  # the best epoch's weights, kept
STATE_FILE = "state.pt"  # an unfinished trial's training state after its last finished epoch (training.save_state)


class Progress:
    """Hooks for a display; the default shows nothing."""

    def run_started(self, run_id: str, specs: list[TrialSpec]) -> None: ...
    def trial_started(self, spec: TrialSpec) -> None: ...
    def epoch_done(self, spec: TrialSpec, stats: EpochStats) -> None: ...
    def trial_done(self, spec: TrialSpec, trial: dict) -> None: ...


@dataclass
class SweepOutcome:
    run_id: str
    status: str  # completed | interrupted


def _to(split: Split, device: torch.device) -> Split:
    return Split(split.images.to(device), split.labels.to(device))


class SplitCache:
    """One train/validation split per (val_ratio, seed), moved to the device once."""

    def __init__(self, data: Dataset, device: torch.device):
        self.data, self.device, self.cache = data, device, {}
        self.test = _to(data.test, device)

    def get(self, val_ratio: float, seed: int) -> Splits:
        key = (val_ratio, seed)
        if key not in self.cache:
            s = self.data.split(val_ratio, seed)
            self.cache[key] = Splits(_to(s.train, self.device), _to(s.val, self.device), self.test)
        return self.cache[key]


def check_plan(specs: list[TrialSpec], data: Dataset) -> None:
    """Refuse a plan that cannot run, before anything is recorded."""
    if not specs:
        raise UsageError("nothing to run: the selection matches no variant")
    sizes: dict[tuple, int] = {}
    for spec in specs:
        hp = spec.hparams
        key = (hp.val_ratio, hp.seed)
        if key not in sizes:
            sizes[key] = len(data.split(*key).train)  # raises on an empty split
        if hp.batch_size > sizes[key]:
            raise UsageError(
                f"invalid value for --batch-size: {hp.batch_size} is larger than the {sizes[key]} training "
                f"images of '{data.name}' (with --val-ratio {hp.val_ratio})"
            )


def resolve_plan(specs: list[TrialSpec], data: Dataset, device: torch.device) -> list[TrialSpec]:
    """Replace 'auto' precision and layout by their values on ``device`` before the plan is recorded, so
    every trial says what it trains in from the start and a resumed run trains the same way. A model
    that cannot be built here keeps 'auto': its trial fails, or resolves, when it runs."""
    chosen: dict[tuple, object] = {}
    out = []
    for spec in specs:
        hp = spec.hparams
        if hp.precision == "auto" or hp.channels_last is None:
            key = (spec.architecture.name, repr(spec.variant), hp.precision, hp.channels_last)
            if key not in chosen:
                try:
                    model = spec.architecture.build(data.input_shape, data.num_classes, spec.variant).to(device)
                    resolved = resolve_speed(hp, model, data.input_shape, device)
                    chosen[key] = {"precision": resolved.precision, "channels_last": resolved.channels_last}
                except Exception:  # noqa: BLE001 - recorded when the trial itself runs
                    chosen[key] = {}
            spec = replace(spec, hparams=replace(hp, **chosen[key]))
        out.append(spec)
    return out


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
    )
    store.plan_trials(run_id, [s.row() for s in specs])
    return run_id, pending(store, run_id)


def pending(store: Store, run_id: str) -> list[TrialSpec]:
    """The trials of ``run_id`` still to train, in plan order."""
    from bench.plugins import get_registry

    registry = get_registry()
    return [spec_from_row(t, registry) for t in store.trials(run_id) if t["status"] in TO_RUN]


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill, `kill PID`) stops the sweep as Ctrl-C does: cleanly, trial marked."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        store.finish_run(run_id, status)
    return SweepOutcome(run_id, status)


def run_trial(store: Store, run_id: str, spec: TrialSpec, splits: SplitCache, normalize: Normalizer, data: Dataset,
              device: torch.device, progress: Progress) -> dict:  # fmt: skip
    hp = spec.hparams
    trial_splits = splits.get(hp.val_ratio, hp.seed)
    folder = store.trial_dir(run_id, spec.idx)
    state = folder / STATE_FILE
    store.start_trial(spec.trial_id, trial_splits.sizes(), keep_files=state.is_file())  # continued, not redone
    checkpoint = folder / CHECKPOINT_FILE
    progress.trial_started(spec)
    started = time.perf_counter()
    params = flops = None
    try:
        torch.manual_seed(hp.seed)  # the same initial weights for every trial of a seed
        model = spec.architecture.build(data.input_shape, data.num_classes, spec.variant).to(device)
        params = count_parameters(model)
        flops = count_flops(model, data.input_shape)
        result = train_trial(
            model, trial_splits, normalize, hp, checkpoint, data.num_classes,
            on_epoch=lambda stats: progress.epoch_done(spec, stats),
            checkpoint_meta={"run": run_id, "trial": spec.idx, "architecture": spec.architecture.name},
            state_path=state,
        )  # fmt: skip
        store.finish_trial(spec.trial_id, status=result.status, note=result.note, params=params, flops=flops,
                           result=result, checkpoint=checkpoint, duration_s=time.perf_counter() - started)  # fmt: skip
    except KeyboardInterrupt:
        store.finish_trial(spec.trial_id, status="interrupted", note="stopped by the user", params=params,
                           duration_s=time.perf_counter() - started)  # fmt: skip
        raise
    except DiskFull as exc:  # every later trial would fail the same way: stop the sweep
        store.finish_trial(spec.trial_id, status="interrupted", note=str(exc), params=params,
                           duration_s=time.perf_counter() - started)  # fmt: skip
        raise
    except Exception as exc:  # one broken trial must not end the sweep
        note = f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"
        if not isinstance(exc, BenchError):  # keep the traceback for whoever debugs the plugin
            try:
                atomic_write(folder / "error.txt", traceback.format_exc().encode())
                note += f" (traceback in {folder / 'error.txt'})"
            except BenchError:
                pass  # the note still says what went wrong
        store.finish_trial(spec.trial_id, status="failed", note=note, params=params,
                           duration_s=time.perf_counter() - started)  # fmt: skip
    return store.trial(spec.trial_id)
