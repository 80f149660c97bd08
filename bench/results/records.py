"""The public records of trials, exports and latency measurements: what `--json` prints and what the Python
API returns. One definition, used by the CLI and by bench.run / bench.trials."""

from __future__ import annotations

from bench.core.status import MeasurementStatus
from bench.results.leaderboard import configuration_key, configurations, rank
from bench.results.significance import wilson
from bench.store import Store

TRIAL_FIELDS = (
    "architecture",
    "plugin",
    "variant",
    "hparams",
    "status",
    "note",
    "params",
    "epochs_run",
    "best_epoch",
    "train_acc",
    "val_acc",
    "test_acc",
    "train_loss",
    "val_loss",
    "test_loss",
    "split",
    "duration_s",
    "noisy_epochs",
)


class Records(list):
    """Trial records (dicts), as bench.trials returns them: a list, that also converts to a pandas DataFrame."""

    def to_pandas(self, history: bool = False):
        """One row per trial, its nested fields flattened (variant.kernel_size, hparams.lr, onnx.status...); with
        ``history``, one row per trial and epoch instead (the records must carry it: bench.trials(history=True)).
        Needs pandas (pip install pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:
            from bench.core.errors import BenchError

            raise BenchError("to_pandas needs pandas: pip install pandas") from exc
        if not history:
            flat = [{k: v for k, v in r.items() if k not in ("history", "latency", "variants")} for r in self]
            return pd.json_normalize(flat)
        if any("history" not in r for r in self):
            from bench.core.errors import UsageError

            raise UsageError("to_pandas(history=True) needs records with their history: bench.trials(history=True)")
        rows = [
            {"run": r["run"], "trial": r["trial"], "architecture": r["architecture"], **epoch}
            for r in self
            for epoch in r["history"]
        ]
        return pd.DataFrame(rows)


def run_records(store: Store, run_id: str, history: bool = False) -> Records:
    """Every trial of a run as ``--json`` shows it, in leaderboard order, each with its ``configuration``: the
    trials that differ from it only by seed, and the mean, standard deviation and n of their accuracies; with
    ``history``, its per-epoch history too (loss, accuracy, learning rate, seconds, noise) as the store has it."""
    ranked = rank(store.trials(run_id))
    configs = {configuration_key(t): c for c in configurations(ranked) for t in ranked if t["idx"] in c["trials"]}
    return Records(
        {
            **trial_record(store, run_id, t),
            "configuration": _summary(configs[configuration_key(t)]),
            **({"history": store.history(t["id"])} if history else {}),
        }
        for t in ranked
    )


def _summary(config: dict) -> dict:
    return {
        "rank": config["rank"],
        "trials": config["trials"],
        "seeds": config["seeds"],
        **{f"{k}_{stat}": config[k][stat] for k in ("val_acc", "test_acc") for stat in ("mean", "std", "n")},
    }


def trial_record(store: Store, run_id: str, trial: dict) -> dict:
    """A trial as ``--json`` shows it: ranking, hyperparameters, figures, checkpoint, ONNX export, latency."""
    ckpt = store.checkpoint_path(trial)
    return {
        "run": run_id,
        "trial": trial["idx"],
        "rank": trial.get("rank"),
        "winner": trial.get("winner"),
        "learned": trial.get("learned"),  # False: validation accuracy within noise of chance (no winner, no front)
        **{k: trial[k] for k in TRIAL_FIELDS},
        "test_acc_ci95": wilson(trial["test_acc"], (trial.get("split") or {}).get("test")),
        "checkpoint": str(ckpt.resolve()) if ckpt else None,
        "checkpoint_sha256": trial["checkpoint_sha256"],
        "onnx": export_record(store, store.export_of(trial["id"])),
        "variants": [variant_record(store, v) for v in store.variants_of(trial["id"])],
        "latency": [latency_record(r) for r in store.latency_of(trial["id"])],
        "serving": [serving_record(r) for r in store.serving_of(trial["id"])],
    }


def export_record(store: Store, exp: dict | None) -> dict | None:
    if exp is None:
        return None
    out = {k: v for k, v in exp.items() if k != "trial_id"}
    out["path"] = str(store.artifact_path(exp["path"]).resolve()) if exp["path"] else None
    return out


def variant_record(store: Store, row: dict) -> dict:
    out = {k: v for k, v in row.items() if k != "trial_id"}
    out["path"] = str(store.artifact_path(row["path"]).resolve()) if row["path"] else None
    return out


def latency_record(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("id", "trial_id", "samples")}


def serving_record(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "trial_id"}


def noise_warning(store: Store, trials: list[dict], run_id: str, epochs: bool = True, since: str = "") -> str | None:
    """One line naming the figures of ``trials`` that were measured while other processes wanted the CPU (their
    latency measurements from ``since`` on, and with ``epochs`` their epoch times), with what to do; None when none
    was."""
    latency = [
        r
        for t in trials
        for r in store.latency_of(t["id"])
        if r["status"] == MeasurementStatus.OK and r["measured_at"] >= since
    ]
    history = [e for t in trials for e in store.history(t["id"])] if epochs else []
    bad_latency = sum(bool(r["noisy"]) for r in latency)
    bad_epochs = sum(bool(e["noisy"]) for e in history)
    if not bad_latency and not bad_epochs:
        return None
    parts = [f"{bad_latency} of {len(latency)} latency figures"] if bad_latency else []
    parts += [f"{bad_epochs} of {len(history)} epoch times"] if bad_epochs else []
    remedies = [f"re-measure the latencies with `bench benchmark {run_id} --repeat 3`"] if bad_latency else []
    remedies += ["time training again with fewer threads (--threads 1)"] if bad_epochs else []
    remedies += ["or on a quiet machine"]
    return (
        f"{' and '.join(parts)} were measured while other processes wanted the CPU (marked noisy in the store, the "
        f"tables and the report): {', '.join(remedies)}"
    )


def deployment_record(store: Store, run_id: str, trial: dict) -> dict:
    """A trial's export and benchmark, as `bench export/benchmark --json` show them."""
    return {
        "run": run_id,
        "trial": trial["idx"],
        "architecture": trial["architecture"],
        "onnx": export_record(store, store.export_of(trial["id"])),
        "variants": [variant_record(store, v) for v in store.variants_of(trial["id"])],
        "latency": [latency_record(r) for r in store.latency_of(trial["id"])],
        "serving": [serving_record(r) for r in store.serving_of(trial["id"])],
    }
