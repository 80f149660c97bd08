"""Sweeps that scale: random search, early stopping, resume after Ctrl-C / SIGTERM / SIGKILL, and Ray."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.plugins.manager import get_registry
from bench.store import Store
from bench.sweep.plan import plan
from bench.train import checkpoints

BENCH = str(Path(sys.executable).parent / "bench")


def test_random_search_is_seeded_without_repeats_and_inside_the_grid():
    archs = [get_registry().get("cnn_dropout")]
    axes = {"lr": [1e-3, 1e-2, 1e-1], "batch_size": [16, 32, 64]}
    grid = plan(archs, axes, variants="all")
    key = lambda s: (json.dumps(s.variant, sort_keys=True), s.hparams)  # noqa: E731
    sample = plan(archs, axes, variants="all", search="random", trials=25, search_seed=7)
    assert len(sample) == 25 and len({key(s) for s in sample}) == 25
    assert {key(s) for s in sample} <= {key(s) for s in grid}
    assert [key(s) for s in sample] == [
        key(s) for s in plan(archs, axes, "all", search="random", trials=25, search_seed=7)
    ]
    assert [key(s) for s in sample] != [
        key(s) for s in plan(archs, axes, "all", search="random", trials=25, search_seed=8)
    ]
    everything = plan(archs, axes, variants="all", search="random", trials=10_000)
    assert len(everything) == len(grid) == 120 * 9


def test_random_search_from_the_command_line(invoke):
    small = ("--where", "convs_per_block=1", "--where", "head=64")  # 30 of the 120 variants, the quick ones
    result = invoke(
        "run",
        "--plugin",
        "cnn_dropout",
        "--variants",
        "all",
        *small,
        "--search",
        "random",
        "--trials",
        "3",
        "--epochs",
        "1",
        "--no-benchmark",
        "-q",
    )
    assert result.exit_code == 0, result.output
    rows = invoke.json("report")
    assert len(rows) == 3 and all(r["status"] == "completed" for r in rows)
    result = invoke("run", "--plugin", "cnn_dropout", "--trials", "3")
    assert result.exit_code == 2 and "--trials needs --search random" in result.output


def test_patience_stops_a_trial_that_stopped_improving(invoke):
    # A small training set and no dropout: the validation loss bottoms out, then rises.
    result = invoke(
        "run",
        "--plugin",
        "cnn_dropout",
        "--variants",
        "all",
        "--where",
        "kernel_size=3",
        "--where",
        "feature_maps=32-64",
        "--where",
        "convs_per_block=1",
        "--where",
        "head=256-64",
        "--where",
        "dropout=0.0",
        "--optimizer",
        "adam",
        "--lr",
        "3e-3",
        "--val-ratio",
        "0.9",
        "--batch-size",
        "16",
        "--epochs",
        "30",
        "--patience",
        "3",
        "--no-benchmark",
        "-q",
    )
    assert result.exit_code == 0, result.output
    (row,) = invoke.json("report")
    assert row["status"] == "early_stopped"
    assert row["epochs_run"] == row["best_epoch"] + 3 < 30
    assert row["note"] == f"no better val loss for 3 epochs after epoch {row['best_epoch']}"
    assert row["rank"] == 1 and row["test_acc"] is not None and row["winner"]


def _interrupt_second_trial(store_path, digits, tiny):
    import bench

    class StopInSecondTrial(bench.RunListener):
        def epoch_done(self, spec, stats):
            if spec.idx == 2:
                raise KeyboardInterrupt

    config = bench.RunConfig(arch=["tiny_cnn"], epochs=[2], lr=[0.01, 0.02])
    outcome = bench.run(config, store_path=store_path, listener=StopInSecondTrial())
    assert outcome.status == "interrupted"
    return outcome.run_id


def test_resume_runs_only_what_is_missing_in_the_same_run(invoke, tiny_plugin, store_path, digits):
    run_id = _interrupt_second_trial(store_path, digits, tiny_plugin)
    with Store(store_path) as store:
        before = {t["idx"]: t for t in store.trials(run_id)}
    assert [before[i]["status"] for i in (1, 2, 3, 4)] == ["completed", "interrupted", "pending", "pending"]
    result = invoke("run", "--resume", run_id, "--no-benchmark", "-q")
    assert result.exit_code == 0, result.output
    with Store(store_path) as store:
        after = {t["idx"]: t for t in store.trials(run_id)}
        assert len(store.runs()) == 1 and store.run(run_id)["status"] == "completed"
    assert all(t["status"] == "completed" for t in after.values())
    for key in ("started_at", "finished_at", "checkpoint_sha256", "val_loss"):
        assert after[1][key] == before[1][key]  # the finished trial was not trained again
    assert f"Run {run_id} has nothing left to run." in invoke("run", "--resume", run_id, "-q").output
    result = invoke("run", "--resume", run_id, "--lr", "0.1")
    assert result.exit_code == 2 and "--resume runs the stored plan of its run: drop --lr" in result.output


def _as_in_a_terminal():
    """In the child before it starts: Ctrl-C's signal as a terminal delivers it. A job started in the background by
    a non-interactive shell (`cmd &`, as some CI runners do) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt: the Ctrl-C tests would test the shell that started them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, store):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen(
        [BENCH, "run", *args, "--store", str(store)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )


def _wait_for(store, condition, process, timeout=120):
    """Poll the store (read-only, as another process would) until ``condition(trials)`` holds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        if store.exists():
            db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
            try:
                trials = [
                    dict(zip(("idx", "status"), r, strict=True))
                    for r in db.execute("SELECT idx, status FROM trials ORDER BY idx")
                ]
            except sqlite3.OperationalError:
                trials = []
            finally:
                db.close()
            if trials and condition(trials):
                return trials
        time.sleep(0.05)
    raise AssertionError("the run did not get there in time")


# The three small default variants of cnn_dropout (a few seconds each): long enough to be caught mid-trial.
SWEEP = ["--plugin", "cnn_dropout", "--where", "convs_per_block=1", "--epochs", "10", "--no-benchmark"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
@pytest.mark.slow
def test_a_stop_signal_marks_the_running_trial_interrupted_and_exits_cleanly(tmp_path, signum):
    store = tmp_path / "bench.db"
    process = _start(SWEEP, store)
    _wait_for(store, lambda ts: ts[0]["status"] == "completed" and ts[1]["status"] == "running", process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "bench run --resume" in err
    with Store(store) as s:
        run = s.run()
        assert run["status"] == "interrupted"
        assert [t["status"] for t in s.trials(run["id"])][:2] == ["completed", "interrupted"]


def _count(store: Path, sql: str) -> int:
    if not store.exists():
        return 0
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_a_stop_while_benchmarking_exits_130_and_resume_finishes_the_deployment(tmp_path, invoke):
    """Issue 14, item 4: the run stays unfinished until its winners are exported and benchmarked; SIGTERM there
    exits 130 like any stop, and `--resume` does the missing benchmark (with the deploy options it is given)."""
    store = tmp_path / "bench.db"
    process = _start(["--arch", "cnn_baseline", "--epochs", "1", "--batch-sizes", "1", "--min-time", "60", "-q"], store)
    deadline = time.time() + 120
    while _count(store, "SELECT count(*) FROM exports") == 0:
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # exported; the first of its 60 s measurements is running
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "bench run --resume" in err
    with Store(store) as s:
        run = s.run()
        (winner,) = [t for t in s.trials(run["id"]) if s.export_of(t["id"])]
        assert run["status"] == "interrupted" and not s.latency_of(winner["id"])
        exported_at = s.export_of(winner["id"])["exported_at"]
    result = invoke(
        "run", "--resume", run["id"], "--min-time", "0.05", "--min-runs", "5", "--store", store, store=False
    )
    assert result.exit_code == 0, result.output
    assert "nothing left to run" not in result.output
    with Store(store) as s:
        assert s.run(run["id"])["status"] == "completed"
        assert {m["batch_size"] for m in s.latency_of(winner["id"])} == {1}
        assert s.export_of(winner["id"])["exported_at"] == exported_at  # the verified export was kept
    assert "nothing left to run" in invoke("run", "--resume", run["id"], "--store", store, store=False).output


SLOW_DATASET = """
import os, time
from pathlib import Path
import bench

@bench.hookimpl
def register_datasets(register):
    def load(request):
        Path(os.environ["SLOW_DATASET_MARK"]).write_text("loading")
        time.sleep(120)
    register("slow", load, description="Takes two minutes to load.")
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
@pytest.mark.slow
def test_a_stop_before_training_exits_130_without_a_traceback(tmp_path, signum):
    """Issue 14, item 4: a stop while the data loads (before any run is recorded) exits 130 as one in a sweep."""
    site = tmp_path / "site"
    (site / "cnnbench_slow-1.0.dist-info").mkdir(parents=True)
    (site / "cnnbench_slow.py").write_text(SLOW_DATASET)
    (site / "cnnbench_slow-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cnnbench-slow\nVersion: 1.0\n"
    )
    (site / "cnnbench_slow-1.0.dist-info" / "entry_points.txt").write_text("[cnnbench]\nslow = cnnbench_slow\n")
    mark = tmp_path / "loading"
    env = {**os.environ, "PYTHONPATH": str(site), "SLOW_DATASET_MARK": str(mark)}
    env.pop("BENCH_LOAD_PLUGINS")
    store = tmp_path / "bench.db"
    process = subprocess.Popen(
        [BENCH, "run", "--arch", "cnn_baseline", "--dataset", "slow", "--store", str(store)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )
    deadline = time.time() + 60
    while not mark.exists():
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err and "Interrupted" in err
    assert _count(store, "SELECT count(*) FROM runs") == 0


def _owner_pid(store: Path) -> int | None:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT pid FROM owners").fetchone()
        return row[0] if row else None
    finally:
        db.close()


@pytest.mark.slow
def test_kill_9_mid_trial_then_resume_completes_without_retraining(tmp_path, invoke):
    """SIGKILL mid-trial, twice: the run is taken over from a dead owner each time, and while a resume runs a
    second one is refused, naming the process that holds the run (issue 14, item 3)."""
    store = tmp_path / "bench.db"
    process = _start(SWEEP, store)
    _wait_for(store, lambda ts: ts[0]["status"] == "completed" and ts[1]["status"] == "running", process)
    time.sleep(0.3)  # inside the trial, between checkpoint writes
    process.kill()
    process.communicate()
    with Store(store) as s:  # opens cleanly after SIGKILL
        run = s.run()
        before = {t["idx"]: t for t in s.trials(run["id"])}
        assert run["status"] == "running" and before[1]["status"] == "completed"
        assert before[2]["status"] == "running"
        assert s.owner(run["id"])["pid"] == process.pid  # a dead owner, still recorded
    # A resume takes the run over from the dead owner; a second resume meanwhile is refused, naming it.
    owner = _start(["--resume", run["id"], "--no-benchmark", "-q"], store)
    deadline = time.time() + 120
    while _owner_pid(store) != owner.pid:
        assert time.time() < deadline and owner.poll() is None, owner.communicate()
        time.sleep(0.05)
    refused = invoke("run", "--resume", run["id"], "--store", store, "-q", "--no-benchmark", store=False)
    assert refused.exit_code == 1
    assert f"run {run['id']} is being run by process {owner.pid} on " in refused.output
    _wait_for(store, lambda ts: ts[1]["status"] == "running", owner)
    owner.kill()
    owner.communicate()
    result = invoke("run", "--resume", run["id"], "--store", store, "-q", "--no-benchmark", store=False)
    assert result.exit_code == 0, result.output
    with Store(store) as s:
        after = {t["idx"]: t for t in s.trials(run["id"])}
        assert s.run(run["id"])["status"] == "completed" and len(s.runs()) == 1
        for t in after.values():
            assert t["status"] == "completed"
            checkpoints.load(s.checkpoint_path(t), t["checkpoint_sha256"])  # each checkpoint is whole and its own
    assert after[1]["finished_at"] == before[1]["finished_at"]
    report = invoke.json("report", "--store", store, store=False)
    assert sorted(r["trial"] for r in report) == [1, 2, 3]
    with Store(store) as s:
        assert s.owner(run["id"]) is None  # given up at the end


# --- the Ray executor ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance (2 CPUs, as on this machine) for the module; the executor reuses it."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor_records_the_same_rows_as_the_local_one_and_asha_prunes(ray_cluster, invoke, store_path):
    """One Ray run with ASHA (the two smallest default variants of cnn_dropout x two learning rates, one of them
    too small to learn) against the same sweep run locally: ASHA spends fewer epochs and records what it pruned;
    every trial Ray finished has the rows the local one has; its winner is exported, benchmarked and reported.
    (Ray workers load plugins through entry points: no in-process tiny plugin.)"""
    sweep = (
        "--plugin",
        "cnn_dropout",
        "--where",
        "kernel_size=3",
        "--where",
        "convs_per_block=1",
        "--lr",
        "1e-5,3e-3",
        "--epochs",
        "6",
    )
    result = invoke(
        "run",
        *sweep,
        "--executor",
        "ray",
        "--scheduler",
        "asha",
        "--min-runs",
        "20",
        "--min-time",
        "0.1",
        "--batch-sizes",
        "1",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert invoke("run", *sweep, "--no-benchmark", "-q").exit_code == 0
    with Store(store_path) as s:
        ray_run, local_run = s.runs()
        ray_trials, local_trials = s.trials(ray_run["id"]), s.trials(local_run["id"])
        assert ray_run["config"]["executor"] == "ray" and ray_run["status"] == "completed"
        assert len(ray_trials) == len(local_trials) == 4
        assert sum(t["epochs_run"] for t in ray_trials) < 4 * 6
        pruned = [t for t in ray_trials if t["status"] == "pruned"]
        assert pruned and all(t["note"].startswith("stopped by ASHA after epoch") for t in pruned)
        assert all(t["epochs_run"] < 6 for t in pruned)
        for rt, lt in zip(ray_trials, local_trials, strict=True):
            assert lt["status"] == "completed" and rt["status"] in ("completed", "pruned")
            assert (rt["variant"], rt["hparams"], rt["params"], rt["flops"]) == (
                lt["variant"],
                lt["hparams"],
                lt["params"],
                lt["flops"],
            )
            assert len(s.history(rt["id"])) == rt["epochs_run"]
            checkpoints.load(s.checkpoint_path(rt), rt["checkpoint_sha256"])
            if rt["status"] == "completed":
                filled = {k for k, v in lt.items() if v is not None}
                assert filled == {k for k, v in rt.items() if v is not None}
    rows = invoke.json("report", ray_run["id"])
    winner = next(r for r in rows if r["winner"])
    assert winner["onnx"]["status"] == "ok" and winner["latency"]
    result = invoke("report", ray_run["id"], "--out", store_path.parent / "reports")
    assert result.exit_code == 0 and "Report:" in result.output


def _epochs_in_state(path: Path) -> int | None:
    import torch

    try:
        return len(torch.load(path, weights_only=True)["history"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return None


@pytest.mark.slow
def test_kill_9_in_epoch_3_of_6_then_resume_continues_with_the_same_losses(tmp_path, invoke):
    variant = ["kernel_size=3", "feature_maps=32-64", "convs_per_block=1", "head=64", "dropout=0.2", "dropout_layers=1"]
    args = [
        "--arch",
        "cnn_dropout",
        *(x for w in variant for x in ("--where", w)),
        "--epochs",
        "6",
        "--batch-size",
        "8",
        "--optimizer",
        "sgd",
        "--lr",
        "0.02",
        "--schedule",
        "cosine",
        "--augment",
        "flip,crop",
        "--threads",
        "1",
        "--no-benchmark",
    ]
    store = tmp_path / "killed.db"
    process = _start(args, store)
    deadline = time.time() + 120
    state = None
    while time.time() < deadline and process.poll() is None:  # the state after epoch 2 appears: epoch 3 is running
        found = list(tmp_path.glob("*/t001/state.pt"))
        if found and _epochs_in_state(found[0]) == 2:
            state = found[0]
            break
        time.sleep(0.005)
    assert state is not None, "the trial never saved its state after epoch 2"
    process.kill()
    process.communicate()
    saved = [(e["epoch"], e["train_loss"], e["time_s"]) for e in torch_load(state)["history"]]
    assert [e[0] for e in saved] == [1, 2]  # killed inside epoch 3
    result = invoke("run", "--resume", "latest", "--store", store, "-q", "--no-benchmark", store=False)
    assert result.exit_code == 0, result.output
    assert invoke("run", *args, "-q", "--store", tmp_path / "whole.db", store=False).exit_code == 0
    killed, whole = _histories(tmp_path, epochs=6)
    # epochs 1-2 come from the saved state, not from training them again
    assert [(h["epoch"], h["train_loss"], h["time_s"]) for h in killed[:2]] == saved
    assert not state.exists()
    losses = [[(h["train_loss"], h["val_loss"], h["lr"]) for h in history] for history in (killed, whole)]
    assert losses[0] == losses[1]


def _histories(tmp_path: Path, epochs: int) -> tuple[list[dict], list[dict]]:
    """The per-epoch history of the one trial of killed.db (resumed) and of whole.db (never stopped), each checked
    completed after ``epochs`` epochs."""
    out = []
    for name in ("killed", "whole"):
        with Store(tmp_path / f"{name}.db") as s:
            (trial,) = s.trials(s.run()["id"])
            assert trial["status"] == "completed" and trial["epochs_run"] == epochs
            out.append(s.history(trial["id"]))
    return out[0], out[1]


def _step_in_state(path: Path) -> tuple[int, int] | None:
    """(epoch, step) of a state saved within an epoch; None for one saved after an epoch, or none readable."""
    import torch

    try:
        partial = torch.load(path, weights_only=True).get("partial")
    except (OSError, RuntimeError, EOFError, KeyError, AttributeError):
        return None
    return (partial["epoch"], partial["step"]) if partial else None


@pytest.mark.slow
def test_kill_9_within_an_epoch_then_resume_continues_from_that_step_with_the_same_losses(tmp_path, invoke):
    """Issue 29, item 5: with --state-every the training state is also saved within an epoch; a SIGKILL in the middle
    of epoch 2 loses only the steps since, and the resumed trial records the figures of an uninterrupted one."""
    variant = ["kernel_size=3", "feature_maps=32-64", "convs_per_block=1", "head=64", "dropout=0.2", "dropout_layers=1"]
    args = [
        *("--arch", "cnn_dropout", *(x for w in variant for x in ("--where", w))),
        *("--epochs", "3", "--batch-size", "8", "--lr", "0.02", "--schedule", "cosine", "--augment", "flip,crop"),
        *("--threads", "1", "--no-benchmark", "--lookahead"),
    ]
    store = tmp_path / "killed.db"
    process = _start([*args, "--state-every", "0.05"], store)
    deadline = time.time() + 120
    where = None
    while time.time() < deadline and process.poll() is None:  # a state saved within epoch 2, past its 20th step
        found = list(tmp_path.glob("*/t001/state.pt"))
        where = _step_in_state(found[0]) if found else None
        if where and where[0] == 2 and where[1] > 20:
            break
        time.sleep(0.005)
    assert where and where[0] == 2, f"no state saved within epoch 2 ({where})"
    process.kill()
    process.communicate()
    saved = [(e["epoch"], e["train_loss"], e["time_s"]) for e in torch_load(found[0])["history"]]
    assert [e[0] for e in saved] == [1]
    result = invoke("run", "--resume", "latest", "--store", store, "-q", store=False)
    assert result.exit_code == 0, result.output
    assert invoke("run", *args, "-q", "--store", tmp_path / "whole.db", store=False).exit_code == 0
    killed, whole = _histories(tmp_path, epochs=3)
    # epoch 1 comes from the saved state, not from training it again
    assert [(h["epoch"], h["train_loss"], h["time_s"]) for h in killed[:1]] == saved
    figures = [[(h["train_loss"], h["train_acc"], h["val_loss"], h["lr"]) for h in hist] for hist in (killed, whole)]
    assert figures[0] == figures[1]


def torch_load(path):
    import torch

    return torch.load(path, weights_only=True)


def test_a_run_is_recorded_with_its_whole_plan_or_not_at_all(store_path):
    """A stop (or a failed write) between the run row and its trials must not leave a run without a plan."""
    args = dict(
        command="test",
        dataset="digits",
        input_shape=(1, 8, 8),
        classes=["a"],
        split={},
        seed=0,
        config={},
        environment={},
    )
    good = {"idx": 1, "architecture": "a", "plugin": "p", "variant": {}, "hparams": {}}
    with Store(store_path) as store:
        with pytest.raises(sqlite3.IntegrityError):  # the second trial repeats idx 1: the insert fails
            store.create_run(**args, trials=[good, good])
        assert store.runs() == []
        run_id = store.create_run(**args, trials=[good])
        assert [t["idx"] for t in store.trials(run_id)] == [1]


# --- SIGKILL at random moments, by property (slow: `python -m pytest -m slow -n 0`) --------------------------


def _phase(store: Path) -> str:
    """Where a run stands, read from the store as another process sees it."""
    if _count(store, "SELECT count(*) FROM runs") == 0:
        return "plan"
    statuses = [r[0] for r in _rows(store, "SELECT status FROM trials")]
    if any(s != "completed" for s in statuses):
        return "training" if "running" in statuses else "starting"
    if _count(store, "SELECT count(*) FROM exports") == 0:
        return "export"
    if _count(store, "SELECT count(*) FROM latency") < 2:
        return "benchmark"
    return "finishing"


def _rows(store: Path, sql: str) -> list:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_at_20_random_moments_then_resume_always_ends_in_one_whole_run(tmp_path):
    """Issue 14: SIGKILL while planning, training (checkpoints and training states are written every epoch),
    exporting and benchmarking, at random moments within each phase; after every kill the store passes SQLite's
    integrity check and holds each planned trial once; a last resume completes every trial exactly once and
    exports and benchmarks the winner."""
    import random

    rng = random.Random(14)
    store = tmp_path / "bench.db"
    sweep = [
        "--plugin",
        "cnn_dropout",
        "--where",
        "convs_per_block=1",
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--batch-sizes",
        "1",
        "--min-runs",
        "20",
        "--min-time",
        "1",
        "--engines",
        "onnxruntime,torch",  # the kills are the point; the engines are named so the set below is the machine's
    ]
    targets = ["plan"] * 3 + ["training"] * 8 + ["export"] * 4 + ["benchmark"] * 5
    order = ["plan", "starting", "training", "export", "benchmark", "finishing"]
    killed_in = []
    for target in targets:
        fresh = _count(store, "SELECT count(*) FROM runs") == 0
        process = _start(sweep if fresh else ["--resume", "latest"], store)
        deadline = time.time() + 120
        if target == "plan":
            time.sleep(rng.uniform(0.5, 3.0))  # importing, loading the data, planning, recording the plan
        else:
            while order.index(_phase(store)) < order.index(target) and process.poll() is None:
                assert time.time() < deadline
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.4))
        if process.poll() is not None:  # finished before the kill: nothing more to interrupt
            break
        killed_in.append(_phase(store))
        process.kill()
        process.communicate()
        if not store.exists():  # killed before the store was created
            continue
        assert _rows(store, "PRAGMA integrity_check") == [("ok",)]
        if _count(store, "SELECT count(*) FROM runs"):
            assert sorted(r[0] for r in _rows(store, "SELECT idx FROM trials")) == [1, 2, 3]
    assert len(killed_in) >= 20 and {"plan", "training", "export", "benchmark"} <= set(killed_in), killed_in
    process = _start(["--resume", "latest"], store)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    with Store(store) as s:
        (run,) = s.runs()
        trials = s.trials(run["id"])
        assert run["status"] == "completed" and s.owner(run["id"]) is None
        assert [t["idx"] for t in trials] == [1, 2, 3] and all(t["status"] == "completed" for t in trials)
        (winner,) = [t for t in trials if s.export_of(t["id"])]
        assert s.export_of(winner["id"])["status"] == "ok"
        assert {(m["engine"], m["batch_size"]) for m in s.latency_of(winner["id"])} == {
            ("onnxruntime", 1),
            ("torch", 1),
        }
        for t in trials:
            checkpoints.load(s.checkpoint_path(t), t["checkpoint_sha256"])
            assert [e["epoch"] for e in s.history(t["id"])] == [1, 2, 3, 4]


@pytest.mark.slow
def test_sigterm_stops_a_ray_sweep_with_130_and_resume_finishes_it(tmp_path, invoke):
    """Issue 14, item 4: ray.init installs its own SIGTERM handler, with which the driver aborted (exit 134)."""
    pytest.importorskip("ray")
    store = tmp_path / "bench.db"
    process = _start(
        [
            "--plugin",
            "cnn_dropout",
            "--where",
            "convs_per_block=1",
            "--epochs",
            "40",
            "--executor",
            "ray",
            "--no-benchmark",
        ],
        store,
    )
    _wait_for(store, lambda ts: any(t["status"] == "completed" for t in ts), process, timeout=300)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "bench run --resume" in err
    with Store(store) as s:
        run = s.run()
        assert run["status"] == "interrupted"
    result = invoke("run", "--resume", run["id"], "--executor", "local", "--store", store, "-q", store=False)
    assert result.exit_code == 0, result.output
    with Store(store) as s:
        assert all(t["status"] == "completed" for t in s.trials(run["id"]))


@pytest.mark.slow
def test_tpe_on_ray_continues_the_study_a_local_run_began(ray_cluster, store_path):
    """`--search tpe --executor ray`: Ray Tune asks cnnbench's TPE search (a Tune searcher) for each trial; a TPE
    run stopped locally after two trials is finished on Ray, in the same study, each trial told its result."""
    import optuna

    import bench
    from bench.sweep.search import IDX, STUDY_FILE, study_storage

    sweep = {
        "plugin": ["cnn_dropout"],
        "where": {"kernel_size": [3], "convs_per_block": [1]},
        "lr": [3e-3, 1e-2, 3e-2],
        "epochs": [2],
        "search": "tpe",
        "trials": 4,
        "no_benchmark": True,
    }

    class StopAfterTwo(bench.RunListener):
        def trial_done(self, spec, trial):
            if spec.idx == 2:
                raise KeyboardInterrupt

    stopped = bench.run(**sweep, store_path=store_path, listener=StopAfterTwo())
    assert stopped.status == "interrupted" and len(stopped.trials) == 2
    resumed = bench.resume(stopped.run_id, store_path=store_path, executor="ray")
    assert resumed.status == "completed" and sorted(resumed.trained) == [3, 4]
    study = optuna.load_study(
        study_name=stopped.run_id, storage=study_storage(store_path.parent / stopped.run_id / STUDY_FILE)
    )
    told = {t.user_attrs[IDX]: t for t in study.trials if IDX in t.user_attrs}
    by_idx = {t["trial"]: t for t in resumed.trials}
    assert sorted(told) == [1, 2, 3, 4] and sorted(by_idx) == [1, 2, 3, 4]
    for idx, frozen in told.items():
        assert frozen.state == optuna.trial.TrialState.COMPLETE
        assert frozen.value == pytest.approx(by_idx[idx]["val_loss"])
        assert frozen.params.get("lr", by_idx[idx]["hparams"]["lr"]) == by_idx[idx]["hparams"]["lr"]


def test_per_architecture_hyperparameters_from_a_config_file_and_the_command_line(tiny_plugin, invoke, tmp_path):
    """Issue 29: one run, each architecture with its own hyperparameters: a `[per_arch.NAME]` table of training
    options (or --per-arch NAME:OPTION=V,...) replaces the run's values for that architecture only."""
    config = tmp_path / "sweep.toml"
    config.write_text(
        'arch = ["tiny_cnn", "cnn_baseline"]\nepochs = 1\nlr = 0.05\n\n'
        '[per_arch.tiny_cnn]\nlr = [0.001, 0.002]\naugment = "flip,crop"\nnesterov = true\n'
    )
    planned = invoke.json("run", "--config", config, "--dry-run", "--variants", "default", store=False)["trials"]
    rows = {(t["architecture"], t["variant"].get("width"), t["hparams"]["lr"]) for t in planned}
    assert {(a, lr) for a, _, lr in rows} == {("tiny_cnn", 0.001), ("tiny_cnn", 0.002), ("cnn_baseline", 0.05)}
    tiny = [t["hparams"] for t in planned if t["architecture"] == "tiny_cnn"]
    assert all(h["augment"] == "flip,crop" and h["nesterov"] and h["epochs"] == 1 for h in tiny)
    baseline = next(t["hparams"] for t in planned if t["architecture"] == "cnn_baseline")
    assert baseline["augment"] == "" and not baseline["nesterov"]
    given = invoke.json("run", "--config", config, "--per-arch", "cnn_baseline:batch_size=16,32", "--dry-run")
    sizes = {(t["architecture"], t["hparams"]["batch_size"], t["hparams"]["lr"]) for t in given["trials"]}
    assert ("cnn_baseline", 16, 0.05) in sizes and ("cnn_baseline", 32, 0.05) in sizes
    assert not any(a == "tiny_cnn" and lr != 0.05 for a, _, lr in sizes)  # the command line replaced the file's table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--per-arch", "nope:lr=0.1"], "--per-arch nope: this run trains no architecture of that name (tiny_cnn)"),
        (["--per-arch", "tiny_cnn:top_k=2"], "Invalid value for '--per-arch': 'tiny_cnn:top_k' is not a training"),
        (["--per-arch", "tiny_cnn:lr=-1"], "--per-arch tiny_cnn: Invalid value for '--lr': -1.0 (a number > 0)"),
        (["--per-arch", "tiny_cnn=lr"], "Invalid value for '--per-arch': 'tiny_cnn=lr' (ARCH:OPTION=V"),
        (["--per-arch", "tiny_cnn:select=val_acc,val_loss"], "Invalid value for '--select': 'val_acc,val_loss'"),
    ],
)
def test_bad_per_architecture_options_are_one_line(tiny_plugin, invoke, args, message):
    result = invoke("run", "--arch", "tiny_cnn", *args, "--dry-run")
    assert result.exit_code == 2 and message in result.output, result.output
