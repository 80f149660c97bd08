"""The public records of trials, exports and latency measurements: what `--json` prints and what the Python
API returns. One definition, used by the CLI and by bench.run / bench.trials."""

from __future__ import annotations

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
)


def trial_record(store: Store, run_id: str, trial: dict) -> dict:
    """A trial as ``--json`` shows it: ranking, hyperparameters, figures, checkpoint, ONNX export, latency."""
    ckpt = store.checkpoint_path(trial)
    return {
        "run": run_id,
        "trial": trial["idx"],
        "rank": trial.get("rank"),
        "winner": trial.get("winner"),
        **{k: trial[k] for k in TRIAL_FIELDS},
        "checkpoint": str(ckpt.resolve()) if ckpt else None,
        "checkpoint_sha256": trial["checkpoint_sha256"],
        "onnx": export_record(store, store.export_of(trial["id"])),
        "variants": [variant_record(store, v) for v in store.variants_of(trial["id"])],
        "latency": [latency_record(r) for r in store.latency_of(trial["id"])],
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


def deployment_record(store: Store, run_id: str, trial: dict) -> dict:
    """A trial's export and benchmark, as `bench export/benchmark --json` show them."""
    return {
        "run": run_id,
        "trial": trial["idx"],
        "architecture": trial["architecture"],
        "onnx": export_record(store, store.export_of(trial["id"])),
        "variants": [variant_record(store, v) for v in store.variants_of(trial["id"])],
        "latency": [latency_record(r) for r in store.latency_of(trial["id"])],
    }
