"""One trial's lifecycle, the same under every executor: seed, build the architecture, count its parameters
and FLOPs, train it (continuing a saved state), keep its best checkpoint. Executors decide where it runs and
how its results reach the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.data.splits import Dataset, Normalizer, Split, Splits
from bench.models.stats import count_flops, count_parameters
from bench.sweep.plan import TrialSpec
from bench.train.loop import EpochStats, TrialResult, train_trial

CHECKPOINT_FILE = "best.pt"  # the best epoch's weights, kept
STATE_FILE = "state.pt"  # an unfinished trial's training state after its last finished epoch (training.save_state)


DEVICE_SHARE = 0.25  # of an accelerator's memory: a split that takes more stays on the host, moved batch by batch


def _to(split: Split, device: torch.device) -> Split:
    """The split for training on ``device``: its pixels moved there once when they fit in a share of its memory,
    else left where they are (in memory, or a memory map of the cache) and moved a batch at a time."""
    if device.type == "cuda" and split.nbytes > DEVICE_SHARE * torch.cuda.get_device_properties(device).total_memory:
        return Split(split.source, split.labels.to(device), split.index)
    return split.to(device)


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


@dataclass
class TrialRun:
    """What executing a trial gives; ``params`` and ``flops`` are known as soon as the model is built, so a
    trial that fails in training still reports them (``result`` is then None)."""

    params: int | None = None
    flops: int | None = None
    result: TrialResult | None = None


def build_initial(spec: TrialSpec, data: Dataset, loaded: list | None = None):
    """``spec``'s model as its first epoch starts: built (seeded by the caller), its --weights loaded and its
    --freeze applied; ``loaded`` is given what was loaded (bench.train.weights.Loaded)."""
    from bench.train import weights as transfer

    hp = spec.hparams
    model = spec.architecture.build(data.input_shape, data.num_classes, spec.variant)
    if hp.weights:
        result = transfer.load_into(model, hp.weights, data.classes)
        if loaded is not None:
            loaded.append(result)
    if transfer.freeze(model, hp.freeze, data.num_classes) == 0:
        from bench.core.errors import UsageError

        raise UsageError(f"Invalid value for '--freeze': {hp.freeze!r} leaves nothing to train")
    return model


def resolve_weights(config, store_path):
    """--weights (the run's, and any architecture's own) as the plan records them: PATH#sha256=HEX (recorded ones are
    checked against their file)."""
    from dataclasses import replace

    from bench.train.weights import resolve

    per_arch = {
        arch: {**own, "weights": resolve(own["weights"], store_path)} if own.get("weights") else own
        for arch, own in config.per_arch.items()
    }
    weights = resolve(config.weights, store_path) if config.weights else None
    return replace(config, weights=weights, per_arch=per_arch) if weights or per_arch != config.per_arch else config


def starting_points(specs: list[TrialSpec], data: Dataset) -> list[str]:
    """Each architecture's models built as their trials will start (--weights, --freeze), before anything is
    recorded: a file that does not fit is refused here; the notes say what was loaded, skipped, re-initialized."""
    notes, seen = [], set()
    for spec in specs:
        hp = spec.hparams
        key = (spec.architecture.name, repr(spec.variant), hp.weights, hp.freeze)
        if (not hp.weights and hp.freeze == "none") or key in seen:
            continue
        seen.add(key)
        loaded: list = []
        build_initial(spec, data, loaded)
        if loaded and (line := f"{spec.architecture.name}: {loaded[0].line()}") not in notes:
            notes.append(line)
    return notes


def execute_trial(
    spec: TrialSpec,
    data: Dataset,
    splits: Splits,
    normalize: Normalizer,
    device: torch.device,
    folder: Path,
    *,
    meta: dict,
    run: TrialRun | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    prune: Callable[[EpochStats], str | None] | None = None,
    state_every: float | None = None,
) -> TrialRun:
    """Train ``spec`` in ``folder``: its best checkpoint goes to ``folder/best.pt`` and its state after every
    epoch to ``folder/state.pt``, which, when already there for the same trial, is continued; ``prune`` may stop it
    after an epoch (bench.train.loop.train_trial). ``run`` (filled
    in as the trial goes) lets a caller that catches an exception still know what was measured."""
    run = run if run is not None else TrialRun()
    hp = spec.hparams
    torch.manual_seed(hp.seed)  # the same initial weights for every trial of a seed
    model = build_initial(spec, data).to(device)
    run.params = count_parameters(model)
    run.flops = count_flops(model, data.input_shape)
    run.result = train_trial(
        model,
        splits,
        normalize,
        hp,
        folder / CHECKPOINT_FILE,
        data.num_classes,
        on_epoch=on_epoch,
        # the classes: a run starting from this checkpoint keeps its logits layer only for the same classes
        checkpoint_meta={**meta, "trial": spec.idx, "architecture": spec.architecture.name, "classes": data.classes},
        state_path=folder / STATE_FILE,
        prune=prune,
        state_every=state_every,
    )
    return run
