"""The local executor: run a planned sweep trial after trial in this process, recording each trial in
the store the moment it ends."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

import torch

from bench.checkpoints import atomic_write
from bench.data import Dataset, Normalizer, Split, Splits
from bench.environment import environment
from bench.errors import BenchError, UsageError
from bench.modelstats import count_flops, count_parameters
from bench.store import Store
from bench.sweep import TrialSpec
from bench.training import EpochStats, train_trial


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


class _SplitCache:
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


def check_plan(specs: list[TrialSpec], splits: _SplitCache) -> None:
    """Refuse a plan that cannot run, before anything is recorded."""
    if not specs:
        raise UsageError("nothing to run: the selection matches no variant")
    for spec in specs:
        hp = spec.hparams
        n_train = len(splits.get(hp.val_ratio, hp.seed).train)  # raises on an empty split
        if hp.batch_size > n_train:
            raise UsageError(
                f"invalid value for --batch-size: {hp.batch_size} is larger than the {n_train} training "
                f"images of '{splits.data.name}' (with --val-ratio {hp.val_ratio})"
            )


def run_sweep(
    store: Store,
    specs: list[TrialSpec],
    data: Dataset,
    *,
    device: torch.device,
    command: str,
    config: dict,
    progress: Progress | None = None,
) -> SweepOutcome:
    progress = progress or Progress()
    splits = _SplitCache(data, device)
    check_plan(specs, splits)
    first = specs[0].hparams
    run_id = store.create_run(
        command=command,
        dataset=data.name,
        input_shape=data.input_shape,
        classes=data.classes,
        split=splits.get(first.val_ratio, first.seed).sizes(),
        seed=first.seed,
        config=config,
        environment=environment(device),
    )
    normalize = Normalizer(data, device)
    progress.run_started(run_id, specs)
    status = "running"
    try:
        for spec in specs:
            trial = run_trial(store, run_id, spec, splits, normalize, data, device, progress)
            progress.trial_done(spec, trial)
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        store.finish_run(run_id, status if status != "running" else "failed")
    return SweepOutcome(run_id, status)


def run_trial(
    store: Store,
    run_id: str,
    spec: TrialSpec,
    splits: _SplitCache,
    normalize: Normalizer,
    data: Dataset,
    device: torch.device,
    progress: Progress,
) -> dict:
    hp = spec.hparams
    trial_splits = splits.get(hp.val_ratio, hp.seed)
    trial_id = store.start_trial(
        run_id,
        spec.idx,
        spec.architecture.name,
        spec.architecture.plugin,
        spec.variant,
        hp.as_dict(),
        trial_splits.sizes(),
    )
    folder = store.trial_dir(run_id, spec.idx)
    checkpoint = folder / "best.pt"
    progress.trial_started(spec)
    started = time.perf_counter()
    params = flops = None
    try:
        torch.manual_seed(hp.seed)  # the same initial weights for every trial of a seed
        model = spec.architecture.build(data.input_shape, data.num_classes, spec.variant).to(device)
        params = count_parameters(model)
        flops = count_flops(model, data.input_shape)
        result = train_trial(
            model,
            trial_splits,
            normalize,
            hp,
            checkpoint,
            data.num_classes,
            on_epoch=lambda stats: progress.epoch_done(spec, stats),
            checkpoint_meta={"run": run_id, "trial": spec.idx, "architecture": spec.architecture.name},
        )
        store.finish_trial(
            trial_id,
            status=result.status,
            note=result.note,
            params=params,
            flops=flops,
            result=result,
            checkpoint=checkpoint,
            duration_s=time.perf_counter() - started,
        )
    except KeyboardInterrupt:
        store.finish_trial(
            trial_id,
            status="interrupted",
            note="stopped by the user",
            params=params,
            duration_s=time.perf_counter() - started,
        )
        raise
    except Exception as exc:  # one broken trial must not end the sweep
        note = f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"
        if not isinstance(exc, BenchError):  # keep the traceback for whoever debugs the plugin
            try:
                atomic_write(folder / "error.txt", traceback.format_exc().encode())
                note += f" (traceback in {folder / 'error.txt'})"
            except OSError:
                pass
        store.finish_trial(
            trial_id, status="failed", note=note, params=params, duration_s=time.perf_counter() - started
        )
    return next(t for t in store.trials(run_id) if t["idx"] == spec.idx)
