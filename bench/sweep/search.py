"""A search that learns (`--search tpe`): Optuna's TPE sampler chooses each next trial from the results so far,
among the combinations a grid of the same options would run; Optuna's median or successive-halving pruner may stop
a trial after an epoch. The study is an Optuna study kept in the run's folder (``study.log``, Optuna's journal file:
a thousandth of the start-up time of its SQLite storage), so that a resume continues it and Optuna's own tools can
read it (``optuna.load_study(study_name=RUN, storage=study_storage(PATH))``).

Trials are recorded in the store as the sampler asks for them: a TPE run starts with no trial and ends with
``--trials`` of them. Each ask is seeded by the run's seed and the number of trials the store holds (and of the asks
since that only repeated a known combination), so a run stopped and resumed chooses what an uninterrupted run would
have chosen, given the same results. The Ray executor asks the same search (a Tune searcher, bench.sweep.ray)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from bench.core.errors import UsageError
from bench.core.status import TO_RUN, TrialStatus
from bench.models.registry import where_text
from bench.options.config import AXES
from bench.store import Store
from bench.sweep.plan import RESOLVED, TrialSpec, resolve_plan
from bench.train.loop import EpochStats

STUDY_FILE = "study.log"  # in the run's folder beside its trials
IDX = "cnnbench_trial"  # the user attribute of an Optuna trial: the cnnbench trial (idx) it is
# Asks in a row that only repeat a combination already tried before the search gives up (the space is exhausted
# where TPE keeps choosing known points).
MAX_REPEATS = 100


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise UsageError("--search tpe needs Optuna: pip install 'cnnbench[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # cnnbench's own display says what each trial did
    return optuna


def study_storage(path: Path):
    """Optuna's journal storage in the file ``path``: what a TPE run's study is kept in."""
    optuna = import_optuna()
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def startup_trials(trials: int) -> int:
    """The trials TPE draws at random before it models the results: Optuna's 10, or a quarter of a shorter search
    (at least 2), so that a 20-trial search is mostly guided."""
    return min(10, max(2, trials // 4))


def _choice(value):
    """A value as an Optuna categorical choice (None, bool, int, float or str): tuples and lists as written."""
    return value if value is None or isinstance(value, bool | int | float | str) else where_text(value)


class Space:
    """The combinations TPE chooses among, as a sequence of choices: the architecture (when several), each variant
    parameter (named ``ARCH.PARAM`` when several architectures), then each hyperparameter axis; only choices with
    more than one value are asked. A choice whose values depend on earlier ones (cnn_dropout's dropout layers
    exist only with a dropout rate) is a parameter of its own, named with its values (``dropout_layers[1|2]``), so
    that every Optuna parameter keeps one distribution."""

    def __init__(self, specs: list[TrialSpec]):
        if not specs:
            raise UsageError("nothing to run: the selection matches no variant")
        self.specs = specs
        several = len({s.architecture.name for s in specs}) > 1
        self.points = [self._point(s, several) for s in specs]
        self.values: dict[str, list] = {}
        for point in self.points:
            for key, value in point:
                known = self.values.setdefault(key, [])
                if value not in known:
                    known.append(value)
        self.index = {tuple(p): i for i, p in reversed(list(enumerate(self.points)))}  # a repeated point: its first

    @staticmethod
    def _point(spec: TrialSpec, several: bool) -> list[tuple[str, object]]:
        arch = spec.architecture.name
        point = [("architecture", arch)] if several else []
        point += [(f"{arch}.{k}" if several else k, _choice(v)) for k, v in spec.variant.items()]
        hparams = spec.hparams.as_dict()
        return point + [(axis, _choice(hparams[axis])) for axis in AXES]

    def __len__(self) -> int:
        return len(self.index)

    def suggest(self, trial) -> int:
        """Ask ``trial`` (an Optuna trial) for each choice in turn; the index of the chosen combination."""
        candidates = list(range(len(self.points)))
        depth = 0
        while True:
            if depth == len(self.points[candidates[0]]):
                return candidates[0]
            key = self.points[candidates[0]][depth][0]  # one key at a depth: the architecture is chosen first
            choices = []
            for i in candidates:
                value = self.points[i][depth][1]
                if value not in choices:
                    choices.append(value)
            if len(choices) > 1:
                every = self.values[key]
                name = key if choices == every else f"{key}[{'|'.join(map(str, choices))}]"
                value = trial.suggest_categorical(name, choices)
            else:
                value = choices[0]
            candidates = [i for i in candidates if self.points[i][depth][1] == value]
            depth += 1


class TpeSearch:
    """The trials of a TPE run, asked for one after the other (``specs``), told their results as they end."""

    def __init__(
        self, store: Store, run_id: str, space: list[TrialSpec], *, trials: int, seed: int, pruner: str, data, device
    ):
        self.optuna = import_optuna()
        self.store, self.run_id, self.data, self.device = store, run_id, data, device
        self.space = Space(space)
        self.trials, self.seed = trials, seed
        select = space[0].hparams.select
        self.metric, self.direction = select, "minimize" if select == "val_loss" else "maximize"
        self.pruner_name = pruner
        path = store.run_dir(run_id) / STUDY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self.storage = study_storage(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's experimental-feature warnings
            self.study = self.optuna.create_study(
                study_name=run_id,
                storage=self.storage,
                direction=self.direction,
                pruner=self._pruner(pruner),
                load_if_exists=True,
            )
        self.live: dict[int, object] = {}  # idx -> the Optuna trial training it
        self.asked: list[TrialSpec] = []  # what this call trained, in order

    def _pruner(self, name: str):
        pruners = self.optuna.pruners
        if name == "median":
            return pruners.MedianPruner(n_startup_trials=startup_trials(self.trials), n_warmup_steps=2)
        if name == "halving":
            return pruners.SuccessiveHalvingPruner()
        return pruners.NopPruner()

    def _sampler(self, recorded: int, repeats: int):
        # Seeded by the trials recorded so far (and the asks since the last that only repeated a known combination):
        # the same choices after a resume as without the stop.
        return self.optuna.samplers.TPESampler(
            seed=(self.seed + 7919 * recorded + repeats) % 2**32, n_startup_trials=startup_trials(self.trials)
        )

    def start(self, pending: list[TrialSpec]) -> None:
        """Take up what a stop left: a trial that ended before the study was told is told now; one a stop
        interrupted (``pending``) is asked again first, under its own combination, by a fresh Optuna trial."""
        states = self.optuna.trial.TrialState
        self.waiting = {s.idx: s for s in pending}
        self.repeats = 0
        ended = {t["idx"]: t for t in self.store.trials(self.run_id) if t["status"] not in TO_RUN}
        for frozen in self.study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            idx = frozen.user_attrs.get(IDX)
            if idx in ended:  # the trial ended, the process stopped before telling the study
                self._tell(frozen.number, ended[idx])
                continue
            self.study.tell(frozen.number, state=states.FAIL)  # its process stopped: a fresh Optuna trial trains it
            if idx in self.waiting:
                self.study.enqueue_trial(frozen.params, user_attrs={IDX: idx})

    def ask(self) -> TrialSpec | None:
        """The next trial to train, recorded in the store; None when the run has its ``trials`` (or the space is
        exhausted). Trials may be asked for before earlier ones are told (the Ray executor runs several at once)."""
        states = self.optuna.trial.TrialState
        while True:
            recorded = self.store.trials(self.run_id)
            if len(recorded) >= self.trials and not self.waiting:
                return None
            if len(recorded) >= self.trials and not self.study.get_trials(deepcopy=False, states=(states.WAITING,)):
                spec = self.waiting.popitem()[1]  # interrupted, its Optuna trial lost: trained, told nothing
                self.asked.append(spec)
                return spec
            self.study.sampler = self._sampler(len(recorded), self.repeats)
            trial = self.study.ask()
            chosen = self.space.specs[self.space.suggest(trial)]
            idx = trial.user_attrs.get(IDX)
            if idx in self.waiting:  # an interrupted trial, asked again with its own combination
                spec = self.waiting.pop(idx)
            else:
                earlier = self._earlier(chosen, recorded)
                if earlier is not None:  # a combination already chosen: its result again (if known), nothing trained
                    if earlier["status"] in TO_RUN:
                        self.study.tell(trial, state=states.FAIL)
                    else:
                        self._tell(trial, earlier)
                    self.repeats += 1
                    if self.repeats >= MAX_REPEATS or len(recorded) >= len(self.space):
                        return None
                    continue
                idx = max((t["idx"] for t in recorded), default=0) + 1
                trial.set_user_attr(IDX, idx)  # before the store has it: a stop in between leaves no stray trial
                spec = resolve_plan([replace(chosen, idx=idx)], self.data, self.device)[0]
                spec = replace(spec, trial_id=self.store.add_trial(self.run_id, spec.row()))
            self.repeats = 0
            self.live[spec.idx] = trial
            self.asked.append(spec)
            return spec

    def tell(self, spec: TrialSpec) -> None:
        """Tell the study how ``spec``'s trial ended, as the store recorded it (a stopped one: at the resume)."""
        trial = self.live.pop(spec.idx, None)
        if trial is not None:
            self._tell(trial, self.store.trial(spec.trial_id))

    def specs(self, pending: list[TrialSpec]) -> Iterator[TrialSpec]:
        """The local executor's trials, one at a time: those a stop interrupted, then new ones until the run has
        ``trials``; each told its result when it has been recorded."""
        self.start(pending)
        while (spec := self.ask()) is not None:
            yield spec
            self.tell(spec)

    @staticmethod
    def _earlier(chosen: TrialSpec, recorded: list[dict]) -> dict | None:
        """The recorded trial of the same combination, if there is one (what the plan resolves aside: precision,
        layout, batch-norm recalibration)."""

        def key(row: dict) -> str:
            hparams = {k: v for k, v in row["hparams"].items() if k not in RESOLVED}
            return json.dumps([row["architecture"], row["variant"], hparams], sort_keys=True, default=list)

        wanted = key(chosen.row())
        return next((t for t in recorded if key(t) == wanted), None)

    def _tell(self, trial, record: dict) -> None:
        states = self.optuna.trial.TrialState
        value = record.get(self.metric)
        if record["status"] in TO_RUN:
            return  # stopped: the next run's first ask takes it up again
        if record["status"] == TrialStatus.PRUNED:
            self.study.tell(trial, state=states.PRUNED)
        elif value is None:
            self.study.tell(trial, state=states.FAIL)
        else:
            self.study.tell(trial, value)

    def prune(self, spec: TrialSpec, stats: EpochStats) -> str | None:
        """Report an epoch's validation metric to the trial's pruner: a reason to stop, or None."""
        trial = self.live.get(spec.idx)
        if trial is None or self.pruner_name == "none":
            return None
        trial.report(getattr(stats, self.metric), stats.epoch)
        if trial.should_prune():
            kind = "median" if self.pruner_name == "median" else "successive-halving"
            return f"stopped by Optuna's {kind} pruner after epoch {stats.epoch}"
        return None
