"""The training state of an unfinished trial, written after every epoch so that a stopped trial continues from its
last finished epoch with the same figures as one never stopped."""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from bench.core.errors import UsageError
from bench.core.files import atomic_write
from bench.options.hparams import HParams

STATE_FORMAT = 1


def _rng_state(generators: dict[str, torch.Generator], device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in generators.items()}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng(state: dict, generators: dict[str, torch.Generator], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    for k, g in generators.items():
        g.set_state(state[k])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_state(
    path: Path,
    hp: HParams,
    meta: dict | None,
    model: nn.Module,
    optimizer,
    scheduler,
    generators,
    device: torch.device,
    history: list,
    best: dict,
    lookahead: dict | None = None,
    partial: dict | None = None,
) -> None:
    """Everything needed to continue the trial after its last finished epoch, written atomically: ``history`` (its
    EpochStats), ``best`` (the epoch kept so far, ``{"epoch": n, "state": weights}``) and ``lookahead`` (its
    average), beside the model, optimizer, schedule and random generators; ``partial``: where within the next epoch
    they are (its number, the step to continue from, its shuffled order, learning rate, sums and seconds so far)."""
    state = {
        "format": STATE_FORMAT,
        "hparams": hp.as_dict(),
        "meta": dict(meta or {}),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(generators, device),
        "history": [asdict(e) for e in history],
        "best_epoch": best["epoch"],
        "best_state": best["state"],
        "lookahead": lookahead,
        "partial": partial,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_state(path: Path, hp: HParams, meta: dict | None) -> dict | None:
    """The saved state at ``path`` if it continues this very trial (same hyperparameters and identity);
    None when there is none, or it is unreadable or another trial's (the trial then starts afresh)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception:  # a damaged state only costs the epochs it held
        return None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        return None
    try:  # a state saved before a hyperparameter existed has that one at its default
        same = HParams.from_dict(state.get("hparams") or {}) == hp and state.get("meta") == dict(meta or {})
    except (TypeError, UsageError):
        return None
    if not same or (hp.lookahead and not isinstance(state.get("lookahead"), dict)):
        return None
    return state
