"""Checkpoint files: written atomically, identified by a SHA-256 that is checked on load, and read
with ``weights_only=True`` so that a file cannot run code."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from bench.core.errors import BenchError
from bench.core.files import atomic_write


def save(path: str | Path, state_dict: dict, meta: dict | None = None) -> str:
    """Save ``state_dict`` (and JSON-like ``meta``) to ``path``; return the file's SHA-256."""
    buf = io.BytesIO()
    torch.save({"state_dict": state_dict, "meta": meta or {}}, buf)
    data = buf.getvalue()
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def load(path: str | Path, sha256: str | None = None) -> tuple[dict, dict]:
    """Read a checkpoint written by ``save``; with ``sha256``, refuse a file that is not that one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BenchError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise BenchError(f"checkpoint {path} does not match its recorded SHA-256: damaged or replaced")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refused, truncated zip, not a checkpoint at all
        raise BenchError(f"checkpoint {path} is not a readable cnnbench checkpoint: {exc.__class__.__name__}") from exc
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise BenchError(f"checkpoint {path} is not a cnnbench checkpoint")
    return obj["state_dict"], obj.get("meta", {})
