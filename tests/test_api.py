"""The Python API (bench.run, bench.resume, bench.trials, bench.RunConfig) and the single list of run options."""

import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from conftest import FAST_DEPLOY

import bench
from bench.cli.options import NOT_CONFIG
from bench.cli.run import run as run_command
from bench.core.errors import BenchError, UsageError
from bench.options.config import RunConfig, defaults
from bench.options.hparams import HParams
from bench.store import Store
from bench.train.precision import resolve_speed

ROOT = Path(__file__).resolve().parent.parent


def test_run_from_python_records_the_config_and_returns_the_trials(tiny_plugin, store_path):
    result = bench.run(arch=["tiny_cnn"], epochs=[2], lr=[0.01, 0.03], store_path=store_path, no_benchmark=True)
    assert result.status == "completed" and result.trained == [1, 2, 3, 4] and not result.deployed
    assert [t["rank"] for t in result.trials] == [1, 2, 3, 4] and result.best is result.trials[0]
    assert all(t["status"] == "completed" and t["checkpoint"] for t in result.trials)
    assert bench.trials(result.run_id, store_path=store_path) == result.trials
    with Store(store_path) as store:
        row = store.run(result.run_id)
    # What the store records is RunConfig.asdict(), and reads back as the same config.
    assert row["config"] == RunConfig(arch=["tiny_cnn"], epochs=[2], lr=[0.01, 0.03], no_benchmark=True).asdict()
    assert RunConfig.from_record(row["config"]) == RunConfig(**row["config"])
    assert row["command"] == "bench.run(arch=['tiny_cnn'], lr=[0.01, 0.03], epochs=[2], no_benchmark=True)"
    again = bench.resume(result.run_id, store_path=store_path)
    assert again.trained == [] and again.trials == result.trials
    with pytest.raises(UsageError, match="drop --lr"):
        bench.resume(result.run_id, store_path=store_path, lr=[0.1])


def test_a_resume_takes_the_recorded_executor_and_threads_unless_told(tiny_plugin, store_path):
    class Stop(bench.RunListener):
        def epoch_done(self, spec, stats):
            raise KeyboardInterrupt

    class Threads(bench.RunListener):
        seen = set()

        def epoch_done(self, spec, stats):
            self.seen.add(torch.get_num_threads())

    torch.set_num_threads(2)
    first = bench.run(
        arch=["tiny_cnn"], epochs=[1], threads=1, no_benchmark=True, store_path=store_path, listener=Stop()
    )
    assert first.status == "interrupted" and torch.get_num_threads() == 2  # the caller's count is restored
    done = bench.resume(first.run_id, store_path=store_path, listener=Threads())
    assert done.status == "completed" and done.trained == [1, 2] and Threads.seen == {1}  # the recorded count
    assert torch.get_num_threads() == 2
    assert not done.deployed  # no_benchmark, as recorded


def test_every_run_option_is_a_config_field_with_the_same_default_and_is_documented():
    names = [f.name for f in fields(RunConfig)]
    options = {p.name: p for p in run_command.params if p.name not in NOT_CONFIG}
    assert sorted(options) == sorted(names)
    for name, value in defaults().items():
        shown = options[name].default
        assert (list(shown) if isinstance(shown, tuple) else shown) == (value if value != {} else []), name
    documented = re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "run-options.md").read_text(), flags=re.M)
    assert sorted(documented) == sorted(names) and len(documented) == len(names)


