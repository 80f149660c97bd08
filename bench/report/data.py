"""Reports as data: one record per trial (`bench report --json`, `--format csv`) or per measurement
(`--measurements`)."""

from __future__ import annotations

import json

from bench.core.formats import CPU_PROVIDERS
from bench.core.status import MeasurementStatus, Precision
from bench.options.choices import TRAIN
from bench.options.config import option_names
from bench.report.views import TrialView
from bench.results import diagnosis
from bench.results.columns import Column, csv_text
from bench.results.leaderboard import configurations, rank
from bench.store import Store


def _values(name: str, value) -> Column:
    """A CSV column: its raw value only (a CSV is read by programs)."""
    return Column(name, lambda row: value(row), value)


def _trial_columns() -> list[Column]:
    """`bench report --format csv`: one row per trial (rows: (TrialView, its configuration))."""
    hparams = [_values(k, lambda r, k=k: r[0].trial["hparams"].get(k)) for k in option_names(TRAIN)]
    trial = [
        _values(k, lambda r, k=k: r[0].trial[k])
        for k in ("status", "note", "epochs_run", "best_epoch", "train_acc", "val_acc", "test_acc")
    ]

    def onnx(batch, key):
        return lambda r: (r[0].onnx(CPU_PROVIDERS, batch) or {}).get(key)

    return [
        _values("run", lambda r: r[0].run["id"]),
        _values("trial", lambda r: r[0].trial["idx"]),
        _values("test_rank", lambda r: r[0].test_rank),
        _values("val_rank", lambda r: r[0].trial["rank"]),
        _values("winner", lambda r: r[0].trial["winner"]),
        _values("architecture", lambda r: r[0].trial["architecture"]),
        _values("plugin", lambda r: r[0].trial["plugin"]),
        _values("variant", lambda r: json.dumps(r[0].trial["variant"])),
        *hparams,
        *trial,
        _values("onnx_status", lambda r: r[0].export["status"] if r[0].export else None),
        _values("onnx_test_acc", lambda r: r[0].export["onnx_test_acc"] if r[0].export else None),
        _values("params", lambda r: r[0].trial["params"]),
        _values("flops", lambda r: r[0].trial["flops"]),
        _values("noisy_epochs", lambda r: r[0].trial.get("noisy_epochs")),
        _values("onnx_cpu_p50_batch1_ms", onnx(1, "p50_ms")),
        _values("onnx_cpu_p50_batch1_noisy", onnx(1, "noisy")),
        _values("onnx_cpu_throughput_largest_batch", onnx(None, "throughput")),
        _values("onnx_cpu_throughput_largest_batch_noisy", onnx(None, "noisy")),
        _values("configuration_trials", lambda r: " ".join(map(str, r[1]["trials"]))),
        *(
            _values(f"configuration_{k}_{s}", lambda r, k=k, s=s: r[1][k][s])
            for k in ("val_acc", "test_acc")
            for s in ("mean", "std")
        ),
        _values("configuration_n", lambda r: r[1]["val_acc"]["n"]),
        _values("diagnosis", lambda r: diagnosis.summary(r[0].findings)),
    ]


def to_csv(views: list[TrialView]) -> str:
    configs = _configurations(views)
    return csv_text(_trial_columns(), [(v, configs[(v.run["id"], v.trial["idx"])]) for v in views])


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
    """(run, trial) -> its configuration (bench.results.leaderboard.configurations), per run."""
    out = {}
    for run_id in dict.fromkeys(v.run["id"] for v in views):
        trials = rank([v.trial for v in views if v.run["id"] == run_id])
        for c in configurations(trials):
            out.update({(run_id, idx): c for idx in c["trials"]})
    return out


def measurements(views: list[TrialView]) -> list[dict]:
    """One record per stored measurement (trial, precision, engine, provider, batch size, repetition), with the test
    accuracy that engine gives at that precision (bench.deploy.timing.evaluations; stores from before engines were
    evaluated: through onnxruntime for the ONNX files, PyTorch's own for the torch engine) and the ONNX file's size."""
    out = []
    for v in views:
        accs = {x["precision"]: (x["test_acc"], x["size_bytes"], x["status"]) for x in v.variants}
        if v.export:
            accs[Precision.FP32] = (v.export["onnx_test_acc"], v.export["size_bytes"], v.export["status"])
        evaluated = {
            (e["engine"], e["precision"]): e["test_acc"] for e in v.evaluations if e["status"] == MeasurementStatus.OK
        }
        for r in v.repetitions:
            precision = r["precision"]
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
    names = ["run", "trial", "architecture", *MEASUREMENT_FIELDS, "test_acc", "model_status", "size_bytes"]
    return csv_text([_values(k, lambda r, k=k: r[k]) for k in names], measurements(views))


SERVING_FIELDS = ("engine", "provider", "precision", "scenario", "setup", "repeat", "status", "note")
SERVING_FIGURES = (
    "queries",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "images",
    "batch_size",
    "throughput",
    "bound_ms",
    "workers",
    "max_batch",
    "max_wait_ms",
    "max_qps",
    "failed_qps",
    "others_cpu",
)


def serving_records(views: list[TrialView]) -> list[dict]:
    """`bench report --serving`: one record per serving row (trial, engine, device, precision, scenario, server setup,
    repetition) with its figures; the server's rates tried with --json."""
    return [
        {
            "run": v.run["id"],
            "trial": v.trial["idx"],
            "architecture": v.trial["architecture"],
            **{k: r[k] for k in SERVING_FIELDS},
            **{k: (r["result"] or {}).get(k) for k in SERVING_FIGURES},
            "rates": (r["result"] or {}).get("rates"),
        }
        for v in views
        for r in v.serving
    ]


def serving_csv(views: list[TrialView]) -> str:
    names = ["run", "trial", "architecture", *SERVING_FIELDS, *SERVING_FIGURES]
    return csv_text([_values(k, lambda r, k=k: r[k]) for k in names], serving_records(views))


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
    """`bench report --format csv --history`: one row per trial and epoch (rows: (TrialView, epoch))."""
    columns = [
        _values("run", lambda r: r[0].run["id"]),
        _values("trial", lambda r: r[0].trial["idx"]),
        _values("architecture", lambda r: r[0].trial["architecture"]),
        *(_values(k, lambda r, k=k: r[1][k]) for k in HISTORY_FIELDS),
    ]
    return csv_text(columns, [(v, epoch) for v in views for epoch in store.history(v.trial["id"])])
