"""The command line as a user drives it: runs, stored results, JSON outputs, and user errors."""

import re

from conftest import FAST_DEPLOY_ARGS

from bench import __version__
from bench.data.splits import Normalizer
from bench.plugins.dataset_loading import load_dataset
from bench.plugins.manager import get_registry
from bench.store import Store
from bench.train import checkpoints
from bench.train.loop import evaluate


def test_run_records_every_trial_and_ranks_by_validation_accuracy(invoke, tiny_plugin, store_path):
    result = invoke("run", "--plugin", tiny_plugin, "--lr", "0.01,0.003", "--epochs", "2", "--no-benchmark")
    assert result.exit_code == 0, result.output
    assert "ranked by validation accuracy" in result.stdout
    rows = invoke.json("report")
    assert len(rows) == 4  # 2 variants x 2 learning rates
    assert {(r["variant"]["width"], r["hparams"]["lr"]) for r in rows} == {
        (8, 0.01),
        (8, 0.003),
        (16, 0.01),
        (16, 0.003),
    }
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    accs = [r["val_acc"] for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert sum(r["winner"] for r in rows) == 1 and rows[0]["winner"]
    for r in rows:
        assert r["status"] == "completed" and r["epochs_run"] == 2
        assert r["hparams"]["optimizer"] == "adam" and r["hparams"]["batch_size"] == 64  # the plugin's defaults
        assert r["split"] == {"train": 1150, "val": 288, "test": 359}
        assert r["checkpoint"].endswith(f"/t{r['trial']:03d}/best.pt")
    with Store(store_path) as store:
        run = store.run()
        assert run["command"].startswith("bench run --plugin tiny --lr 0.01,0.003")
        assert run["status"] == "completed"
        assert run["environment"]["torch"] and run["environment"]["cpu"]
        trial = store.trials(run["id"])[0]
        history = store.history(trial["id"])
        assert [h["epoch"] for h in history] == [1, 2]
        assert all(h["train_loss"] > 0 and 0 <= h["val_acc"] <= 1 for h in history)


def test_stored_checkpoint_reproduces_the_recorded_test_accuracy(invoke, store_path, digits):
    assert invoke("run", "--arch", "cnn_baseline", "--epochs", "2", "-q", "--no-benchmark").exit_code == 0
    (row,) = invoke.json("report")
    with Store(store_path) as store:
        run = store.run(row["run"])
    arch = get_registry().get(row["architecture"])
    model = arch.build(tuple(run["input_shape"]), len(run["classes"]), row["variant"])
    state, _ = checkpoints.load(row["checkpoint"], sha256=row["checkpoint_sha256"])
    model.load_state_dict(state)
    data = load_dataset(run["dataset"])
    test = data.split(row["hparams"]["val_ratio"], row["hparams"]["seed"]).test
    assert evaluate(model, test, Normalizer(data)).acc == row["test_acc"]


def test_a_diverging_trial_is_marked_and_the_sweep_goes_on(invoke, tiny_plugin):
    result = invoke(
        "run",
        "--plugin",
        tiny_plugin,
        "--where",
        "width=8",
        "--optimizer",
        "sgd",
        "--lr",
        "50,0.05",
        "--epochs",
        "2",
        "--no-benchmark",
    )
    assert result.exit_code == 0, result.output
    by_lr = {r["hparams"]["lr"]: r for r in invoke.json("report")}
    assert by_lr[50.0]["status"] == "diverged" and by_lr[50.0]["rank"] is None
    assert by_lr[0.05]["status"] == "completed" and by_lr[0.05]["winner"]


def test_interrupted_sweep_keeps_finished_trials(tiny_plugin, store_path):
    import bench

    class StopInSecondTrial(bench.RunListener):
        def epoch_done(self, spec, stats):
            if spec.idx == 2:
                raise KeyboardInterrupt

    outcome = bench.run(arch=["tiny_cnn"], epochs=[2], store_path=store_path, listener=StopInSecondTrial())
    assert outcome.status == "interrupted" and not outcome.deployed
    with Store(store_path) as store:
        trials = store.trials(outcome.run_id)
        assert [t["status"] for t in trials] == ["completed", "interrupted"]
        assert store.run(outcome.run_id)["status"] == "interrupted"
        assert len(store.history(trials[0]["id"])) == 2


def test_a_trial_that_raises_is_failed_and_the_sweep_goes_on(invoke, store_path):
    from torch import nn

    import bench
    from bench.plugins import manager as plugins

    class Broken:
        @bench.hookimpl
        def register_architectures(self, register):
            def build(shape, classes, ok):
                if not ok:
                    raise RuntimeError("cannot build this one")
                return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], classes))

            register("flaky", build, variants={"ok": [False, True]})

    plugins.register_in_process(Broken(), name="flaky_plugin")
    try:
        result = invoke("run", "--plugin", "flaky_plugin", "--variants", "all", "--epochs", "1", "--no-benchmark")
    finally:
        plugins.unregister_in_process("flaky_plugin")
    assert result.exit_code == 0, result.output
    rows = {r["variant"]["ok"]: r for r in invoke.json("report")}
    assert rows[False]["status"] == "failed" and "cannot build this one" in rows[False]["note"]
    assert rows[True]["status"] == "completed"


