"""Sweep planning: architectures x variants x hyperparameter grid -> an ordered list of trials."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

from bench.architectures import Architecture
from bench.training import HParams

# Hyperparameters that can be swept (a list of values each). The order is the nesting of the grid.
AXES = ("optimizer", "lr", "batch_size", "epochs", "momentum", "weight_decay", "val_ratio", "seed")
HPARAM_DEFAULTS = {f.name: f.default for f in fields(HParams)}


@dataclass(frozen=True)
class TrialSpec:
    idx: int  # 1-based position in the run
    architecture: Architecture
    variant: dict
    hparams: HParams


def plan(
    architectures: list[Architecture],
    axes: dict[str, list | None],
    variants: str = "default",
    where: dict[str, list[str]] | None = None,
    select: str = "val_loss",
) -> list[TrialSpec]:
    """Every variant of every architecture under every combination of the swept hyperparameters.
    An axis left as None takes the architecture's own default (from its plugin), then cnnbench's."""
    specs: list[TrialSpec] = []
    for arch in architectures:
        grid = {}
        for axis in AXES:
            values = axes.get(axis)
            grid[axis] = list(values) if values else [arch.defaults.get(axis, HPARAM_DEFAULTS[axis])]
        for variant in arch.variants(variants, where):
            for combo in itertools.product(*grid.values()):
                hp = HParams(**dict(zip(grid, combo, strict=True)), select=select)
                specs.append(TrialSpec(len(specs) + 1, arch, variant, hp))
    return specs
