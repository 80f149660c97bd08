"""Search that learns (--search tpe): Optuna's TPE sampler chooses the trials from the results so far, its study is
kept with the run and a resume continues it; Optuna's pruners stop weak trials."""

import sys

import optuna
import pytest

import bench
from bench.core.errors import UsageError
from bench.report import write_report
from bench.store import Store
from bench.sweep.search import IDX, STUDY_FILE, study_storage

TPE = {
    "plugin": ["tiny"],
    "variants": "all",
    "search": "tpe",
    "trials": 5,
    "epochs": [2],
    "lr": [0.003, 0.01, 0.03],
    "batch_size": [32, 64],
    "no_benchmark": True,
}


def _study(store_path, run_id):
    return optuna.load_study(study_name=run_id, storage=study_storage(store_path.parent / run_id / STUDY_FILE))


def _choices(result):
    """Each trial's combination and figures, in the order the search chose them."""
    rows = sorted(result.trials, key=lambda t: t["trial"])
    return [(t["variant"], t["hparams"]["lr"], t["hparams"]["batch_size"], t["val_loss"]) for t in rows]


def test_tpe_chooses_trials_from_the_grid_s_space_and_keeps_its_study_with_the_run(tiny_plugin, store_path, tmp_path):
    result = bench.run(**TPE, store_path=store_path)
    assert result.status == "completed" and len(result.trials) == 5 and result.trained == [1, 2, 3, 4, 5]
    grid = {(w, lr, b) for w in (8, 16) for lr in TPE["lr"] for b in TPE["batch_size"]}
    chosen = [(t["variant"]["width"], t["hparams"]["lr"], t["hparams"]["batch_size"]) for t in result.trials]
    assert set(chosen) <= grid and len(set(chosen)) == 5  # inside the space, no combination trained twice
    study = _study(store_path, result.run_id)
    told = {t.user_attrs[IDX]: t for t in study.trials if IDX in t.user_attrs}
    assert sorted(told) == [1, 2, 3, 4, 5]
    by_idx = {t["trial"]: t for t in result.trials}
    for idx, frozen in told.items():  # the study was told each trial's selection metric (val_loss by default)
        assert frozen.state == optuna.trial.TrialState.COMPLETE
        assert frozen.value == pytest.approx(by_idx[idx]["val_loss"])
        assert frozen.params["lr"] == by_idx[idx]["hparams"]["lr"]
    with Store(store_path, readonly=True) as store:  # the report shows the search's progress
        report, _ = write_report(store, [store.run(result.run_id)], tmp_path / "reports")
    text = report.read_text()
    assert "## Search" in text and (report.parent / "search.png").is_file()
    best = min(t["val_loss"] for t in result.trials)
    assert f"Optuna's TPE sampler, 5 trials; best val loss {best:.4g}" in text


def test_a_resumed_tpe_run_continues_its_study_and_chooses_as_an_uninterrupted_one(tiny_plugin, store_path, tmp_path):
    whole = bench.run(**TPE, store_path=tmp_path / "whole" / "bench.db")

    class StopAfterTwo(bench.RunListener):
        def trial_done(self, spec, trial):
            if spec.idx == 2:
                raise KeyboardInterrupt

    stopped = bench.run(**TPE, store_path=store_path, listener=StopAfterTwo())
    assert stopped.status == "interrupted" and len(stopped.trials) == 2
    first = [(t.number, t.params) for t in _study(store_path, stopped.run_id).trials]
    resumed = bench.resume(stopped.run_id, store_path=store_path)
    assert resumed.status == "completed" and resumed.trained == [3, 4, 5]
    study = _study(store_path, stopped.run_id)
    assert [(t.number, t.params) for t in study.trials[: len(first)]] == first  # the same study, continued
    assert sorted(t.user_attrs[IDX] for t in study.trials if IDX in t.user_attrs) == [1, 2, 3, 4, 5]
    assert [c[:3] for c in _choices(resumed)] == [c[:3] for c in _choices(whole)]
    assert [c[3] for c in _choices(resumed)] == pytest.approx([c[3] for c in _choices(whole)], rel=1e-5)


