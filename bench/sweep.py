"""Sweep planning: architectures x variants x hyperparameter grid -> an ordered list of trials, all of it
(grid search) or a seeded sample without repeats (random search)."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, fields

from bench.architectures import Architecture, Registry
from bench.errors import BenchError, UsageError
from bench.training import HParams

# Hyperparameters that can be swept (a list of values each). The order is the nesting of the grid.
AXES = ("optimizer", "lr", "batch_size", "epochs", "momentum", "weight_decay", "val_ratio", "seed", "schedule",
        "warmup_epochs", "label_smoothing", "nesterov")  # fmt: skip
HPARAM_DEFAULTS = {f.name: f.default for f in fields(HParams)}
SEARCHES = ("grid", "random")


@dataclass(frozen=True)
class TrialSpec:
    idx: int  # 1-based position in the run
    architecture: Architecture
    variant: dict
    hparams: HParams
    trial_id: int | None = None  # the store's row, once planned

    def row(self) -> dict:
        return {"idx": self.idx, "architecture": self.architecture.name, "plugin": self.architecture.plugin,
                "variant": self.variant, "hparams": self.hparams.as_dict()}  # fmt: skip


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


def plan(
    architectures: list[Architecture],
    axes: dict[str, list | None],
    variants: str = "default",
    where: dict[str, list[str]] | None = None,
    select: str = "val_loss",
    patience: int | None = None,
    search: str = "grid",
    trials: int | None = None,
    search_seed: int = 0,
    fixed: dict | None = None,
) -> list[TrialSpec]:
    """Every variant of every architecture under every combination of the swept hyperparameters (grid), or
    ``trials`` of them drawn without repeats by ``search_seed`` (random). An axis left as None takes the
    architecture's own default (from its plugin), then cnnbench's."""
    if search not in SEARCHES:
        raise UsageError(f"--search must be one of {', '.join(SEARCHES)}, not '{search}'")
    spaces = []
    for arch in architectures:
        grid = {}
        for axis in AXES:
            values = axes.get(axis)
            grid[axis] = list(values) if values else [arch.defaults.get(axis, HPARAM_DEFAULTS[axis])]
        spaces.append(_Space(arch, arch.variants(variants, where), grid))
    total = sum(len(s) for s in spaces)
    if search == "grid":
        picks = range(total)
    else:
        if not trials:
            raise UsageError("--search random needs --trials N")
        picks = random.Random(search_seed).sample(range(total), min(trials, total))
    specs = []
    offsets = list(itertools.accumulate(len(s) for s in spaces))
    for i in picks:
        k = next(n for n, end in enumerate(offsets) if i < end)
        space = spaces[k]
        variant, values = space.at(i - (offsets[k - 1] if k else 0))
        extra = dict(fixed or {})
        if extra.get("precision", "auto") == "auto" and "precision" in space.arch.defaults:
            extra["precision"] = space.arch.defaults["precision"]  # the plugin's measured choice
        hp = HParams(**values, select=select, patience=patience, **extra)
        specs.append(TrialSpec(len(specs) + 1, space.arch, variant, hp))
    return specs


def spec_from_row(row: dict, registry: Registry) -> TrialSpec:
    """The trial a stored row describes, with its architecture from the installed plugins."""
    if row["architecture"] not in registry:
        raise BenchError(
            f"trial t{row['idx']:03d} needs architecture '{row['architecture']}' from plugin '{row['plugin']}', "
            "which is not installed"
        )
    arch = registry.get(row["architecture"])
    return TrialSpec(row["idx"], arch, arch.normalize(row["variant"]), HParams.from_dict(row["hparams"]), row["id"])
