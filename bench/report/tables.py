"""Reports as data: one record per trial (`bench report --json`, `--format csv`) or per measurement
(`--measurements`)."""

from __future__ import annotations

import csv
import io
import json

from bench.core.formats import CPU_PROVIDERS
from bench.options.choices import TRAIN
from bench.options.config import option_names
from bench.report.views import TrialView
from bench.results import diagnosis
from bench.results.leaderboard import configurations, rank
from bench.store import Store


def to_csv(views: list[TrialView]) -> str:
    buf = io.StringIO()
    hparams = option_names(TRAIN)
    fields = [
        "run",
        "trial",
        "test_rank",
        "val_rank",
        "winner",
        "architecture",
        "plugin",
        "variant",
        *hparams,
        "status",
        "note",
        "epochs_run",
        "best_epoch",
        "train_acc",
        "val_acc",
        "test_acc",
        "onnx_status",
        "onnx_test_acc",
        "params",
        "flops",
        "noisy_epochs",
        "onnx_cpu_p50_batch1_ms",
        "onnx_cpu_p50_batch1_noisy",
        "onnx_cpu_throughput_largest_batch",
        "onnx_cpu_throughput_largest_batch_noisy",
        "configuration_trials",
        "configuration_val_acc_mean",
        "configuration_val_acc_std",
        "configuration_test_acc_mean",
        "configuration_test_acc_std",
        "configuration_n",
        "diagnosis",
    ]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    configs = _configurations(views)
    for v in views:
        t = v.trial
        b1, big = v.onnx(CPU_PROVIDERS, 1), v.onnx(CPU_PROVIDERS)
        c = configs[(v.run["id"], t["idx"])]
        writer.writerow(
            {
                "run": v.run["id"],
                "trial": t["idx"],
                "test_rank": v.test_rank,
                "val_rank": t["rank"],
                "winner": t["winner"],
                "architecture": t["architecture"],
                "plugin": t["plugin"],
                "variant": json.dumps(t["variant"]),
                **{k: t["hparams"].get(k) for k in hparams},
                "status": t["status"],
                "note": t["note"],
                "epochs_run": t["epochs_run"],
                "best_epoch": t["best_epoch"],
                "train_acc": t["train_acc"],
                "val_acc": t["val_acc"],
                "test_acc": t["test_acc"],
                "onnx_status": v.export["status"] if v.export else None,
                "onnx_test_acc": v.export["onnx_test_acc"] if v.export else None,
                "params": t["params"],
                "flops": t["flops"],
                "noisy_epochs": t.get("noisy_epochs"),
                "onnx_cpu_p50_batch1_ms": b1["p50_ms"] if b1 else None,
                "onnx_cpu_p50_batch1_noisy": b1.get("noisy") if b1 else None,
                "onnx_cpu_throughput_largest_batch": big["throughput"] if big else None,
                "onnx_cpu_throughput_largest_batch_noisy": big.get("noisy") if big else None,
                "configuration_trials": " ".join(map(str, c["trials"])),
                **{f"configuration_{k}_{s}": c[k][s] for k in ("val_acc", "test_acc") for s in ("mean", "std")},
                "configuration_n": c["val_acc"]["n"],
                "diagnosis": diagnosis.summary(v.findings),
            }
        )
    return buf.getvalue()


MEASUREMENT_FIELDS = (
    "precision",
    "engine",
    "provider",
    "batch_size",
    "status",
    "note",
    "n",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "throughput",
    "session_ms",
    "first_ms",
    "peak_rss_mb",
    "repeat",
    "spread",
    "cv",
    "load_before",
    "load_after",
    "others_cpu",
    "noisy",
)


def _configurations(views: list[TrialView]) -> dict[tuple[str, int], dict]:
    """(run, trial) -> its configuration (bench.leaderboard.configurations), per run."""
    out = {}
    for run_id in dict.fromkeys(v.run["id"] for v in views):
        trials = rank([v.trial for v in views if v.run["id"] == run_id])
        for c in configurations(trials):
            out.update({(run_id, idx): c for idx in c["trials"]})
    return out


def measurements(views: list[TrialView]) -> list[dict]:
    """One record per stored measurement (trial, precision, engine, provider, batch size, repetition), with the test
    accuracy that engine gives at that precision (bench.deploy.evaluations; stores from before engines were evaluated:
    through onnxruntime for the ONNX files, PyTorch's own for the torch engine) and the ONNX file's size."""
    out = []
    for v in views:
        accs = {x["precision"]: (x["test_acc"], x["size_bytes"], x["status"]) for x in v.variants}
        if v.export:
            accs["fp32"] = (v.export["onnx_test_acc"], v.export["size_bytes"], v.export["status"])
        evaluated = {(e["engine"], e["precision"]): e["test_acc"] for e in v.evaluations if e["status"] == "ok"}
        for r in v.repetitions:
            precision = r.get("precision") or "fp32"
            acc, size, status = accs.get(precision, (None, None, None))
            if r["engine"] == "torch":
                acc, size, status = v.trial["test_acc"], None, v.trial["status"]
            elif r["engine"] != "onnxruntime":
                size, status = None, r["status"]
            acc = evaluated.get((r["engine"], precision), acc if r["engine"] in ("onnxruntime", "torch") else None)
            out.append(
                {
                    "run": v.run["id"],
                    "trial": v.trial["idx"],
                    "architecture": v.trial["architecture"],
                    **{k: r.get(k) for k in MEASUREMENT_FIELDS},
                    "precision": precision,
                    "test_acc": acc,
                    "model_status": status,
                    "size_bytes": size,
                }
            )
    return out


def measurements_csv(views: list[TrialView]) -> str:
    rows = measurements(views)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=["run", "trial", "architecture", *MEASUREMENT_FIELDS, "test_acc", "model_status", "size_bytes"]
    )
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def records(store: Store, views: list, history: bool = False) -> list[dict]:
    """`bench report --json`: each trial's public record, with its configuration over seeds, its test-accuracy rank
    and its diagnosis (``history``: and its per-epoch history)."""
    from bench.results.records import run_records

    by_run = {
        (r["run"], r["trial"]): r
        for run_id in dict.fromkeys(v.run["id"] for v in views)
        for r in run_records(store, run_id, history)
    }
    return [
        {
            **by_run[(v.run["id"], v.trial["idx"])],
            "test_rank": v.test_rank,
            "diagnosis": [f.text for f in v.findings],
        }
        for v in views
    ]


HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time_s", "elapsed_s", "noisy")


def history_csv(views: list[TrialView], store: Store) -> str:
    """`bench report --format csv --history`: one row per trial and epoch."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["run", "trial", "architecture", *HISTORY_FIELDS])
    for v in views:
        for epoch in store.history(v.trial["id"]):
            writer.writerow([v.run["id"], v.trial["idx"], v.trial["architecture"], *(epoch[k] for k in HISTORY_FIELDS)])
    return buf.getvalue()