def test_a_config_file_may_set_every_field(tmp_path, invoke):
    """Every RunConfig field is a --config key (here all at their defaults, which must also be valid values)."""
    import json

    lines = []
    for name, value in defaults().items():
        if value is None or name in ("download", "plugin"):
            continue
        lines.append(f"{name} = {json.dumps(value) if not isinstance(value, dict) else '{}'}")
    config = tmp_path / "all.toml"
    config.write_text("\n".join(lines) + '\nplugin = ["nope"]\n')
    result = invoke("run", "--config", config)
    assert result.exit_code == 2 and "unknown plugin 'nope'" in result.output  # every key was accepted


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "dask"}, "Invalid value for '--executor': 'dask' (one of local, ray)"),
        ({"top_k": 0}, "Invalid value for '--top-k': 0 (an integer >= 1)"),
        ({"min_time": float("inf")}, "Invalid value for '--min-time': inf (a number in [0, 600])"),
        ({"providers": ["tpu"]}, "Invalid value for '--providers': 'tpu'"),
        ({"trials": 3}, "--trials needs --search random"),
        ({"state_every": -1}, "Invalid value for '--state-every': -1.0 (a number >= 0)"),
        ({"image_size": 3}, "Invalid value for '--image-size': 3 (an integer from 4 to 2048)"),
        # out of range or of the wrong type: refused as the command line refuses them (reliability round three)
        ({"batch_sizes": [0]}, "Invalid value for '--batch-sizes': 0 (an integer >= 1)"),
        ({"batch_sizes": [-5]}, "Invalid value for '--batch-sizes': -5"),
        ({"tolerance": -0.5}, "Invalid value for '--tolerance': -0.5"),
        ({"max_accuracy_drop": -0.5}, "Invalid value for '--max-accuracy-drop': -0.5"),
        ({"min_time": -0.9}, "Invalid value for '--min-time': -0.9"),
        ({"gpus_per_trial": -0.5, "executor": "ray"}, "Invalid value for '--gpus-per-trial': -0.5"),
        ({"where": "kernel_size=3"}, "Invalid value for '--where': 'kernel_size=3'"),
        ({"dataset": 123}, "Invalid value for '--dataset': 123"),
        ({"dataset": None}, "Invalid value for '--dataset': None"),
        ({"mean": ["a"]}, "Invalid value for '--mean': 'a'"),
        ({"no_benchmark": "no"}, "Invalid value for '--no-benchmark': 'no' (true or false)"),
        ({"channels_last": "no"}, "Invalid value for '--channels-last': 'no' (true or false)"),
    ],
)
def test_bad_config_values_are_one_line_errors(options, message):
    with pytest.raises(UsageError) as error:
        RunConfig(plugin=["cnn_dropout"], **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_run_recorded_before_run_config_reads_back():
    legacy = {
        "plugins": ["cnn_dropout"],
        "architectures": ["cnn_dropout"],
        "variants": "default",
        "where": {},
        "dataset": "digits",
        "axes": {"lr": [0.01], "epochs": None, "nesterov": [True]},
        "select": "val_loss",
        "search": "grid",
        "trials": None,
        "patience": None,
        "executor": "ray",
        "device": "auto",
        "threads": 2,
        "cpus_per_trial": 1,
        "gpus_per_trial": 0,
        "scheduler": "fifo",
        "config_file": None,
        "data": {"data_dir": None, "image_size": 16, "mean": [0.5], "std": None},
    }
    config = RunConfig.from_record(legacy)
    assert (config.plugin, config.lr, config.nesterov, config.executor, config.threads) == (
        ["cnn_dropout"],
        [0.01],
        True,
        "ray",
        2,
    )
    assert config.data_options() == {
        "data_dir": None,
        "image_size": 16,
        "mean": [0.5],
        "std": None,
        "limit_train": None,
        "cache_dir": None,
    }


@pytest.mark.parametrize("fast", [True, False])
def test_auto_precision_is_bf16_only_where_bf16_is_fast_and_the_model_is_big_enough(monkeypatch, fast):
    from torch import nn

    monkeypatch.setattr("bench.train.precision.bf16_is_fast", lambda device: fast)
    cpu = torch.device("cpu")
    big = nn.Sequential(nn.Conv2d(1, 128, 3, padding=1), nn.Conv2d(128, 128, 3, padding=1), nn.Flatten())  # 19 MFLOPs
    small = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten())
    assert resolve_speed(HParams(), big, (1, 8, 8), cpu).precision == ("bf16" if fast else "fp32")
    assert resolve_speed(HParams(), small, (1, 8, 8), cpu).precision == "fp32"
    assert resolve_speed(HParams(precision="fp32"), big, (1, 8, 8), cpu).precision == "fp32"


