"""The Ray executor: the run's pending trials as Ray Tune trials, on a local Ray instance or a cluster.

Trials run wherever Ray places them and report every epoch to the driver; a Tune callback in the driver
(this process) writes the store, which only the driver touches. Each trial's best checkpoint goes to Ray's
storage (`--storage`: a directory every node can reach, or any URI Ray accepts), and the driver copies it
next to the store, so that export and reports work as after a local run. ASHA (`--scheduler asha`) stops
weak trials at its rungs; they are recorded as `pruned`."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from bench.core.errors import BenchError, UsageError
from bench.core.files import atomic_write, sha256_of
from bench.core.signals import sigterm_as_interrupt
from bench.core.status import RunStatus, TrialStatus
from bench.data.splits import Dataset
from bench.store import Store
from bench.sweep.listener import RunListener
from bench.sweep.local import SweepOutcome
from bench.sweep.plan import TrialSpec
from bench.sweep.trial import CHECKPOINT_FILE, STATE_FILE, SplitCache, TrialRun, execute_trial
from bench.train.loop import EpochStats, TrialResult, best_epoch

RAY_CHECKPOINT = "ray-checkpoint.txt"  # in the trial's folder beside the store: its latest Tune checkpoint


def _import_ray():
    # Tune's new console output and its default result loggers are noise next to cnnbench's own display.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
        from ray import tune
    except ImportError:
        raise UsageError("--executor ray needs Ray Tune: pip install 'cnnbench[ray]'") from None
    return ray, tune


def train_on_worker(config: dict) -> None:
    """A Tune function trainable: one cnnbench trial (bench.sweep.trial.execute_trial), wherever Ray runs it."""
    from ray import tune

    from bench.data.splits import Normalizer
    from bench.plugins.dataset_loading import load_dataset
    from bench.plugins.manager import get_registry
    from bench.sweep.plan import spec_from_row

    config = config["trial"]
    torch.set_num_threads(max(1, int(config["cpus"])))
    device = torch.device("cuda" if config["gpus"] > 0 and torch.cuda.is_available() else "cpu")
    data = load_dataset(config["dataset"], **config["data"])
    spec = spec_from_row(config["row"], get_registry())
    splits = SplitCache(data, device).get(spec.hparams.val_ratio, spec.hparams.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Tune's own restore (a retried trial), else the interrupted attempt's last checkpoint (bench run --resume).
        restore = tune.get_checkpoint()
        if restore is None and config.get("resume_from"):
            restore = tune.Checkpoint(config["resume_from"])
        if restore is not None:
            with restore.as_directory() as directory:
                for name in (CHECKPOINT_FILE, STATE_FILE):
                    if (Path(directory) / name).is_file():
                        shutil.copy(Path(directory) / name, folder / name)

        run = TrialRun()

        def on_epoch(stats: EpochStats) -> None:
            # Every epoch hands Tune a checkpoint: the best weights so far and the state to continue from; and the
            # model's size, which a trial the scheduler stops after this report is recorded with.
            tune.report(
                {**asdict(stats), "params": run.params, "flops": run.flops, "done_training": False},
                checkpoint=tune.Checkpoint.from_directory(tmp),
            )

        execute_trial(spec, data, splits, Normalizer(data, device), device, folder, meta={}, run=run, on_epoch=on_epoch)
        result = run.result
        final = {k: v for k, v in asdict(result).items() if k != "history"}
        last = result.history[-1] if result.history else None
        tune.report(
            {
                **final,
                "params": run.params,
                "flops": run.flops,
                "done_training": True,
                "history": [asdict(e) for e in result.history],  # with the epochs of an earlier attempt
                "epoch": last.epoch if last else 0,
                "val_loss": result.val_loss,
                "val_acc": result.val_acc,
                "device": str(device),
            }
        )


def run_ray(
    store: Store,
    run_id: str,
    specs: list[TrialSpec],
    data: Dataset,
    *,
    data_options: dict | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    storage: str | None = None,
    scheduler: str = "fifo",
    grace_period: int = 1,
    listener: RunListener | None = None,
    search=None,
) -> SweepOutcome:
    """Train ``specs`` as Ray Tune trials; with ``search`` (bench.sweep.search.TpeSearch), those and then the trials
    it chooses, as a Tune searcher: several may run at once, each told to the study when the store has it."""
    ray, tune = _import_ray()
    listener = listener or RunListener()
    by_idx = {s.idx: s for s in specs}
    sizes = {s.idx: data.split(s.hparams.val_ratio, s.hparams.seed).sizes() for s in specs}
    storage = storage or str((store.root / "ray").resolve())

    def config_of(s: TrialSpec) -> dict:
        return {
            "idx": s.idx,
            "row": {**s.row(), "id": s.trial_id},
            "dataset": data.name,
            "data": data_options or {},
            "cpus": cpus_per_trial,
            "gpus": gpus_per_trial,
            "resume_from": _last_checkpoint(store.trial_dir(run_id, s.idx)),
        }

    def chosen(s: TrialSpec) -> dict:  # a trial the search chose: known to the callback before Tune starts it
        by_idx[s.idx] = s
        sizes[s.idx] = data.split(s.hparams.val_ratio, s.hparams.seed).sizes()
        return {"trial": config_of(s)}

    ToStore = _callback_class(tune)
    metric = (specs[0] if specs else search.space.specs[0]).hparams.select
    mode = "min" if metric == "val_loss" else "max"
    sched = _asha(specs, metric, mode, grace_period) if scheduler == "asha" else None
    if search is not None:
        search.start(specs)  # interrupted trials first, asked again by the study
        searcher = _searcher_class()(search, chosen, metric, mode)
        space, tune_config = {}, {"search_alg": searcher, "num_samples": -1}
    else:
        space, tune_config = {"trial": tune.grid_search([config_of(s) for s in specs])}, {}
    callback = ToStore(store, run_id, by_idx, sizes, listener, search)
    tuner = functools.partial(
        tune.Tuner,
        tune.with_resources(train_on_worker, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=sched, reuse_actors=True, **tune_config),  # no torch per trial
        run_config=tune.RunConfig(
            storage_path=storage,
            name=run_id,
            verbose=0,
            callbacks=[callback],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # only the best is ever reported
        ),
    )
    return _fit(ray, tuner, store, run_id, specs, address, listener)


def _asha(specs: list[TrialSpec], metric: str, mode: str, grace_period: int):
    from ray.tune.schedulers import ASHAScheduler

    # max_t one past the last epoch: ASHA stops any trial that reaches max_t, which would cut off the trial's final
    # report (its test figures).
    max_t = max(s.hparams.epochs for s in specs) + 1
    return ASHAScheduler(time_attr="epoch", metric=metric, mode=mode, max_t=max_t, grace_period=grace_period)


def _fit(ray, tuner, store: Store, run_id: str, specs: list[TrialSpec], address, listener) -> SweepOutcome:
    """Start Ray (unless it runs already), fit ``tuner()``, and record how the sweep ended: completed once no trial is
    left pending or running; interrupted by a stop (Ctrl-C, SIGTERM), with its running trials."""
    store.reopen_run(run_id)
    status = RunStatus.INTERRUPTED
    started_ray = False
    try:
        if not ray.is_initialized():
            with sigterm_as_interrupt():
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level="ERROR",
                    configure_logging=True,
                )
            started_ray = True
        # After ray.init, which installs a SIGTERM handler of its own (the driver died, exit 134): SIGTERM = Ctrl-C.
        with sigterm_as_interrupt():
            listener.run_started(run_id, specs)
            tuner().fit()
            unfinished = (TrialStatus.PENDING, TrialStatus.RUNNING)
            done = all(t["status"] not in unfinished for t in store.trials(run_id))
            status = RunStatus.COMPLETED if done else RunStatus.INTERRUPTED
    except KeyboardInterrupt:
        pass
    except ConnectionError as exc:
        raise BenchError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    finally:
        store.interrupt_running(run_id, "stopped by the user")
        if status != RunStatus.COMPLETED:  # a completed sweep's run is finished by whoever deploys its winners
            store.finish_run(run_id, status)
        if started_ray:
            ray.shutdown()
    return SweepOutcome(run_id, status)


def _callback_class(tune):
    class ToStore(tune.Callback):
        """Runs in the driver: every result and every ending goes to the store, in the driver's thread. Tune
        pickles its callbacks with its own state; the store and the display stay behind."""

        def __init__(self, store: Store, run_id: str, by_idx: dict, sizes: dict, listener: RunListener, search=None):
            self.store, self.run_id, self.by_idx, self.sizes, self.listener = store, run_id, by_idx, sizes, listener
            self.search = search  # told each trial's end once the store has it
            self.history: dict[int, list[EpochStats]] = {}
            self.last: dict[int, dict] = {}
            self.started: dict[int, float] = {}

        def __getstate__(self):
            return {"run_id": self.run_id}

        def spec(self, trial) -> TrialSpec:
            return self.by_idx[trial.config["trial"]["idx"]]

        def elapsed(self, spec: TrialSpec) -> float:
            return time.perf_counter() - self.started.get(spec.idx, time.perf_counter())

        def on_trial_start(self, iteration, trials, trial, **info):
            spec = self.spec(trial)
            folder = self.store.trial_dir(self.run_id, spec.idx)
            self.store.start_trial(spec.trial_id, self.sizes[spec.idx], keep_files=_last_checkpoint(folder) is not None)
            self.history[spec.idx], self.started[spec.idx] = [], time.perf_counter()
            self.listener.trial_started(spec)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            spec = self.spec(trial)
            self.last[spec.idx] = result
            if not result.get("done_training"):
                stats = EpochStats(**{k: result[k] for k in EpochStats.__dataclass_fields__})
                self.history.setdefault(spec.idx, []).append(stats)
                self.listener.epoch_done(spec, stats)

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            """Where the trial's latest state is, for a resume after the driver stops (local or shared storage)."""
            path = getattr(checkpoint, "path", None)
            if path and Path(path).is_dir():
                folder = self.store.trial_dir(self.run_id, self.spec(trial).idx)
                atomic_write(folder / RAY_CHECKPOINT, str(Path(path).resolve()).encode())

        def on_trial_complete(self, iteration, trials, trial, **info):
            spec = self.spec(trial)
            last = self.last.get(spec.idx, {})
            history = self.history.get(spec.idx, [])
            if last.get("history") is not None:  # the worker's own, earlier attempts included
                history = [EpochStats(**e) for e in last["history"]]
            checkpoint = _fetch_checkpoint(trial, self.store.trial_dir(self.run_id, spec.idx))
            result, params, flops = _trial_result(spec, last, history)
            if checkpoint is not None:
                result.checkpoint_sha256 = sha256_of(checkpoint)
            (self.store.trial_dir(self.run_id, spec.idx) / RAY_CHECKPOINT).unlink(missing_ok=True)  # trial ended
            self.store.finish_trial(
                spec.trial_id,
                status=result.status,
                note=result.note,
                params=params,
                flops=flops,
                result=result,
                checkpoint=checkpoint,
                duration_s=self.elapsed(spec),
            )
            if self.search is not None:
                self.search.tell(spec)
            self.listener.trial_done(spec, self.store.trial(spec.trial_id))

        def on_trial_error(self, iteration, trials, trial, **info):
            spec = self.spec(trial)
            self.store.finish_trial(
                spec.trial_id, status=TrialStatus.FAILED, note=_error_of(trial), duration_s=self.elapsed(spec)
            )
            if self.search is not None:
                self.search.tell(spec)
            self.listener.trial_done(spec, self.store.trial(spec.trial_id))

    return ToStore


