"""`RunConfig`: everything `bench run` can be told, one field per option, declared by stage (plan.py, train.py,
execute.py, deploy.py). What follows from the declarations lives here too: the grid's axes, the Ray-only and
machine-bound options, the options a plugin may default, the look-ups every stage uses (`option_of`,
`option_names`, `default`) and the settings dataclasses of the deploy stages (`stage_settings`).

No torch here: `bench --help` and config files load this package alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from bench.core.errors import UsageError
from bench.options.choices import DEPLOY, MAX_THREADS, TRAIN
from bench.options.deploy import DeployOptions
from bench.options.execute import ExecuteOptions
from bench.options.option import Option, check_field, field_default, flag
from bench.options.per_arch import check_per_arch
from bench.options.plan import PlanOptions
from bench.options.train import TrainOptions


@dataclass
class RunConfig(
    DeployOptions, ExecuteOptions, TrainOptions, PlanOptions
):  # fields in plan, train, execute, deploy order
    """Everything `bench run` can be told. Every field is the option of the same name (``--top-k`` for ``top_k``)
    with the same meaning; list fields are axes of the grid where they are hyperparameters (each value is tried).
    Checked as it is built: a bad value is a UsageError naming the option."""

    def __post_init__(self):
        self.check()

    def asdict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """A config from ``asdict()`` output or a --config file's table (unknown keys refused, naming them)."""
        names = set(option_names())
        d = {ALIASES.get(k, k).replace("-", "_"): v for k, v in d.items()}
        extra = sorted(set(d) - names)
        if extra:
            raise UsageError(f"unknown option '{extra[0]}' (known: {', '.join(sorted(names))})")
        return cls(**d)

    @classmethod
    def from_record(cls, recorded: dict) -> RunConfig:
        """The config a stored run recorded, including runs recorded before RunConfig (cnnbench <= 0.5). A run stays
        usable on another machine: thread counts recorded on a larger one are this machine's CPU count here."""
        names = set(option_names())
        recorded = {
            k: min(v, MAX_THREADS) if k in MACHINE_BOUND and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in recorded.items()
        }
        if "axes" not in recorded:
            return cls(**{k: v for k, v in recorded.items() if k in names})
        legacy = {k: v for k, v in recorded.items() if k in names and k != "plugins"}
        legacy.update({k: v for k, v in (recorded.get("axes") or {}).items() if k in AXES})
        legacy.update({k: v for k, v in (recorded.get("data") or {}).items() if v is not None})
        legacy["plugin"] = recorded.get("plugins") or []
        legacy["arch"] = recorded.get("architectures") or []
        if isinstance(legacy.get("nesterov"), list):
            legacy["nesterov"] = legacy["nesterov"][0]
        return cls(**legacy)

    def data_options(self) -> dict:
        """The keyword arguments of bench.plugins.dataset_loading.load_dataset, besides the dataset's name and
        --download: the options declared ``loads_data``."""
        return {name: getattr(self, name) for name in DATA_OPTIONS}

    def axes(self) -> dict[str, list | None]:
        """The grid's axes: values per hyperparameter, None where the architecture's default applies."""
        out = {k: getattr(self, k) for k in AXES}
        out["nesterov"] = None if self.nesterov is None else [self.nesterov]
        return out

    def fixed(self) -> dict:
        """The train-stage options that are not axes: one value for every trial of the run (None: the plugin's
        default where it may set one, else cnnbench's)."""
        return {name: getattr(self, name) for name in option_names(TRAIN) if name not in AXES}

    def check(self) -> None:
        """Refuse values no run can use, naming the option, before anything is recorded; normalize the rest (one
        value where a list is expected becomes a list, repeated values go, numbers become their type)."""
        for f in fields(self):
            option, value = f.metadata["option"], getattr(self, f.name)
            if option.nested:
                setattr(self, f.name, check_per_arch(f.name, value, _OPTIONS))
            else:
                setattr(self, f.name, check_field(f.name, option, value, field_default(f)))
        if self.trials and self.search == "grid":
            raise UsageError("--trials needs --search random or tpe (a grid runs every combination)")
        if self.search != "grid" and not self.trials:
            raise UsageError(f"--search {self.search} needs --trials N")
        if self.pruner != "none" and self.search != "tpe":
            raise UsageError(f"--pruner {self.pruner} needs --search tpe")
        if self.pruner != "none" and self.executor == "ray":
            raise UsageError(f"--pruner {self.pruner} is for the local executor: with --executor ray, --scheduler asha")
        if not self.track and (self.tracking_uri or self.experiment != default("experiment")):
            given = "tracking-uri" if self.tracking_uri else "experiment"
            raise UsageError(f"--{given} is for --track mlflow")
        if self.executor == "local":
            given = [name for name, default in RAY_ONLY.items() if getattr(self, name) != default]
            if given:
                raise UsageError(f"--{flag(given[0])} is for --executor ray; the local executor would ignore it")


def option_of(name: str) -> Option:
    return _OPTIONS[name]


def option_names(stage: str | None = None, group: str | None = None) -> list[str]:
    """The fields of ``stage`` (and of its ``group``), in declaration order."""
    return [
        name
        for name, option in _OPTIONS.items()
        if (stage is None or option.stage == stage) and (group is None or option.group == group)
    ]


def defaults() -> dict:
    return {f.name: field_default(f) for f in fields(RunConfig)}


def default(name: str):
    """The default of field ``name``, as a stage's settings dataclass holds it (lists as tuples)."""
    return _frozen(defaults()[name])


_OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in fields(RunConfig)}
# What the declarations say of the fields (each a property of its Option, never a list kept by hand):
AXES = tuple(name for name, o in _OPTIONS.items() if o.axis)  # the grid's axes, in their nesting order
RAY_ONLY = {name: defaults()[name] for name, o in _OPTIONS.items() if o.ray_only}  # the local executor refuses others
MACHINE_BOUND = tuple(name for name, o in _OPTIONS.items() if o.machine_bound)  # recorded values clipped here
PLUGIN_DEFAULTS = tuple(name for name, o in _OPTIONS.items() if o.plugin_default)  # what register(defaults=) may set
DATA_OPTIONS = tuple(name for name, o in _OPTIONS.items() if o.loads_data)  # what the dataset's loader is given
# Keys of a --config file that name a field differently (kept from earlier releases).
ALIASES = {"plugins": "plugin", "architectures": "arch"}


def stage_settings(group: str):
    """Make a deploy stage's settings class (ExportSettings, BenchSettings, QuantizeSettings): a frozen dataclass
    whose fields must be the options of ``group``, each with its declared default; a class that lacks an option of
    its group, or has a field that is none, is refused as it is defined, so that a new option can never be accepted
    by the CLI and recorded, then ignored by its stage."""

    def make(cls):
        declared = option_names(DEPLOY, group)
        own = list(getattr(cls, "__annotations__", {}))
        missing, extra = [n for n in declared if n not in own], [n for n in own if n not in declared]
        if missing or extra:
            wrong = [f"it lacks {n}" for n in missing] + [f"{n} is not one" for n in extra]
            raise TypeError(f"{cls.__name__} must have the {group} options of bench.options: {'; '.join(wrong)}")
        for name in declared:
            setattr(cls, name, default(name))
        return dataclass(frozen=True)(cls)

    return make


def settings(cls, config: RunConfig):
    """A stage's settings dataclass ``cls`` (stage_settings) filled from the config fields of the same names (lists
    as tuples)."""
    return cls(**{f.name: _frozen(getattr(config, f.name)) for f in fields(cls)})


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value