def test_bf16_speed_is_measured_once_per_machine_and_only_where_the_cpu_has_bf16(monkeypatch, tmp_path):
    import bench.train.precision as training

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))  # not the cache other tests of this worker may have filled
    measured = []
    monkeypatch.setattr(training, "_measure_bf16_speedup", lambda: measured.append(1) or 2.0)
    monkeypatch.setattr(training, "_probed", {})
    cpu = torch.device("cpu")
    monkeypatch.setattr(training, "cpu_features", lambda: ["avx2", "avx512f"])
    assert not training.bf16_is_fast(cpu) and measured == []  # no bf16 instructions: nothing to measure
    monkeypatch.setattr(training, "cpu_features", lambda: ["avx2", "avx512f", "avx512_bf16"])
    assert training.bf16_is_fast(cpu) and measured == [1]
    monkeypatch.setattr(training, "_probed", {})  # a new process on the same machine: read from the cache folder
    assert training.bf16_is_fast(cpu) and measured == [1]
    monkeypatch.setattr(training, "_measure_bf16_speedup", lambda: 0.7)  # bf16 slower (a Xeon without AMX)
    monkeypatch.setattr(training, "_probed", {})
    monkeypatch.setattr(torch, "get_num_threads", lambda: 99)  # another thread count: measured again
    assert not training.bf16_is_fast(cpu)