def test_list_json_has_variants_and_parameter_counts(invoke):
    out = invoke.json("list", "cnn_*")
    archs = {a["name"]: a for a in out["architectures"]}
    assert set(archs) == {"cnn_baseline", "cnn_dropout", "cnn_vgg"}
    assert out["input_shape"] == [1, 8, 8]
    assert archs["cnn_dropout"]["variants_default"] == 4 and archs["cnn_dropout"]["variants_all"] == 120
    assert archs["cnn_dropout"]["parameters"]["kernel_size"] == [3, 5, 7]
    assert all(v["params"] > 1000 for v in archs["cnn_dropout"]["variants"])
    cifar_like = invoke.json("list", "cnn_baseline")  # digits: 18*4*4 flattened features
    assert cifar_like["architectures"][0]["variants"][0]["params"] == 18 * 9 + 18 + 288 * 64 + 64 + 650
    assert len(invoke.json("list", "cnn_dropout", "--variants", "all")["architectures"][0]["variants"]) == 120


def test_plugins_json_lists_builtins_and_a_fixture_plugin(invoke, tiny_plugin):
    rows = {p["name"]: p for p in invoke.json("plugins")}
    assert rows["cnn_vgg"] == {
        "name": "cnn_vgg",
        "version": __version__,
        "distribution": "cnnbench",
        "builtin": True,
        "hooks": ["register_architectures"],
        "architectures": ["cnn_vgg"],
        "datasets": [],
        "engines": [],
        "error": None,
        "architecture_errors": {},
    }
    assert rows[tiny_plugin]["architectures"] == ["tiny_cnn"]


def test_version_and_help(invoke):
    assert __version__ in invoke("--version").output
    assert "bench run --plugin cnn_dropout" in invoke("-h").output


# --- user errors: one line, no traceback, the right exit status ------------------------------------

USAGE = 2


def test_user_errors_are_one_line_for_cnnbench_checks(invoke):
    result = invoke("run", "--plugin", "cnn_dropot")
    assert result.output.strip().count("\n") == 0


def test_store_errors(invoke, tmp_path, tiny_plugin):
    (tmp_path / "adir").mkdir()
    result = invoke("run", "--plugin", tiny_plugin, "--store", tmp_path / "adir", store=False)
    assert result.exit_code == USAGE and "is a directory" in result.output
    (tmp_path / "foreign.db").write_bytes(b"x" * 4096)
    result = invoke("report", "--store", tmp_path / "foreign.db", store=False)
    assert result.exit_code == 1 and "not a cnnbench store" in result.output


