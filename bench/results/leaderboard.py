"""Ranking the trials of a run (the order of every table and of `bench report --json`), and grouping the trials that
differ only by seed into configurations."""

from __future__ import annotations

import json
import statistics

from bench.core.status import FINISHED
from bench.results.diagnosis import learned


def rank(trials: list[dict]) -> list[dict]:
    """Finished trials (completed, early-stopped, pruned) by validation accuracy (ties: lower validation loss,
    then trial order), then the
    others (diverged, failed, interrupted, running) in trial order. Each trial gets ``rank`` (1-based,
    completed trials only), ``learned`` (False: its validation accuracy is within noise of chance,
    bench.results.diagnosis.learned) and ``winner`` (best completed trial of its architecture that learned)."""
    done = [t for t in trials if t["status"] in FINISHED and t.get("val_acc") is not None]
    rest = [t for t in trials if t not in done]
    done.sort(key=lambda t: (-t["val_acc"], t["val_loss"] if t["val_loss"] is not None else float("inf"), t["idx"]))
    seen: set[str] = set()
    out = []
    for i, t in enumerate(done, 1):
        ok = learned(t)
        winner = ok and t["architecture"] not in seen
        if ok:
            seen.add(t["architecture"])
        out.append({**t, "rank": i, "winner": winner, "learned": ok})
    out += [{**t, "rank": None, "winner": False, "learned": None} for t in sorted(rest, key=lambda t: t["idx"])]
    return out


def configuration_key(trial: dict) -> str:
    """What a trial trains, but for its seed: trials with the same key are one configuration, repeated."""
    hparams = {k: v for k, v in trial["hparams"].items() if k != "seed"}
    return json.dumps([trial["architecture"], trial["variant"], hparams], sort_keys=True)


def mean_std(values: list[float | None]) -> dict:
    """Mean, sample standard deviation (None for one value) and n of the values that are there."""
    xs = [x for x in values if x is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None, "n": len(xs)}


def configurations(ranked: list[dict]) -> list[dict]:
    """The trials of ``ranked`` (rank's output) grouped into configurations that differ only by seed, best mean
    validation accuracy first: each with its trials, seeds, and the mean, standard deviation and n of its finished
    trials' validation and test accuracy and training time."""
    groups: dict[str, list[dict]] = {}
    for t in ranked:
        groups.setdefault(configuration_key(t), []).append(t)
    out = []
    for trials in groups.values():
        trials = sorted(trials, key=lambda t: t["idx"])
        done = [t for t in trials if t["rank"] is not None]
        first = trials[0]
        out.append(
            {
                "trials": [t["idx"] for t in trials],
                "seeds": [t["hparams"].get("seed") for t in trials],
                "architecture": first["architecture"],
                "variant": first["variant"],
                "hparams": {k: v for k, v in first["hparams"].items() if k != "seed"},
                "val_acc": mean_std([t["val_acc"] for t in done]),
                "test_acc": mean_std([t["test_acc"] for t in done]),
                "duration_s": mean_std([t["duration_s"] for t in done]),
                "noisy_epochs": sum(t.get("noisy_epochs") or 0 for t in trials),
                "winner": any(t["winner"] for t in trials),
            }
        )
    out.sort(key=lambda c: (c["val_acc"]["mean"] is None, -(c["val_acc"]["mean"] or 0), c["trials"][0]))
    for i, c in enumerate(out, 1):
        c["rank"] = i if c["val_acc"]["mean"] is not None else None
    return out


def repeated(configs: list[dict]) -> bool:
    """Whether some configuration was trained with several seeds (then tables show configurations)."""
    return any(len(c["trials"]) > 1 for c in configs)
