"""What a run will cost before it runs: `bench run --dry-run`'s plan, with each trial's size and cost, and the
`RunEstimate` that the progress display counts down from.

Training: a trial's training FLOPs divided by the training rate (FLOP/s) that earlier completed trials in the store
measured on this machine (same CPU model and device): those of the same architecture where there are some (a small
net is overhead-bound, its rate far below a big one's), else all of them. Deployment (export, variants, benchmarks):
the seconds per deployed winner of earlier runs on this machine with the same deployment options (each run records
its deployments' wall time; the median), times the winners this run will deploy."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.core.formats import duration
from bench.core.status import TO_RUN, TrialStatus
from bench.options.choices import DEPLOY
from bench.options.config import RunConfig, option_names

# A training step costs about three forward passes (forward, and a backward pass of about twice its cost).
TRAIN_FLOPS_PER_FORWARD = 3


@dataclass(frozen=True)
class RunEstimate:
    """A run's size and expected cost: ``trials`` planned (--search tpe: up to --trials), ``done`` of them already
    ended (a resume), ``train_s`` for the others (None: this machine has no rate), ``winners`` to export and
    benchmark and ``deploy_s`` for them (None: no earlier run on this machine deployed with these options); each
    with where its rate came from."""

    trials: int
    done: int = 0
    train_s: float | None = None
    winners: int = 0
    deploy_s: float | None = None
    train_from: str | None = None
    deploy_from: str | None = None
    searching: bool = False  # a search chooses the trials as it goes: ``trials`` is the most it trains

    @property
    def total_s(self) -> float | None:
        """Training and deployment together; None when either is unknown (a part cannot be left out silently)."""
        if self.train_s is None or (self.winners and self.deploy_s is None):
            return None
        return self.train_s + (self.deploy_s or 0.0)

    def describe(self) -> str:
        """One sentence: the estimate and its method, or what is missing for one."""
        train = (
            f"about {duration(self.train_s)} of training (rates of {self.train_from})"
            if self.train_s is not None
            else "training not estimated (this machine has no completed trial in the store to take a rate from)"
        )
        if not self.winners:
            return f"{train}; nothing to deploy"
        deploy = (
            f"about {duration(self.deploy_s)} to export and benchmark {self.winners} winner"
            f"{'s' * (self.winners != 1)} ({self.deploy_from})"
            if self.deploy_s is not None
            else f"deployment of {self.winners} winner{'s' * (self.winners != 1)} not estimated (no earlier "
            "completed run on this machine deployed with these options)"
        )
        total = f"; about {duration(self.total_s)} in all" if self.total_s is not None else ""
        return f"{train}; {deploy}{total}"


def dry_run(config: RunConfig, store_path=None) -> dict:
    """The trials ``config`` plans (nothing trained, nothing stored): for each, its architecture, variant and
    hyperparameters, parameters, forward FLOPs per image, training FLOPs, and the estimated training time where
    this machine has a measured rate; with the plan's notes and the whole run's estimate, deployment included."""
    from bench.plugins.dataset_loading import load_dataset
    from bench.sweep.plan import check_plan, plan_run
    from bench.sweep.trial import resolve_weights, starting_points
    from bench.train.device import resolve_device

    notes: list[str] = []
    config = resolve_weights(config, store_path)  # as `bench run` records them: a file that is not there is refused
    specs = plan_run(config, notes)
    if config.search == "tpe" and config.trials < len(specs):
        notes.append(
            f"--search tpe trains {config.trials} of these {len(specs)} combinations, each chosen from the results "
            "before it"
        )
    data = load_dataset(config.dataset, download=config.download, **config.data_options())
    check_plan(specs, data)
    notes += starting_points(specs, data)  # weights that do not fit are refused here too, as `bench run` would
    device = resolve_device(config.device)
    path = Path(store_path) if store_path is not None else None
    history = _History.read(path, device.type)
    rows = trial_rows(specs, data, history)
    estimate = _estimate(config, specs, rows, history)
    return {
        "dataset": data.name,
        "input_shape": list(data.input_shape),
        "trials": rows,
        "notes": notes,
        "rates_from": history.train_from,
        "estimate": {**estimate.__dict__, "total_s": estimate.total_s, "text": estimate.describe()},
    }


def run_estimate(store, run_id: str, config: RunConfig, to_train: list, data, device, search=None) -> RunEstimate:
    """The estimate of run ``run_id`` about to train ``to_train`` (its trials still to run; with ``search``, a
    bench.sweep.search.TpeSearch, those a stop interrupted, then what it chooses from its space)."""
    recorded = store.trials(run_id)
    done = sum(t["status"] not in TO_RUN for t in recorded)
    history = _History.read(store.path, device.type)
    if search is None:
        each = [r["estimated_s"] for r in trial_rows(to_train, data, history)] if history.rates else [None]
        train_s = sum(each) if None not in each else None
        archs = [t["architecture"] for t in recorded]
        return _with_deploy(config, len(recorded), done, train_s, _winners(config, archs, len(recorded)), history)
    space = search.space.specs
    planned = min(config.trials, len(space))
    left = max(planned - done, len(to_train))
    train_s = _mean_cost(trial_rows(space, data, history), left) if history.rates else None
    winners = _winners(config, [s.architecture.name for s in space], planned)
    return _with_deploy(config, done + left, done, train_s, winners, history)


def trial_rows(specs: list, data, history: _History) -> list[dict]:
    """Each spec's size and cost (the plan table's rows)."""
    from bench.models.stats import count_flops, count_parameters

    rows = []
    sizes: dict[str, tuple[int, int]] = {}  # a variant is built and counted once, whatever the grid repeats of it
    for spec in specs:
        hp = spec.hparams
        key = json.dumps([spec.architecture.name, spec.variant], sort_keys=True, default=str)
        if key not in sizes:
            model = spec.architecture.build(data.input_shape, data.num_classes, spec.variant)
            sizes[key] = count_parameters(model), count_flops(model, data.input_shape)
        params, flops = sizes[key]
        train = data.split(hp.val_ratio, hp.seed).sizes()["train"]
        total = TRAIN_FLOPS_PER_FORWARD * flops * train * hp.epochs
        own = history.rates.get(spec.architecture.name) or [r for rs in history.rates.values() for r in rs]
        rate = statistics.median(own) if own else None
        rows.append(
            {
                "trial": spec.idx,
                "architecture": spec.architecture.name,
                "variant": spec.variant,
                "hparams": hp.as_dict(),
                "params": params,
                "flops": flops,
                "train_images": train,
                "train_flops": total,
                "estimated_s": total / rate if rate else None,
                "rate_of": None if not rate else "architecture" if spec.architecture.name in history.rates else "all",
            }
        )
    return rows


def _estimate(config: RunConfig, specs: list, rows: list[dict], history: _History) -> RunEstimate:
    """A new run's estimate from its plan's rows (a search: --trials of them, each about their mean)."""
    archs = [s.architecture.name for s in specs]
    if config.search == "tpe":
        planned = min(config.trials, len(specs))
        return _with_deploy(config, planned, 0, _mean_cost(rows, planned), _winners(config, archs, planned), history)
    each = [r["estimated_s"] for r in rows]
    train_s = sum(each) if None not in each else None
    return _with_deploy(config, len(specs), 0, train_s, _winners(config, archs, len(specs)), history)


def _mean_cost(rows: list[dict], n: int) -> float | None:
    each = [r["estimated_s"] for r in rows]
    return statistics.mean(each) * n if each and None not in each else None


def _with_deploy(config, trials: int, done: int, train_s, winners: int, history: _History) -> RunEstimate:
    per_winner, deploy_from = history.deploy_seconds(config)
    return RunEstimate(
        searching=config.search == "tpe",
        trials=trials,
        done=done,
        train_s=train_s,
        winners=winners,
        deploy_s=per_winner * winners if per_winner is not None else None,
        train_from=history.train_from,
        deploy_from=deploy_from,
    )


def _winners(config: RunConfig, architectures: list[str], planned: int) -> int:
    """How many trials the run exports and benchmarks: --top-k of each architecture (of at most ``planned``)."""
    if config.no_benchmark:
        return 0
    per_arch: dict[str, int] = {}
    for name in architectures:
        per_arch[name] = per_arch.get(name, 0) + 1
    return min(planned, sum(min(config.top_k, n) for n in per_arch.values()))


@dataclass
class _History:
    """What earlier runs in the store measured on this machine (same CPU model, same device type)."""

    rates: dict[str, list[float]]  # training FLOP/s by architecture
    train_from: str | None
    deployments: list[tuple[dict, float]]  # (the run's deploy options, seconds per deployed winner)
    where: str = ""

    @classmethod
    def read(cls, path: Path | None, device: str) -> _History:
        """Only reads; nothing when there is no store."""
        from bench.core.machine import cpu_model
        from bench.store import Store, default_path

        path = path if path is not None else default_path()
        if not path.is_file():
            return cls({}, None, [])
        cpu = cpu_model()
        rates: dict[str, list[float]] = {}
        deployments = []
        with Store(path, readonly=True) as store:
            for run in store.runs():
                env = run["environment"] or {}
                if env.get("cpu") != cpu or str(env.get("device", "cpu")).split(":")[0] != device:
                    continue
                for trial in store.trials(run["id"]):
                    rate = _rate(store, trial)
                    if rate:
                        rates.setdefault(trial["architecture"], []).append(rate)
                seconds = _deploy_seconds(run)
                if seconds is not None:
                    deployments.append((_deploy_options(run["config"]), seconds))
        n = sum(map(len, rates.values()))
        where = f"{path} on {cpu} ({device})"
        return cls(rates, f"{n} completed trials in {where}" if n else None, deployments, where)

    def deploy_seconds(self, config: RunConfig) -> tuple[float | None, str | None]:
        """Seconds per deployed winner with ``config``'s deployment options, and where the figure came from."""
        wanted = _deploy_options(config.asdict())
        same = [s for options, s in self.deployments if options == wanted]
        if not same:
            return None, None
        runs = f"{len(same)} earlier run{'s' * (len(same) != 1)}"
        return statistics.median(same), f"median of {runs} with these options in {self.where}"


def _rate(store, trial: dict) -> float | None:
    history = store.history(trial["id"]) if trial["status"] == TrialStatus.COMPLETED else []
    seconds = history[-1]["elapsed_s"] if history else None
    train = (trial["split"] or {}).get("train")
    if seconds and train and trial["flops"]:
        return TRAIN_FLOPS_PER_FORWARD * trial["flops"] * train * len(history) / seconds
    return None


def _deploy_seconds(run: dict) -> float | None:
    """Seconds per winner that a run spent deploying (store schema 9 on); None where it deployed nothing."""
    if not run.get("deployed_trials") or not run.get("deploy_s"):
        return None
    return run["deploy_s"] / run["deployed_trials"]


def _deploy_options(config: dict) -> dict:
    """What decides how long a winner takes to deploy (how many winners there are aside)."""
    return {name: config.get(name) for name in option_names(DEPLOY) if name not in ("top_k", "no_benchmark")}