def _trial_result(spec: TrialSpec, last: dict, history: list[EpochStats]) -> tuple[TrialResult, int | None, int | None]:
    """(result, params, flops) of a trial that ended: its worker's final report, or for a trial the scheduler stopped
    after its last report, its best epoch so far (pruned)."""
    if last.get("done_training"):
        fields = {k: last.get(k) for k in TrialResult.__dataclass_fields__ if k != "history"}
        return TrialResult(**{**fields, "history": history}), last.get("params"), last.get("flops")
    best = best_epoch(history, spec.hparams.select)
    result = TrialResult(
        status=TrialStatus.PRUNED,
        history=history,
        best_epoch=best.epoch if best else None,
        val_loss=best.val_loss if best else None,
        val_acc=best.val_acc if best else None,
        note=f"stopped by ASHA after epoch {history[-1].epoch if history else 0}",
    )
    return result, last.get("params"), last.get("flops")


def _searcher_class():
    from ray.tune.search import Searcher

    class TpeSearcher(Searcher):
        """A Tune searcher asking cnnbench's TPE search (bench.sweep.search) for each next trial. The study and the
        store are its state: nothing to save for Tune."""

        def __init__(self, search, chosen, metric: str, mode: str):
            super().__init__(metric=metric, mode=mode)
            self.search, self.chosen = search, chosen

        def suggest(self, trial_id: str):
            spec = self.search.ask()
            return Searcher.FINISHED if spec is None else self.chosen(spec)

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            pass  # told by the store callback, once the trial is recorded

        def __getstate__(self):  # Tune pickles its searcher with its own state: the store and study stay here
            return {"_metric": self._metric, "_mode": self._mode}

        def save(self, checkpoint_path: str) -> None:
            pass

        def restore(self, checkpoint_path: str) -> None:
            pass

    return TpeSearcher


def _last_checkpoint(folder: Path) -> str | None:
    """The Tune checkpoint an interrupted attempt of this trial left, if it is still there."""
    try:
        path = (folder / RAY_CHECKPOINT).read_text().strip()
    except OSError:
        return None
    return path if (Path(path) / STATE_FILE).is_file() else None


def _fetch_checkpoint(trial, folder: Path) -> Path | None:
    """Copy the trial's latest reported checkpoint (its best) from Ray's storage next to the store."""
    checkpoint = getattr(trial, "checkpoint", None)
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        source = Path(directory) / CHECKPOINT_FILE
        if not source.is_file():
            return None
        target = folder / CHECKPOINT_FILE
        atomic_write(target, source.read_bytes())
    return target


def _error_of(trial) -> str:
    text = ""
    path = getattr(trial, "error_file", None) or ""
    if path and Path(path).is_file():
        text = Path(path).read_text()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:400] if lines else "the trial failed on its Ray worker"
