"""Sweep planning: architectures x variants x hyperparameter grid -> an ordered list of trials, all of it
(grid search) or a seeded sample without repeats (random search)."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, fields, replace

import torch

from bench.core.errors import BenchError, UsageError, WhereError, unknown
from bench.core.formats import trial_label
from bench.core.status import Precision
from bench.data.splits import Dataset
from bench.models.registry import Architecture, Registry, where_text
from bench.options.choices import SEARCHES
from bench.options.config import AXES, RunConfig
from bench.options.hparams import HParams
from bench.options.option import invalid
from bench.train import batchnorm
from bench.train.optim import steps_per_epoch
from bench.train.precision import resolve_speed

HPARAM_DEFAULTS = {f.name: f.default for f in fields(HParams)}


@dataclass(frozen=True)
class TrialSpec:
    idx: int  # 1-based position in the run
    architecture: Architecture
    variant: dict
    hparams: HParams
    trial_id: int | None = None  # the store's row, once planned

    def row(self) -> dict:
        return {
            "idx": self.idx,
            "architecture": self.architecture.name,
            "plugin": self.architecture.plugin,
            "variant": self.variant,
            "hparams": self.hparams.as_dict(),
        }


class _Space:
    """One architecture's trials, addressable by index without listing them (a mixed-radix number:
    variant, then one digit per hyperparameter axis)."""

    def __init__(self, arch: Architecture, variants: list[dict], grid: dict[str, list]):
        self.arch, self.variants, self.grid = arch, variants, grid
        self.combos = math.prod(len(v) for v in grid.values())

    def __len__(self) -> int:
        return len(self.variants) * self.combos

    def at(self, i: int) -> tuple[dict, dict]:
        variant, rest = self.variants[i // self.combos], i % self.combos
        values = {}
        for axis in reversed(list(self.grid)):
            rest, digit = divmod(rest, len(self.grid[axis]))
            values[axis] = self.grid[axis][digit]
        return variant, {axis: values[axis] for axis in self.grid}


def _variants_where(
    arch: Architecture, selected: list[Architecture], variants: str, where: dict | None, notes: list[str] | None
) -> list:
    """``arch``'s variants that ``where`` keeps. Among several architectures, a filter names parameters and values
    of some of them (`--where model=resnet18,mobilenet_v2` across a zoo, `--where depth=8` across resnet and
    fast_cnn): it applies to the architectures that have the parameter, one of which without any value wanted is
    left out, and ``notes`` say which it did not apply to and which it left out; a parameter or value no selected
    architecture has is still an error."""
    try:
        return arch.variants(variants, where)
    except UsageError:
        if len(selected) < 2:
            raise
    for key, wanted in where.items():
        for value in wanted:  # known to some architecture, else an error naming what each one has
            having = [a for a in selected if key in a.parameters]
            if not any(where_text(value) in {where_text(v) for v in a.values(key)} for a in having):
                if not having:
                    selected[0].variants(variants, {key: [value]})  # the error naming the parameters
                listed = "; ".join(f"{a.name}: {_nearest(value, a.values(key))}" for a in having)
                raise WhereError(f"no selected architecture has {key}={value} ({listed})")
    applies = {k: vs for k, vs in where.items() if k in arch.parameters}
    keep = {k: [v for v in vs if where_text(v) in {where_text(x) for x in arch.values(k)}] for k, vs in applies.items()}
    said = ",".join(f"{k}={'|'.join(map(str, vs))}" for k, vs in where.items())
    if notes is not None and len(applies) < len(where):
        lacking = ", ".join(k for k in where if k not in applies)
        notes.append(f"--where {said} does not apply to {arch.name}, which has no parameter {lacking}")
    if not all(keep.values()):
        if notes is not None:
            notes.append(f"--where {said} leaves out {arch.name}: it has none of those values")
        return []
    return arch.variants(variants, keep or None)


def _nearest(value: str, values: list) -> str:
    """An architecture's values of a parameter, as an error lists them: all of a few, the nearest of many."""
    written = [where_text(v) for v in values]
    if len(written) <= 20:
        return ", ".join(written)
    from bench.core.errors import closest

    return f"nearest {', '.join(closest(where_text(value), written)[:5])} of {len(written)}"


