"""How an option is declared and checked: `Option` (its type, choices, range, help and stage), the one check of a
value (`Option.value`, `check_field`) and the one spelling of a bad value (`invalid`), whoever finds it."""

from __future__ import annotations

import math
import os
import re
from dataclasses import MISSING, dataclass, field
from typing import Any

from bench.core.errors import UsageError
from bench.options.choices import MAX_THREADS


@dataclass(frozen=True)
class Option:
    """How one RunConfig field is given, checked and documented."""

    help: str
    stage: str
    kind: type = str  # the type of one value: str, int, float, bool, or dict (where)
    axis: bool = False  # train stage: a list of values, each a point of the grid
    many: bool = False  # a list of values, comma-separated on the command line
    repeat: bool = False  # a list of values given by repeating the option (--plugin a --plugin b)
    unique: bool = True  # a list drops repeated values (not per-channel ones such as --mean)
    choices: tuple = ()
    subset: bool = False  # text: a comma-separated subset of ``choices`` (--augment flip,crop)
    empty: str | None = None  # a list: this word alone means none (--quantize none)
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False
    pattern: str | None = None  # text matching this regular expression, described by ``pattern_text``
    pattern_text: str = ""
    short: str | None = None  # a one-letter alias (-p)
    trial_default: Any = None  # train: what a trial gets when neither the option (default None) nor its plugin says
    group: str | None = None  # deploy: winners, export, benchmark or quantize
    metavar: str | None = None
    docs: str = ""  # said in docs/run-options.md beside the help
    nested: bool = False  # kind dict: a table per architecture of train-stage options (per_arch)
    plugin_default: bool = False  # train: an architecture's plugin may set its default (register(defaults=...))
    ray_only: bool = False  # execute: the Ray executor's own; the local executor refuses a value but the default
    machine_bound: bool = False  # at most this machine's CPU count (high); a recorded value is clipped to it
    loads_data: bool = False  # passed to the dataset's loader (bench.plugins.dataset_loading.load_dataset)

    def __post_init__(self):
        if self.machine_bound:
            object.__setattr__(self, "high", MAX_THREADS)

    @property
    def is_list(self) -> bool:
        return (self.axis and self.kind is not bool) or self.many or self.repeat

    def requirement(self) -> str:
        """What a valid value is, in words: 'an integer >= 1', 'one of sgd, adam', 'a number in (0, 1)'."""
        if self.choices:
            return ("any of " if self.subset else "one of ") + ", ".join(self.choices)
        if self.pattern:
            return self.pattern_text
        if self.kind is bool:
            return "true or false"
        if self.nested:
            return "ARCH:OPTION=V[,V...] (a --config file: a table per architecture of training options)"
        if self.kind is dict:
            return "a table of PARAM = [values]"
        if self.kind is str:
            return "text"
        what = "an integer" if self.kind is int else "a number"
        low = None if self.low is None else f"{self.low:g}"
        high = None if self.high is None else f"{self.high:g}"
        if low is not None and high is not None:
            if self.kind is int:
                return f"{what} from {low} to {high}"
            return f"{what} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if low is not None:
            return f"{what} {'>' if self.low_open else '>='} {low}"
        if high is not None:
            return f"{what} {'<' if self.high_open else '<='} {high}"
        return "a finite number" if self.kind is float else what

    def value(self, name: str, v):
        """One value of the option, checked (and, for numbers written as text, converted): the value, or a
        UsageError in the one spelling every caller shares."""
        if isinstance(v, str) and self.kind in (int, float):
            v = _number(v, self.kind)
        ok = True
        if self.kind is bool:
            ok = isinstance(v, bool)
        elif self.kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif self.kind is float:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            v = float(v) if ok else v
        elif self.kind is str:
            v = os.fspath(v) if isinstance(v, os.PathLike) else v
            ok = isinstance(v, str)
        if ok and self.kind in (int, float):
            ok = (self.low is None or (v > self.low if self.low_open else v >= self.low)) and (
                self.high is None or (v < self.high if self.high_open else v <= self.high)
            )
        if ok and self.subset:
            names = [s.strip() for s in v.split(",") if s.strip()]
            bad = [n for n in names if n not in self.choices]
            if bad:
                raise invalid(name, bad[0], self.requirement())
            return ",".join(dict.fromkeys(names))
        if ok and self.choices:
            ok = v in self.choices
        if ok and self.pattern:
            ok = re.fullmatch(self.pattern, v) is not None
        if not ok:
            raise invalid(name, v, self.requirement())
        return v


def invalid(name: str, value, requirement: str | None = None, *, why: str | None = None) -> UsageError:
    """The one spelling of a bad value, whoever finds it: `Invalid value for '--lr': -1.0 (a number > 0)`, or with
    ``why`` instead of the requirement, `Invalid value for '--lr': '1e-3,,x' has an empty item`."""
    return UsageError(f"Invalid value for '--{flag(name)}': {value!r} " + (why or f"({requirement})"))


def flag(name: str) -> str:
    """The command-line spelling of a field: top_k -> top-k."""
    return name.replace("_", "-")


def _number(text: str, kind: type):
    try:
        return kind(text.strip())
    except ValueError:
        return text  # refused by the type check, as text


def declare(stage: str, help: str, default=None, *, factory=None, **spec):
    """A RunConfig field of ``stage`` with its Option (``spec``) as metadata: every stage module declares its options
    with it."""
    meta = {"option": Option(help=help, stage=stage, **spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


POSITIVE = {"low": 0, "low_open": True}
COUNT = {"kind": int, "low": 1}


def field_default(f):
    """A dataclass field's default (its factory's value for lists)."""
    return f.default_factory() if f.default is MISSING else f.default


def check_field(name: str, option: Option, value, default):
    """``value`` of option ``name`` checked and normalized (one value where a list is expected becomes a list, repeated
    values go, numbers become their type); None stays None where the default is None."""
    if value is None and default is None:
        return None
    if option.kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise invalid(name, value, option.requirement())
        return {k: list(v) if isinstance(v, list | tuple) else [v] for k, v in value.items()}
    if not option.is_list:
        return option.value(name, value)
    if isinstance(value, tuple):
        value = list(value)
    elif not isinstance(value, list):
        value = [value]  # one value given where a list is expected
    if option.empty is not None and option.empty in value:
        if value != [option.empty]:
            raise invalid(name, ",".join(map(str, value)), f"{option.empty} alone, or {option.requirement()}")
        return []
    out = [option.value(name, v) for v in value]
    return list(dict.fromkeys(out)) if option.unique else out
