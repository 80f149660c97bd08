"""Runs in MLflow: a stored run sent to any MLflow tracking URI (`bench mlflow RUN`), or logged as its trials finish
(`bench run --track mlflow`). Read from the store, never recomputed: one MLflow run per cnnbench run, with one
nested run per trial (every hyperparameter and variant parameter, the per-epoch curves with their epoch as step,
the final figures, every latency measurement, tags, the ONNX files as logged models with their signature); the
parent holds the run's config, environment, report and its best trial's figures (bench.tracking.metrics). Sending
a run again adds only what MLflow does not have yet (a trial finished or benchmarked since): nothing is ever logged
twice. MLflow's own UI is the browser view: `mlflow ui --backend-store-uri URI`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.errors import BenchError, UsageError
from bench.core.formats import trial_label
from bench.core.status import RUNNABLE, TO_RUN, ExportStatus, RunStatus, TrialStatus
from bench.tracking import metrics as metrics_of

EXPERIMENT = "cnnbench"  # the MLflow experiment runs go to, unless told otherwise
DB_FILE = "mlflow.db"  # the default backend: SQLite beside the results store
ARTIFACTS = "mlartifacts"  # ... and its artifacts, beside it
RUN, TRIAL = "run", "trial"  # the kinds of MLflow run cnnbench makes (tag cnnbench.kind)
MAX_PARAM = 6000  # MLflow's longest parameter value
BATCH = 500  # metrics per log_batch call (MLflow takes 1000 at most)


def default_uri(store_path: Path) -> str:
    """$MLFLOW_TRACKING_URI, else an SQLite backend beside the results store (runs/mlflow.db)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(store_path).parent / DB_FILE).resolve()}"


def _import_mlflow():
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # an unreachable server: one line, soon
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError("MLflow tracking needs MLflow: pip install 'cnnbench[mlflow]'") from None
    import logging

    for name in ("mlflow", "alembic"):  # its database migrations and warnings are not cnnbench's output
        logging.getLogger(name).setLevel(logging.ERROR)
    return MlflowClient