def test_a_tpe_trial_stopped_mid_trial_is_trained_again_by_its_own_optuna_trial_on_resume(tiny_plugin, store_path):
    class StopInThird(bench.RunListener):
        def epoch_done(self, spec, stats):
            if spec.idx == 3:
                raise KeyboardInterrupt

    stopped = bench.run(**TPE, store_path=store_path, listener=StopInThird())
    with Store(store_path) as store:
        third = next(t for t in store.trials(stopped.run_id) if t["idx"] == 3)
    assert third["status"] == "interrupted"
    resumed = bench.resume(stopped.run_id, store_path=store_path)
    assert resumed.trained == [3, 4, 5]
    again = next(t for t in resumed.trials if t["trial"] == 3)
    assert (again["variant"], again["hparams"]["lr"]) == (third["variant"], third["hparams"]["lr"])
    states = optuna.trial.TrialState
    study = _study(store_path, stopped.run_id)
    told = [t for t in study.trials if t.user_attrs.get(IDX) == 3]
    assert [t.state for t in told] == [states.FAIL, states.COMPLETE]  # the stopped attempt, then the trained one


def test_the_median_pruner_stops_weak_trials_after_their_second_epoch(tiny_plugin, store_path):
    options = {**TPE, "trials": 8, "epochs": [4], "lr": [0.0003, 0.03, 3.0], "pruner": "median"}
    result = bench.run(**options, store_path=store_path)
    pruned = [t for t in result.trials if t["status"] == "pruned"]
    assert pruned, [(t["status"], t["val_loss"]) for t in result.trials]
    for t in pruned:
        assert t["note"].startswith("stopped by Optuna's median pruner after epoch")
        assert 2 <= t["epochs_run"] < 4 and t["test_acc"] is not None  # its best checkpoint measured all the same


@pytest.mark.parametrize(
    "options, message",
    [
        ({"search": "tpe"}, "--search tpe needs --trials N"),
        ({"pruner": "median"}, "--pruner median needs --search tpe"),
        ({"search": "tpe", "trials": 2, "pruner": "hyperband"}, "Invalid value for '--pruner': 'hyperband'"),
        ({"search": "bayes", "trials": 2}, "Invalid value for '--search': 'bayes'"),
        (
            {"search": "tpe", "trials": 2, "pruner": "median", "executor": "ray"},
            "--pruner median is for the local executor: with --executor ray, --scheduler asha",
        ),
    ],
)
def test_bad_search_options_are_one_line(options, message):
    with pytest.raises(UsageError, match="^" + message.replace("[", r"\[").replace("(", r"\(")):
        bench.RunConfig(plugin=["tiny"], **options)


def test_tpe_without_optuna_is_one_line_and_records_nothing(tiny_plugin, store_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(UsageError, match=r"^--search tpe needs Optuna: pip install 'cnnbench\[optuna\]'$"):
        bench.run(**TPE, store_path=store_path)
    assert not store_path.exists()


def test_tpe_from_the_command_line(tiny_plugin, invoke):
    args = ["run", "--plugin", "tiny", "--search", "tpe", "--epochs", "1", "--no-benchmark"]
    result = invoke(*args, "--trials", "3", "--lr", "0.01,0.03")
    assert result.exit_code == 0, result.output
    assert ": up to 3 trials" in result.output  # the planned number, not the none recorded before the first ask
    assert [f"t00{i}/3" in result.output for i in (1, 2, 3)] == [True] * 3 and "/0 " not in result.output
    runs = invoke.json("runs")
    assert "--search tpe" in runs[0]["command"] and runs[0]["trials"] == 3
    result = invoke(*args, "--trials", "5")  # more trials than combinations: each is tried once, and said
    assert result.exit_code == 0 and "--trials 5: the selection has 2 combinations, each tried once" in result.output
    assert invoke.json("runs")[1]["trials"] == 2