def plan(
    architectures: list[Architecture],
    axes: dict[str, list | None],
    variants: str = "default",
    where: dict[str, list[str]] | None = None,
    search: str = "grid",
    trials: int | None = None,
    search_seed: int = 0,
    fixed: dict | None = None,
    notes: list[str] | None = None,
    per_arch: dict[str, dict] | None = None,
) -> list[TrialSpec]:
    """Every variant of every architecture under every combination of the swept hyperparameters (grid, and the
    space TPE chooses from), or ``trials`` of them drawn without repeats by ``search_seed`` (random). An axis left
    as None takes the architecture's own default (from its plugin), then cnnbench's; ``fixed`` holds the other
    hyperparameters (RunConfig.fixed()), the same for every trial but for a precision its plugin chooses. A plugin's
    default that does not fit the user's options is adapted, and ``notes`` told why (fit_defaults). ``per_arch``
    (RunConfig's) replaces any of these for one architecture's trials."""
    if search not in SEARCHES:
        raise invalid("search", search, f"one of {', '.join(SEARCHES)}")
    per_arch = per_arch or {}
    names = [a.name for a in architectures]
    for name in per_arch:
        if name not in names:
            raise UsageError(f"--per-arch {name}: this run trains no architecture of that name ({', '.join(names)})")
    spaces, own_axes, own_fixed = [], {}, {}
    for arch in architectures:
        own = per_arch.get(arch.name, {})
        own_axes[arch.name] = {**axes, **{k: v if isinstance(v, list) else [v] for k, v in own.items() if k in AXES}}
        given = {**(fixed or {}), **{k: v for k, v in own.items() if k not in AXES}}
        # an option left unset: its plugin's default (lookahead), else the trial's own (HParams)
        given = {k: arch.defaults.get(k) if v is None else v for k, v in given.items()}
        own_fixed[arch.name] = {k: v for k, v in given.items() if v is not None}
        grid = {}
        for axis in AXES:
            values = own_axes[arch.name].get(axis)
            grid[axis] = list(values) if values else [arch.defaults.get(axis, HPARAM_DEFAULTS[axis])]
        spaces.append(_Space(arch, _variants_where(arch, architectures, variants, where, notes), grid))
    total = sum(len(s) for s in spaces)
    if search in ("grid", "tpe"):  # tpe: the space it chooses from (bench.sweep.search), one trial at a time
        picks = range(total)
    else:
        if not trials:
            raise UsageError("--search random needs --trials N")
        picks = random.Random(search_seed).sample(range(total), min(trials, total))
    if search != "grid" and trials and trials > total and notes is not None:
        notes.append(f"--trials {trials}: the selection has {total} combinations, each tried once")
    specs = []
    offsets = list(itertools.accumulate(len(s) for s in spaces))
    for i in picks:
        k = next(n for n, end in enumerate(offsets) if i < end)
        space = spaces[k]
        variant, values = space.at(i - (offsets[k - 1] if k else 0))
        name = space.arch.name
        hp = HParams(**fit_defaults(space.arch, values, own_axes[name], notes), **own_fixed[name])
        specs.append(TrialSpec(len(specs) + 1, space.arch, variant, hp))
    return specs


def fit_defaults(arch: Architecture, values: dict, axes: dict, notes: list[str] | None = None) -> dict:
    """``values`` (one trial's axes) with a default of ``arch``'s plugin adapted where it conflicts with what the
    user chose, saying so in ``notes``; a value the user gave is never changed (a conflict is then their error).
    Today: a warm-up from the plugin as long as the user's --epochs or longer keeps its share of training."""
    warmup, epochs = values.get("warmup_epochs"), values.get("epochs")
    if axes.get("warmup_epochs") is None and warmup is not None and epochs is not None and warmup >= epochs:
        recipe = arch.defaults.get("epochs") or epochs
        fitted = round(warmup * epochs / recipe, 3) if warmup < recipe else round(epochs / 4, 3)
        values = {**values, "warmup_epochs": fitted}
        note = (
            f"{arch.name}'s default warm-up of {warmup:g} epochs (of its {recipe:g}) is {fitted:g} with --epochs "
            f"{epochs:g}, the same share of training; --warmup-epochs sets it"
        )
        if notes is not None and note not in notes:
            notes.append(note)
    return values


def spec_from_row(row: dict, registry: Registry) -> TrialSpec:
    """The trial a stored row describes, with its architecture from the installed plugins."""
    if row["architecture"] not in registry:
        raise BenchError(
            f"trial {trial_label(row['idx'])} needs architecture '{row['architecture']}' from plugin "
            f"'{row['plugin']}', which is not installed"
        )
    arch = registry.get(row["architecture"])
    return TrialSpec(row["idx"], arch, arch.normalize(row["variant"]), HParams.from_dict(row["hparams"]), row["id"])


