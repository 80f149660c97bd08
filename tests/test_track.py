"""Runs in MLflow (the real one, on a temporary SQLite backend), read back with MLflow's own client: one nested run
per trial, per-epoch histories, parameters, test figures, latency, the ONNX file; sending again adds nothing;
failures are one line and lose nothing."""

import importlib.util
import sys

import pytest
from conftest import FAST_DEPLOY

import bench
from bench.core.errors import BenchError, UsageError
from bench.store import Store
from bench.tracking.mlflow import Tracker, send_runs

if importlib.util.find_spec("mlflow") is None:  # imported by the tests that use it: 2 s, not at collection
    pytest.skip("MLflow is not installed (pip install -e '.[mlflow]')", allow_module_level=True)


def MlflowClient(uri):  # noqa: N802 (MLflow's class, imported when first used)
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


RUN = {"plugin": ["tiny"], "variants": "all", "epochs": [3], **FAST_DEPLOY}


def _mlflow_runs(uri, run_id):
    """MLflow's client, the parent MLflow runs of cnnbench run ``run_id`` and its nested runs by trial."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cnnbench")
    if experiment is None:
        return client, [], {}
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`cnnbench.run` = '{run_id}'")
    parents = [r for r in runs if r.data.tags["cnnbench.kind"] == "run"]
    children = {int(r.data.tags["cnnbench.trial"]): r for r in runs if r.data.tags["cnnbench.kind"] == "trial"}
    return client, parents, children


def _models(client, mlflow_run):
    """The logged models of an MLflow run: name -> model."""
    found = client.search_logged_models(
        experiment_ids=[mlflow_run.info.experiment_id], filter_string=f"source_run_id = '{mlflow_run.info.run_id}'"
    )
    return {m.name: m for m in found}


def _state(client, parents, children):
    """Everything MLflow holds of the runs: to compare before and after a second send."""
    out = {}
    for r in [*parents, *children.values()]:
        histories = {k: len(client.get_metric_history(r.info.run_id, k)) for k in r.data.metrics}
        artifacts = sorted(a.path for a in client.list_artifacts(r.info.run_id))
        models = {name: m.model_id for name, m in _models(client, r).items()}
        out[r.info.run_id] = (dict(r.data.params), histories, artifacts, models)
    return out


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One MLflow backend for the module's tests (making its tables takes seconds); each test reads its own run."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_a_run_sent_to_mlflow_reads_back_with_mlflow_s_client_and_a_second_send_adds_nothing(
    tiny_plugin, store_path, uri
):
    result = bench.run(**RUN, store_path=store_path)
    (sent,) = send_runs(store_path, [result.run_id], uri)
    assert sent.trials == 2 and sent.new
    client, parents, children = _mlflow_runs(uri, result.run_id)
    assert len(parents) == 1 and sorted(children) == [1, 2]
    parent = parents[0]
    assert parent.data.tags["cnnbench.run"] == result.run_id and parent.data.params["dataset"] == "digits"
    by_idx = {t["trial"]: t for t in bench.trials(result.run_id, store_path=store_path, history=True)}
    for idx, child in children.items():
        trial = by_idx[idx]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["architecture"] == "tiny_cnn" and child.data.tags["status"] == "completed"
        assert child.data.tags["cnnbench.version"] == bench.__version__ and child.data.tags["machine"]
        assert child.data.params["lr"] == "0.01"
        assert child.data.params["variant.width"] == str(trial["variant"]["width"])
        for key in ("train_loss", "val_loss", "val_acc", "lr", "elapsed_s"):
            history = client.get_metric_history(child.info.run_id, f"curves/{key}")
            assert [m.step for m in history] == [1, 2, 3]
            assert [m.value for m in history] == pytest.approx([e[key] for e in trial["history"]])
        assert child.data.metrics["final/test_acc"] == pytest.approx(trial["test_acc"])
        assert sorted(child.data.metrics)[0].startswith("curves/")  # the chart view's first section: the curves
    winner = next(t for t in by_idx.values() if t["rank"] == 1)
    child = children[winner["trial"]]
    p50 = winner["latency"][0]["p50_ms"]
    assert child.data.metrics["latency/onnxruntime.fp32.cpu.b1.p50_ms"] == pytest.approx(p50)
    assert {"report", "environment.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    # the run itself carries its best trial's figures: the experiment's chart view compares runs
    assert parent.data.metrics["best/test_acc"] == pytest.approx(winner["test_acc"])
    assert (
        parent.data.metrics["best/trial"] == winner["trial"] and parent.data.metrics["best/onnx_cpu_b1_p50_ms"] == p50
    )
    # the ONNX export is an MLflow logged model with its signature, that MLflow loads and runs as it is
    (model,) = _models(client, child).values()
    assert model.name == "onnx-fp32" and not _models(client, children[3 - winner["trial"]])
    import mlflow
    import numpy as np

    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pyfunc.load_model(model.model_uri)
    (spec,) = loaded.metadata.get_input_schema().inputs
    assert spec.type == np.dtype("float32") and spec.shape == (-1, 1, 8, 8)
    out = loaded.predict(np.zeros((2, 1, 8, 8), dtype=np.float32))
    assert next(iter(out.values())).shape == (2, 10)
    assert sent.link == f"`mlflow ui --backend-store-uri {uri}`, then http://127.0.0.1:5000/#/experiments/" + (
        f"{parent.info.experiment_id}/runs/{parent.info.run_id}"
    )

    before = _state(client, parents, children)
    (again,) = send_runs(store_path, [result.run_id], uri)
    assert not again.new and again.mlflow_run == sent.mlflow_run
    client, parents, children = _mlflow_runs(uri, result.run_id)
    assert len(parents) == 1 and len(children) == 2 and _state(client, parents, children) == before


def test_track_mlflow_logs_each_trial_as_it_ends(tiny_plugin, store_path, uri):
    seen = []

    class Watch(bench.RunListener):
        def run_started(self, run_id, specs):
            self.run_id = run_id

        def trial_done(self, spec, trial):  # the tracker, told before this listener, has sent the trial
            seen.append(sorted(_mlflow_runs(uri, self.run_id)[2]))

    tracked = {"track": "mlflow", "tracking_uri": uri}
    result = bench.run(**RUN, no_benchmark=True, **tracked, store_path=store_path, listener=Watch())
    assert seen == [[1], [1, 2]]
    client, parents, children = _mlflow_runs(uri, result.run_id)
    (note,) = result.notes  # where it went, and how to open it
    assert note.startswith(f"run {result.run_id} is MLflow run {parents[0].info.run_id} (experiment 'cnnbench', {uri})")
    assert note.endswith(f"#/experiments/{parents[0].info.experiment_id}/runs/{parents[0].info.run_id}")
    assert len(client.get_metric_history(children[2].info.run_id, "curves/val_acc")) == 3
    steps = [m.step for m in client.get_metric_history(parents[0].info.run_id, "best/val_acc")]
    assert steps[0] == 1 and steps[-1] <= 2  # the best so far, logged as trials finished
    (again,) = send_runs(store_path, [result.run_id], uri)
    assert not again.new


def test_a_tracking_failure_during_a_run_is_one_note_and_the_run_loses_nothing(
    tiny_plugin, store_path, uri, monkeypatch
):
    def broken(self, *args, **kwargs):
        raise BenchError("MLflow at somewhere: the server went away")

    monkeypatch.setattr(Tracker, "send", broken)
    result = bench.run(**RUN, no_benchmark=True, track="mlflow", tracking_uri=uri, store_path=store_path)
    assert result.status == "completed" and len(result.trials) == 2
    assert result.notes == [
        f"tracking stopped (MLflow at somewhere: the server went away); nothing is lost: `bench mlflow "
        f"{result.run_id}` sends the run later"
    ]
    monkeypatch.undo()
    (sent,) = send_runs(store_path, [result.run_id], uri)
    assert sent.trials == 2


def test_mlflow_failures_are_one_line_and_record_nothing(tiny_plugin, invoke, store_path, monkeypatch):
    result = invoke("mlflow", "--uri", "http://127.0.0.1:9")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1  # no store yet
    invoke("run", "--plugin", "tiny", "--epochs", "1", "--no-benchmark")
    result = invoke("mlflow", "--uri", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach the MLflow tracking server at http://127.0.0.1:9")
    assert len(result.output.strip().splitlines()) == 1
    result = invoke(
        "run", "--plugin", "tiny", "--epochs", "1", "--track", "mlflow", "--tracking-uri", "http://127.0.0.1:9"
    )
    assert result.exit_code == 1 and "cannot reach the MLflow tracking server" in result.output
    with Store(store_path, readonly=True) as store:
        assert len(store.runs()) == 1  # the tracked run was refused before it was recorded
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    result = invoke("mlflow")
    assert result.exit_code == 2 and "MLflow tracking needs MLflow: pip install 'cnnbench[mlflow]'" in result.output


@pytest.mark.parametrize(
    "options, message",
    [
        ({"track": "wandb"}, "Invalid value for '--track': 'wandb' (one of mlflow)"),
        ({"tracking_uri": "sqlite:///x.db"}, "--tracking-uri is for --track mlflow"),
        ({"experiment": "mine"}, "--experiment is for --track mlflow"),
        ({"track": ["none", "mlflow"]}, "Invalid value for '--track': 'none,mlflow'"),
    ],
)
def test_bad_tracking_options_are_one_line(options, message):
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        bench.RunConfig(plugin=["tiny"], **options)