def test_a_named_run_is_shown_by_name_and_usable_wherever_its_id_is(invoke, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    quick = ("run", "--arch", "cnn_baseline", "--epochs", "1", "--no-benchmark", "-q")
    assert invoke(*quick, "--name", "base.v1").exit_code == 0
    again = invoke(*quick, "--name", "base.v1")
    assert again.exit_code == 2 and "is already named 'base.v1': choose another --name" in again.output
    bad = invoke(*quick, "--name", "20261207")
    assert bad.exit_code == 2 and "--name '20261207': a run's name starts with a letter" in bad.output
    assert invoke(*quick, "--lr", "0.03", "--name", "faster").exit_code == 0
    runs = invoke.json("runs")
    assert [r["name"] for r in runs] == ["base.v1", "faster"]  # the refused ones recorded nothing
    best = invoke.json("report", "faster")
    assert runs[1]["best_test_acc"] == next(t["test_acc"] for t in best if t["rank"] == 1)
    table = invoke("runs").output
    assert "best test %" in table and f"{100 * runs[1]['best_test_acc']:.2f}" in table and "faster" in table
    result = invoke("report", "base.v1", "faster")
    assert result.exit_code == 0 and "base.v1/t001" in result.output and "faster/t001" in result.output
    result = invoke("compare", "base", "faster")  # a prefix of the name is not a name: ambiguity is not guessed
    assert result.exit_code == 2 and "unknown run 'base'" in result.output
    result = invoke("compare", "base.v1", "faster")
    assert (
        result.exit_code == 0 and f"B = {runs[1]['id']} (faster) against A = {runs[0]['id']} (base.v1)" in result.output
    )
    resumed = invoke("run", "--resume", "faster", "--name", "other")
    assert resumed.exit_code == 2 and "--name names a new run" in resumed.output


def test_unknown_run_lists_the_runs(invoke, tiny_plugin):
    invoke("run", "--plugin", tiny_plugin, "--where", "width=8", "--epochs", "1", "-q", "--no-benchmark")
    result = invoke("report", "20990101")
    assert result.exit_code == USAGE and "unknown run '20990101'" in result.output


def test_dry_run_prints_the_plan_and_touches_no_store(invoke, tiny_plugin, store_path):
    plan = invoke.json("run", "--plugin", "cnn_dropout", "--lr", "0.01,0.03", "--dry-run")
    assert [t["trial"] for t in plan["trials"]] == list(range(1, 9)) and not store_path.exists()
    assert all(
        t["flops"] > 0 and t["train_flops"] == 3 * t["flops"] * t["train_images"] * t["hparams"]["epochs"]
        for t in plan["trials"]
    )
    assert all(t["estimated_s"] is None for t in plan["trials"])  # no earlier run on this machine: no rate
    result = invoke("run", "--arch", "tiny_cnn", "--epochs", "1", "--no-benchmark", "-q")
    assert result.exit_code == 0, result.output
    before = store_path.stat().st_mtime_ns
    plan = invoke.json("run", "--arch", "tiny_cnn", "--epochs", "3", "--dry-run")
    assert all(t["estimated_s"] > 0 and t["rate_of"] == "architecture" for t in plan["trials"])
    estimate = plan["estimate"]  # the deployment of the winner is part of the run: unknown, so no total
    assert estimate["winners"] == 1 and estimate["deploy_s"] is None and estimate["total_s"] is None
    assert "deployment of 1 winner not estimated" in estimate["text"]
    assert store_path.stat().st_mtime_ns == before  # only read
    assert invoke("run", "--arch", "tiny_cnn", "--epochs", "1", *FAST_DEPLOY_ARGS, "-q").exit_code == 0
    estimate = invoke.json("run", "--arch", "tiny_cnn", "--epochs", "3", "--dry-run", *FAST_DEPLOY_ARGS)["estimate"]
    assert estimate["deploy_s"] > 0 and estimate["total_s"] == estimate["train_s"] + estimate["deploy_s"]
    assert "to export and benchmark 1 winner (median of 1 earlier run with these options" in estimate["text"]
    estimate = invoke.json("run", "--arch", "tiny_cnn", "--dry-run", *FAST_DEPLOY_ARGS, "--batch-sizes", "2")
    assert estimate["estimate"]["deploy_s"] is None  # other deployment options: no figure taken from that run
    result = invoke("run", "--arch", "tiny_cnn", "--epochs", "1", *FAST_DEPLOY_ARGS)  # the display says it too
    assert result.exit_code == 0 and "Estimate: about " in result.output, result.output
    said = " ".join(result.output.split())
    assert re.search(r"to export and benchmark 1 winner \(median of 1 earlier run .*?\); about [\d.]+s in all", said)
    result = invoke("run", "--arch", "tiny_cnn", "--epochs", "3", "--dry-run")
    assert result.exit_code == 0 and "Plan: " in result.output and "nothing trained or stored" in result.output
    result = invoke("run", "--resume", "latest", "--dry-run")
    assert result.exit_code == 2 and "--dry-run shows the plan of a new run" in result.output


def test_a_plugin_default_that_conflicts_with_the_users_epochs_is_adapted_and_named(invoke):
    """fast_cnn warms up for 3 of its 14 epochs: with --epochs 2 that is the plugin's default that does not fit,
    not an option the user gave (which would be their error)."""
    plan = invoke.json("run", "--arch", "fast_cnn", "--epochs", "2", "--dry-run")
    assert {t["hparams"]["warmup_epochs"] for t in plan["trials"]} == {0.429}
    assert any(
        "fast_cnn's default warm-up of 3 epochs (of its 14) is 0.429 with --epochs 2" in n for n in plan["notes"]
    )
    result = invoke("run", "--arch", "fast_cnn", "--epochs", "2", "--dry-run")
    assert result.exit_code == 0 and "Note: fast_cnn's default warm-up" in result.output
    result = invoke("run", "--arch", "fast_cnn", "--epochs", "2", "--warmup-epochs", "3", "--dry-run")
    assert result.exit_code == 2 and "Invalid value for '--warmup-epochs': 3.0" in result.output  # the user's own