def _reachable(uri: str) -> None:
    """A tracking server that does not answer is one line before anything is sent."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BenchError(f"cannot reach the MLflow tracking server at {uri}: {reason}") from None


@dataclass
class Sent:
    """What one call sent of one cnnbench run: its MLflow run, and what was new to MLflow."""

    run: str  # the cnnbench run
    mlflow_run: str  # the parent MLflow run's id
    experiment: str
    uri: str
    link: str = ""  # where a person opens it (Tracker.link)
    trials: int = 0  # nested runs made by this call
    metrics: int = 0  # metric values logged by this call
    params: int = 0
    artifacts: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def new(self) -> bool:
        return bool(self.trials or self.metrics or self.params or self.artifacts)


class Tracker:
    """An MLflow client for one tracking URI and experiment, sending cnnbench runs from a store."""

    def __init__(self, uri: str, experiment: str = EXPERIMENT):
        client_class = _import_mlflow()
        _reachable(uri)
        self.uri, self.experiment_name = uri, experiment
        try:
            self.client = client_class(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                self.experiment = self.client.create_experiment(experiment, artifact_location=_artifact_root(uri))
            else:
                self.experiment = found.experiment_id
        except BenchError:
            raise
        except Exception as exc:
            raise BenchError(f"MLflow at {uri}: {_one_line(exc)}") from None

    # --- finding what MLflow has ------------------------------------------------------------------------------

    def _runs_of(self, run_id: str) -> list:
        query = f"tags.`cnnbench.run` = '{run_id}'"
        return list(self.client.search_runs([self.experiment], filter_string=query, max_results=5000))

    def send(self, store, run_id: str, only: set[int] | None = None, report: bool = True) -> Sent:
        """Send run ``run_id`` of ``store`` (its trials ``only``, default all): what MLflow lacks of it."""
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints a link per finished run to a server
                return self._send(store, run_id, only, report)
        except BenchError:
            raise
        except Exception as exc:
            raise BenchError(f"MLflow at {self.uri}: {_one_line(exc)}") from None

    def _send(self, store, run_id: str, only: set[int] | None, report: bool) -> Sent:
        from bench.core.version import __version__
        from bench.results.records import run_records

        run = store.run(run_id)
        existing = self._runs_of(run["id"])
        parent = next((r for r in existing if r.data.tags.get("cnnbench.kind") == RUN), None)
        children = {
            int(r.data.tags["cnnbench.trial"]): r for r in existing if r.data.tags.get("cnnbench.kind") == TRIAL
        }
        env = run["environment"] or {}
        common = {
            "cnnbench.run": run["id"],
            "cnnbench.version": __version__,
            "dataset": run["dataset"],
            "machine": str(env.get("cpu") or env.get("machine") or "unknown"),
        }
        if parent is None:
            parent = self.client.create_run(
                self.experiment,
                run_name=run.get("name") or run["id"],
                tags={**common, "cnnbench.kind": RUN},
                start_time=_ms(run),
            )
        sent = Sent(run["id"], parent.info.run_id, self.experiment_name, self.uri, self.link(parent.info.run_id))
        config = run["config"] or {}
        self._params(parent, {"dataset": run["dataset"], **{k: _text(v) for k, v in config.items()}}, sent)
        self._tags(parent, {**common, "cnnbench.kind": RUN, "status": run["status"], "command": run["command"]})
        self._artifact_json(parent, "environment.json", env, sent)
        listed = run_records(store, run["id"], history=True)
        self._summary(parent, listed, sent)
        records = {r["trial"]: r for r in listed}
        for idx, record in sorted(records.items()):
            if (only is not None and idx not in only) or record["status"] in TO_RUN:
                continue  # not trained yet: sent when it is
            child = children.get(idx)
            if child is None:
                child = self.client.create_run(
                    self.experiment,
                    run_name=trial_label(idx, run.get("name") or run["id"]),
                    tags={
                        **common,
                        "cnnbench.kind": TRIAL,
                        "cnnbench.trial": str(idx),
                        "mlflow.parentRunId": parent.info.run_id,
                    },
                )
                sent.trials += 1
            self._trial(child, record, common, sent)
        if report and run["status"] != RunStatus.RUNNING:
            self._report(store, run, listed, parent, sent)
        self.client.set_terminated(parent.info.run_id, status=_mlflow_status(run["status"]))
        return sent

    # --- one trial --------------------------------------------------------------------------------------------

    def _trial(self, child, record: dict, common: dict, sent: Sent) -> None:
        from mlflow.entities import Metric

        run_id = child.info.run_id
        params = {"architecture": record["architecture"], "plugin": record["plugin"]}
        params.update({k: _text(v) for k, v in record["hparams"].items()})
        params.update({f"variant.{k}": _text(v) for k, v in record["variant"].items()})
        self._params(child, params, sent)
        tags = {
            **common,
            "cnnbench.kind": TRIAL,
            "cnnbench.trial": str(record["trial"]),
            "architecture": record["architecture"],
            "status": record["status"],
            "rank": str(record["rank"] or ""),
            "winner": str(bool(record["winner"])).lower(),
        }
        if record["note"]:
            tags["note"] = record["note"][:5000]
        self._tags(child, tags)
        have = child.data.metrics  # the latest value of each metric MLflow has
        now = int(time.time() * 1000)
        metrics = []
        for key, points in metrics_of.epoch_values(record).items():  # the epoch as step; only the epochs it lacks
            logged = {m.step for m in self.client.get_metric_history(run_id, key)} if key in have else set()
            metrics += [Metric(key, value, now, epoch) for epoch, value in points if epoch not in logged]
        metrics += [Metric(k, v, now, 0) for k, v in metrics_of.final_values(record).items() if k not in have]
        # every latency figure, its repetition as step
        metrics += [Metric(k, v, now, step) for k, v, step in metrics_of.latency_values(record) if k not in have]
        self._log_metrics(run_id, metrics, sent)
        files = []
        if (record.get("onnx") or {}).get("status") == ExportStatus.OK:
            files.append(record["onnx"])
        files += [v for v in record.get("variants") or [] if v.get("status") in RUNNABLE]
        for f in files:
            self._model(child, f, sent)
        self.client.set_terminated(run_id, status=_mlflow_status(record["status"]))

    def _log_metrics(self, run_id: str, metrics: list, sent: Sent) -> None:
        for start in range(0, len(metrics), BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + BATCH])
        sent.metrics += len(metrics)

    def _model(self, child, entry: dict, sent: Sent) -> None:
        """An ONNX file as an MLflow logged model (bench.tracking.models), once per content: its SHA-256 is a tag."""
        from bench.tracking.models import log_onnx_model, model_name

        path = Path(entry.get("path") or "")
        tag = f"cnnbench.sha256.{model_name(entry)}"
        if not path.is_file() or child.data.tags.get(tag) == entry.get("sha256"):
            return
        log_onnx_model(self.uri, child.info.run_id, entry)
        self.client.set_tag(child.info.run_id, tag, entry.get("sha256") or "")
        sent.artifacts += 1

    def _summary(self, parent, records: list[dict], sent: Sent) -> None:
        """The run's best trial's figures on the run itself (bench.tracking.metrics.best_values), logged again when
        they change (a better trial finished: the step is how many trials had)."""
        from mlflow.entities import Metric

        have = parent.data.metrics
        step = sum(r["status"] not in TO_RUN for r in records)
        now = int(time.time() * 1000)
        best = metrics_of.best_values(records)
        self._log_metrics(
            parent.info.run_id, [Metric(k, v, now, step) for k, v in best.items() if have.get(k) != v], sent
        )

    def link(self, mlflow_run: str) -> str:
        """Where a person opens MLflow run ``mlflow_run``: its page on a server, or the command that serves a local
        backend and the page's path there."""
        page = f"#/experiments/{self.experiment}/runs/{mlflow_run}"
        if self.uri.startswith(("http://", "https://")):
            return f"{self.uri.rstrip('/')}/{page}"
        return f"`mlflow ui --backend-store-uri {self.uri}`, then http://127.0.0.1:5000/{page}"

    # --- the run ----------------------------------------------------------------------------------------------

    def _report(self, store, run: dict, records: list[dict], parent, sent: Sent) -> None:
        """The run's report (report.md and its figures) under report/, made again only when what it is made of
        changed (its run and trial records: their digest is a tag)."""
        import hashlib

        from bench.report import write_report

        state = json.dumps([run, records], sort_keys=True, default=str).encode()
        digest = hashlib.sha256(state).hexdigest()
        if parent.data.tags.get("cnnbench.report_of") == digest:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = write_report(store, [run], Path(tmp))
            self.client.log_artifacts(parent.info.run_id, str(path.parent), "report")
            sent.artifacts += sum(1 for f in path.parent.rglob("*") if f.is_file())
        self.client.set_tag(parent.info.run_id, "cnnbench.report_of", digest)

    def _artifact_json(self, mlflow_run, name: str, obj, sent: Sent) -> None:
        if name in {a.path for a in self.client.list_artifacts(mlflow_run.info.run_id)}:
            return
        self.client.log_dict(mlflow_run.info.run_id, obj, name)
        sent.artifacts += 1

    def _params(self, mlflow_run, params: dict, sent: Sent) -> None:
        """The parameters MLflow does not have yet (one it has keeps its value: MLflow never changes a param)."""
        from mlflow.entities import Param

        have = mlflow_run.data.params
        new = [Param(k, v[:MAX_PARAM]) for k, v in params.items() if k not in have]
        for start in range(0, len(new), 100):
            self.client.log_batch(mlflow_run.info.run_id, params=new[start : start + 100])
        sent.params += len(new)

    def _tags(self, mlflow_run, tags: dict) -> None:
        from mlflow.entities import RunTag

        changed = [RunTag(k, v) for k, v in tags.items() if mlflow_run.data.tags.get(k) != v]
        if changed:
            self.client.log_batch(mlflow_run.info.run_id, tags=changed)