def architectures_of(config: RunConfig) -> list[Architecture]:
    """The architectures ``config`` selects: every one of its plugins, then every match of its patterns."""
    from bench.plugins.manager import get_plugins

    if not config.plugin and not config.arch:
        raise UsageError("choose what to train: --plugin NAME or --arch PATTERN (see `bench list`)")
    plugins = get_plugins()
    archs: list[Architecture] = []
    for name in config.plugin:
        info = plugins.plugin(name)
        if info.error:
            raise BenchError(f"plugin '{name}' is broken: {info.error}")
        archs += [a for a in plugins.registry.by_plugin(name) if a not in archs]
    for pattern in config.arch:
        found = plugins.registry.list(pattern)
        if not found:
            raise unknown("architecture", pattern, plugins.registry.names())
        archs += [a for a in found if a not in archs]
    if not archs:
        raise UsageError(f"plugin {', '.join(config.plugin)} registers no architecture")
    return archs


def plan_run(config: RunConfig, notes: list[str] | None = None) -> list[TrialSpec]:
    """The trials ``config`` describes, in run order; ``notes``: what was adapted (fit_defaults)."""
    from bench.plugins.dataset_loading import dataset_info

    archs = architectures_of(config)
    dataset_info(config.dataset)  # an unknown dataset is reported before anything else
    where = {k: [where_text(v) for v in vs] for k, vs in config.where.items()}
    return plan(
        archs,
        config.axes(),
        variants=config.variants,
        where=where,
        search=config.search,
        trials=config.trials,
        search_seed=(config.seed or [0])[0],
        fixed=config.fixed(),
        notes=notes,
        per_arch=config.per_arch,
    )


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
            why = f"is larger than the {sizes[key]} training images of '{data.name}' (with --val-ratio {hp.val_ratio})"
            raise invalid("batch_size", hp.batch_size, why=why)


RESOLVED = ("precision", "channels_last", "bn_recalibrate")  # the hyperparameters resolve_plan may change


def resolve_plan(specs: list[TrialSpec], data: Dataset, device: torch.device) -> list[TrialSpec]:
    """Replace 'auto' precision, layout and batch-norm recalibration (bench.train.batchnorm.wanted) by their values
    on ``device`` before the plan is recorded: the one place they are resolved, so every trial says what it trains in
    from the start and a resumed run trains the same way.
    'auto' is the architecture's own precision where its plugin declares one (measured by its author), else what
    bench.train.precision measures here. A model that cannot be built here gets fp32 and the standard layout: its
    trial fails when it builds it."""
    chosen: dict[tuple, dict] = {}
    sizes: dict[tuple, int] = {}
    out = []
    for spec in specs:
        hp = spec.hparams
        if hp.precision == "auto" and "precision" in spec.architecture.defaults:
            hp = replace(hp, precision=spec.architecture.defaults["precision"])
        if hp.precision == "auto" or hp.channels_last is None or hp.bn_recalibrate == "auto":
            key = (spec.architecture.name, repr(spec.variant), hp.precision, hp.channels_last)
            if key not in chosen:
                try:
                    model = spec.architecture.build(data.input_shape, data.num_classes, spec.variant).to(device)
                    resolved = resolve_speed(hp, model, data.input_shape, device)
                    chosen[key] = {"precision": resolved.precision, "channels_last": resolved.channels_last}
                    chosen[key]["window"] = batchnorm.window(model)
                except Exception:  # recorded when the trial itself builds the model
                    chosen[key] = {
                        "precision": Precision.FP32 if hp.precision == "auto" else hp.precision,
                        "channels_last": bool(hp.channels_last),
                        "window": 0.0,
                    }
            changes = {k: v for k, v in chosen[key].items() if k != "window"}
            if hp.bn_recalibrate == "auto":
                split = (hp.val_ratio, hp.seed)
                if split not in sizes:
                    sizes[split] = len(data.split(*split).train)
                per_epoch = steps_per_epoch(sizes[split], hp.batch_size)
                recalibrate = batchnorm.wanted("auto", chosen[key]["window"], per_epoch)
                changes["bn_recalibrate"] = "on" if recalibrate else "off"
            hp = replace(hp, **changes)
        out.append(replace(spec, hparams=hp))
    return out
