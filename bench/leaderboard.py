"""Ranking the trials of a run: the order of every table and of `bench report --json`."""

from __future__ import annotations

from bench.status import FINISHED  # pruned trials (stopped by ASHA) have no test figures: they rank by validation


def rank(trials: list[dict]) -> list[dict]:
    """Finished trials (completed, early-stopped, pruned) by validation accuracy (ties: lower validation loss,
    then trial order), then the
    others (diverged, failed, interrupted, running) in trial order. Each trial gets ``rank`` (1-based,
    completed trials only) and ``winner`` (best completed trial of its architecture)."""
    done = [t for t in trials if t["status"] in FINISHED and t.get("val_acc") is not None]
    rest = [t for t in trials if t not in done]
    done.sort(key=lambda t: (-t["val_acc"], t["val_loss"] if t["val_loss"] is not None else float("inf"), t["idx"]))
    seen: set[str] = set()
    out = []
    for i, t in enumerate(done, 1):
        winner = t["architecture"] not in seen
        seen.add(t["architecture"])
        out.append({**t, "rank": i, "winner": winner})
    out += [{**t, "rank": None, "winner": False} for t in sorted(rest, key=lambda t: t["idx"])]
    return out