def send_runs(store_path, run_refs: list[str], uri: str | None = None, experiment: str = EXPERIMENT) -> list[Sent]:
    """Send the runs ``run_refs`` ('latest', ids or unique prefixes) of the store at ``store_path`` to MLflow."""
    from bench.store import Store, default_path

    store_path = Path(store_path) if store_path is not None else default_path()
    with Store(store_path, create=False, readonly=True) as store:
        runs = [store.run(None if ref == "latest" else ref) for ref in run_refs or ["latest"]]
        tracker = Tracker(uri or default_uri(store_path), experiment)
        return [tracker.send(store, r["id"]) for r in runs]


def _artifact_root(uri: str) -> str | None:
    """A local backend's artifacts beside its database (MLflow's default is the current folder)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / ARTIFACTS).resolve().as_uri()
    return None  # a server, or a file store: where they put artifacts


def _mlflow_status(status: str) -> str:
    if status in (TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED, TrialStatus.PRUNED):
        return "FINISHED"
    if status in (TrialStatus.FAILED, TrialStatus.DIVERGED):
        return "FAILED"
    if status == RunStatus.RUNNING:
        return "RUNNING"
    return "KILLED"  # interrupted


def _text(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _ms(run: dict) -> int | None:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(run["created_at"].replace("Z", "+00:00")).timestamp() * 1000)
    except (KeyError, ValueError, AttributeError):
        return None


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text[:300]