def test_the_readme_python_example_runs(tiny_plugin, tmp_path, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.+?)```", section, flags=re.S)
    # the same, quicker: the tiny plugin, 2 epochs, the fast deploy settings (the API is the point here)
    code = code.replace('plugin=["cnn_dropout"], epochs=[5]', 'plugin=["tiny"], epochs=[2], **FAST_DEPLOY')
    code = code.replace('"runs/bench.db"', repr(str(tmp_path / "bench.db")))
    exec(compile(code, "README.md", "exec"), {"FAST_DEPLOY": FAST_DEPLOY})
    lines = capsys.readouterr().out.splitlines()
    run_id, status, best = lines[0].split()
    assert status == "completed" and 0 < float(best) <= 1
    assert lines[1].endswith(" ok")  # 2 variants x 2 learning rates; the winner exported
    assert len([line for line in lines[1:5] if re.fullmatch(r"\d \S+ \S+ (ok|None)", line)]) == 4
    rest = "\n".join(lines[5:])
    assert "mean" in rest and "0.001" in rest and "0.01" in rest  # the learning rates compared
    assert "epoch" in rest  # the validation loss per epoch and trial


def test_trials_come_with_their_history_and_as_data_frames(tiny_plugin, store_path, invoke):
    result = bench.run(arch=["tiny_cnn"], epochs=[3], lr=[0.01], store_path=store_path, no_benchmark=True)
    trials = bench.trials(result.run_id, store_path=store_path, history=True)
    assert all([e["epoch"] for e in t["history"]] == [1, 2, 3] for t in trials)
    assert "history" not in bench.trials(result.run_id, store_path=store_path)[0]
    table = trials.to_pandas()
    assert len(table) == len(trials) and {"hparams.lr", "variant.width", "test_acc"} <= set(table.columns)
    curves = trials.to_pandas(history=True)
    assert len(curves) == 3 * len(trials) and {"trial", "epoch", "val_loss", "lr", "elapsed_s"} <= set(curves.columns)
    with pytest.raises(UsageError, match="needs records with their history"):
        bench.trials(result.run_id, store_path=store_path).to_pandas(history=True)
    (row, *_) = invoke.json("report", "--history")
    assert [e["epoch"] for e in row["history"]] == [1, 2, 3]
    csv_rows = invoke("report", "--format", "csv", "--history").output.splitlines()
    assert csv_rows[0].startswith("run,trial,architecture,epoch,train_loss") and len(csv_rows) == 1 + 3 * len(trials)
    assert invoke("report", "--history").exit_code == 2  # the markdown report has its own figures


class Boom(Exception):
    pass


@pytest.mark.parametrize("method", ["run_started", "epoch_done", "sweep_done", "deploy_event", "deploy_done"])
def test_a_listener_that_raises_stops_the_run_as_interrupted_and_blames_no_trial(tiny_plugin, store_path, method):
    """The listener is the caller's code: its exception reaches the caller, the run is recorded interrupted (a
    resume finishes it), and no trial is marked failed or given an error.txt."""

    class Raising(bench.RunListener):
        pass

    def boom(self, *args):
        raise Boom(method)

    setattr(Raising, method, boom)
    options = dict(arch=["tiny_cnn"], epochs=[1], lr=[0.01], **FAST_DEPLOY)
    options["no_benchmark"] = not method.startswith("deploy")  # the deploy callbacks need a deployment
    with pytest.raises(Boom):
        bench.run(**options, store_path=store_path, listener=Raising())
    with Store(store_path) as store:
        run = store.run()
        trials = store.trials(run["id"])
        assert run["status"] == "interrupted" and store.owner(run["id"]) is None
        assert all(t["status"] != "failed" for t in trials), trials
    assert not list(store_path.parent.rglob("error.txt"))
    done = bench.resume(run["id"], store_path=store_path)
    assert done.status == "completed" and all(t["status"] == "completed" for t in done.trials)


def test_a_keyboard_interrupt_from_sweep_done_leaves_the_run_interrupted(tiny_plugin, store_path):
    class Stop(bench.RunListener):
        def sweep_done(self, run, ranked):
            raise KeyboardInterrupt

    result = bench.run(arch=["tiny_cnn"], epochs=[1], lr=[0.01], store_path=store_path, listener=Stop())
    assert result.status == "interrupted"
    with Store(store_path) as store:
        assert store.run()["status"] == "interrupted"


def test_a_listener_must_be_one(tiny_plugin, store_path):
    with pytest.raises(UsageError, match="has none of bench.RunListener's methods"):
        bench.run(arch=["tiny_cnn"], epochs=[1], store_path=store_path, listener=object())
    assert not store_path.exists()  # refused before anything was recorded


def test_a_run_cannot_be_resumed_by_another_thread_of_the_process_running_it(tiny_plugin, store_path):
    import threading

    training, release = threading.Event(), threading.Event()
    seen = {}

    class Hold(bench.RunListener):
        def run_started(self, run_id, specs):
            seen["run"] = run_id

        def epoch_done(self, spec, stats):
            training.set()
            release.wait(30)

    worker = threading.Thread(
        target=lambda: bench.run(
            arch=["tiny_cnn"], epochs=[1], lr=[0.01, 0.03], no_benchmark=True, store_path=store_path, listener=Hold()
        )
    )
    worker.start()
    try:
        assert training.wait(60)
        with pytest.raises(BenchError, match="is being run by this process"):
            bench.resume(seen["run"], store_path=store_path)
    finally:
        release.set()
        worker.join(60)
    assert bench.resume(seen["run"], store_path=store_path).trained == []  # once it has ended, it can be resumed


def test_the_run_s_estimate_is_made_only_for_a_listener_that_takes_it(tiny_plugin, store_path, monkeypatch):
    """Building every variant to count its FLOPs is for the display: a bench.run without such a listener skips it."""
    from bench.sweep import estimate

    made = []
    monkeypatch.setattr(estimate, "run_estimate", lambda *a, **k: made.append(1) or estimate.RunEstimate(trials=2))
    bench.run(plugin=["tiny"], epochs=[1], no_benchmark=True, store_path=store_path)
    assert made == []

    class Wants(bench.RunListener):
        def run_estimated(self, run_id, estimate):
            self.estimate = estimate

    listener = Wants()
    bench.run(plugin=["tiny"], epochs=[1], no_benchmark=True, store_path=store_path, listener=listener)
    assert made == [1] and listener.estimate.trials == 2
