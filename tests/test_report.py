"""`bench report`: the markdown report and its figures against the store, on real runs."""

import csv
import io
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FAST_DEPLOY_ARGS
from matplotlib.image import imread

from bench.cli import cli
from bench.store import Store


def _cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    return result


def _table_after(markdown: str, heading: str) -> list[dict]:
    """The first markdown table after ``heading``, as dicts keyed by its header."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    lines = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split(" | ")), strict=True)) for ln in lines[2:]]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default cnn_dropout sweep's three small variants (4 epochs to keep the suite short), two winners
    benchmarked."""
    root = tmp_path_factory.mktemp("report")
    store = root / "runs" / "bench.db"
    _cli(
        "run",
        "--plugin",
        "cnn_dropout",
        "--where",
        "convs_per_block=1",
        "--epochs",
        "4",
        "--top-k",
        "2",
        "--min-runs",
        "20",
        "--min-time",
        "0",
        "--engines",
        "onnxruntime,torch",  # every engine in one report: tests/test_quantize.py
        "--exporter",
        "torchscript",  # the dynamo exporter's files: tests/test_onnx.py
        "--quantize",
        "none",  # the variants' sections: tests/test_quantize.py
        "--store",
        store,
        "-q",
    )
    result = _cli("report", "--store", store, "--out", root / "reports")
    path = re.search(r"Report: (\S+)", result.output.replace("\n", "")).group(1)
    return store, root / "reports", path


def test_report_links_only_existing_pngs_and_shows_every_trial(default_run):
    store, _, path = default_run
    path = Path(path)
    markdown = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert links and all(link.endswith(".png") and (path.parent / link).is_file() for link in links)
    assert {"tradeoff_latency.png", "tradeoff_params.png"} <= set(links)
    assert sum(link.startswith("loss_") for link in links) == 3  # --top 3
    with Store(store) as s:
        trials = s.trials(s.run()["id"])
    board = _table_after(markdown, "## Leaderboard")
    assert sorted(r["trial"].rstrip(" ★") for r in board) == sorted(f"t{t['idx']:03d}" for t in trials)


def test_every_leaderboard_figure_equals_the_stored_value(default_run):
    store, _, path = default_run
    markdown = Path(path).read_text()
    board = {r["trial"].rstrip(" ★"): r for r in _table_after(markdown, "## Leaderboard")}
    with Store(store) as s:
        run = s.run()
        for t in s.trials(run["id"]):
            row = board[f"t{t['idx']:03d}"]
            assert row["train %"] == f"{100 * t['train_acc']:.2f}"
            assert row["val %"] == f"{100 * t['val_acc']:.2f}"
            assert row["test %"] == f"{100 * t['test_acc']:.2f}"
            low, high = map(float, row["test 95% interval"].split("-"))  # issue 40: how far the truth may be
            normal = 2 * 1.96 * 100 * (t["test_acc"] * (1 - t["test_acc"]) / t["split"]["test"]) ** 0.5
            assert low < 100 * t["test_acc"] < high and 0.8 * normal < high - low < 1.25 * normal
            assert row["params"] == str(t["params"])
            assert row["MFLOPs"] == f"{t['flops'] / 1e6:.2f}"
            assert row["epochs (best/run)"] == f"{t['best_epoch']}/{t['epochs_run']}"
            assert (row["optimizer"], row["lr"], row["batch"]) == (
                t["hparams"]["optimizer"],
                f"{t['hparams']['lr']:g}",
                str(t["hparams"]["batch_size"]),
            )
            exp = s.export_of(t["id"])
            latency = {
                (m["engine"], m["provider"], m["batch_size"]): m
                for m in s.latency_of(t["id"])
                if m["precision"] == "fp32"
            }
            if exp is None:
                assert row["ONNX test %"] == row["ONNX CPU p50 batch 1 (ms)"] == "-"
                continue
            assert row["ONNX test %"] == f"{100 * exp['onnx_test_acc']:.2f}"
            b1 = latency[("onnxruntime", "CPUExecutionProvider", 1)]
            b64 = latency[("onnxruntime", "CPUExecutionProvider", 64)]
            assert row["ONNX CPU p50 batch 1 (ms)"] == f"{b1['p50_ms']:.3f}"
            assert row["ONNX CPU images/s (batch 64)"] == f"{b64['throughput']:.0f}"
        ranks = [int(r["rank"]) for r in board.values()]
        accs = [float(r["test %"]) for r in board.values()]
        assert ranks == sorted(ranks) and accs == sorted(accs, reverse=True)


def test_top_trial_per_class_accuracy_and_confusions_come_from_its_confusion_matrix(default_run):
    store, _, path = default_run
    markdown = Path(path).read_text()
    top = _table_after(markdown, "## Leaderboard")[0]["trial"].rstrip(" ★")
    section = markdown.split(f"### 1. {top}:", 1)[1].split("\n### ", 1)[0]
    with Store(store) as s:
        trial = next(t for t in s.trials(s.run()["id"]) if f"t{t['idx']:03d}" == top)
    matrix = trial["confusion"]
    per_class = section.split("| class | test accuracy % | test images |", 1)[1]  # the table with that header
    lines = itertools.takewhile(lambda ln: ln.startswith("|"), per_class.splitlines()[2:])
    rows = [ln.strip("|").split(" | ") for ln in lines]
    assert len(rows) == 10
    for name, acc, n in rows:
        i = int(name.strip())
        assert acc.strip() == f"{100 * matrix[i][i] / sum(matrix[i]):.2f}" and int(n) == sum(matrix[i])
    off = [(matrix[i][j] / sum(matrix[i]), i, j) for i in range(10) for j in range(10) if i != j and matrix[i][j]]
    if off:
        share, i, j = max(off)
        assert f"{i} -> {j} {100 * share:.2f}%" in section


def test_figures_are_real_images_with_content(default_run):
    _, reports, path = default_run
    for png in Path(path).parent.glob("*.png"):
        pixels = imread(png)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 400, png.name
        assert np.asarray(pixels).std() > 0.05, f"{png.name} looks blank"


def test_csv_and_json_formats_carry_every_trial(default_run):
    store = default_run[0]
    rows = list(csv.DictReader(io.StringIO(_cli("report", "--store", store, "--format", "csv").stdout)))
    records = json.loads(_cli("report", "--store", store, "--json").stdout)
    assert json.loads(_cli("report", "--store", store, "--format", "json").stdout) == records  # the hidden alias
    assert len(rows) == len(records) == 3
    assert {r["trial"] for r in rows} == {str(r["trial"]) for r in records}
    assert all(r["diagnosis"] for r in records) and [r["test_rank"] for r in records] == [1, 2, 3]
    assert all(low < r["test_acc"] < high for r in records for low, high in [r["test_acc_ci95"]])


def test_diverged_and_overfitting_trials_are_diagnosed_on_real_data(tmp_path):
    store = tmp_path / "bench.db"
    common = [
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
        "--store",
        store,
        "-q",
        "--no-benchmark",
    ]
    # A small training set, no dropout and 30 epochs: the validation loss turns up while the training loss falls.
    _cli(
        "run",
        *common,
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
    )
    _cli("run", *common, "--optimizer", "sgd", "--lr", "50", "--epochs", "3")
    records = json.loads(_cli("report", "--all", "--store", store, "--json").stdout)
    with Store(store) as s:
        overfit = next(r for r in records if r["hparams"]["lr"] == 3e-3)
        history = s.history(next(t["id"] for t in s.trials(overfit["run"])))
    val = [h["val_loss"] for h in history]
    best = 1 + val.index(min(val))
    assert best < 25 and overfit["best_epoch"] == best
    assert any(
        d.startswith(f"Overfitting from epoch {best}:") and f"the checkpoint of epoch {best} was kept" in d
        for d in overfit["diagnosis"]
    )
    diverged = next(r for r in records if r["hparams"]["lr"] == 50)
    assert diverged["status"] == "diverged"
    assert diverged["diagnosis"][0].startswith("Training diverged") and "learning rate (50)" in diverged["diagnosis"][0]
    # The markdown over both runs says the same.
    result = _cli("report", "--all", "--store", store, "--out", tmp_path / "reports")
    path = re.search(r"Report: (\S+)", result.output.replace("\n", "")).group(1)
    markdown = Path(path).read_text()
    assert "combined-" in path
    board = _table_after(markdown, "## Leaderboard")
    assert any(r["diagnosis"].startswith(f"overfitting from {best}") for r in board)
    assert any(r["status"] == "diverged" and r["diagnosis"] == "diverged" for r in board)
    assert board[-1]["status"] == "diverged" and board[-1]["rank"] == "-"


def test_report_of_an_unknown_run_is_an_error(default_run):
    result = CliRunner().invoke(cli, ["report", "nope", "--store", str(default_run[0])])
    assert result.exit_code == 2 and "unknown run 'nope'" in result.output


def test_time_to_accuracy_is_read_from_the_recorded_epochs(tmp_path, tiny_plugin):
    store = tmp_path / "bench.db"
    _cli(
        "run",
        "--plugin",
        tiny_plugin,
        "--epochs",
        "4",
        "--lr",
        "0.003,0.03",
        "--where",
        "width=8",
        "--schedule",
        "cosine",
        "-q",
        "--no-benchmark",
        "--store",
        store,
    )
    with Store(store) as s:
        run = s.run()
        histories = {f"t{t['idx']:03d}": s.history(t["id"]) for t in s.trials(run["id"])}
    for target, chosen in ((None, True), (0.5, False)):
        extra = [] if target is None else ["--target-acc", 100 * target]
        _cli("report", "--store", store, "--out", tmp_path / "rep", *extra)
        md = (tmp_path / "rep" / run["id"] / "report.md").read_text()
        if chosen:  # the highest validation accuracy that both trials reached, whole percent
            target = min(max(h["val_acc"] for h in hs) for hs in histories.values()) * 100 // 1 / 100
        label = f"time to {100 * target:.2f}% val (s)"
        rows = {r["trial"].split()[0]: r for r in _table_after(md, "## Time to accuracy")}
        assert set(rows) == set(histories)
        for name, history in histories.items():
            first = next((h for h in history if h["val_acc"] >= target), None)
            assert rows[name][label] == (f"{first['elapsed_s']:.1f}" if first else "not reached")
            assert rows[name]["training s"] == f"{history[-1]['elapsed_s']:.1f}"
            assert [h["elapsed_s"] for h in history] == sorted(h["elapsed_s"] for h in history)
        assert ("floored to a whole percent" in md) == chosen
        assert "| epoch | lr (first step) |" in md  # every epoch's learning rate, for the top trials
        assert imread(tmp_path / "rep" / run["id"] / "time_to_accuracy.png").shape[0] > 100


def test_runs_on_different_test_sets_are_never_ranked_together(invoke, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("COLUMNS", "400")  # the terminal table on one line per trial
    folder = tmp_path / "folder"
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (folder / name).mkdir(parents=True)
        for i in range(30):
            Image.new("RGB", (12, 12), tuple(min(255, c + 3 * i) for c in colour)).save(folder / name / f"{i}.png")
    quick = ("--arch", "cnn_baseline", "--epochs", "1", "--batch-size", "16", "--no-benchmark", "-q")
    assert invoke("run", *quick).exit_code == 0
    assert invoke("run", *quick, "--dataset", f"imagefolder:{folder}", "--image-size", "12").exit_code == 0
    runs = [r["id"] for r in invoke.json("runs")]
    rows = invoke.json("report", *runs)
    assert sorted(r["test_rank"] for r in rows) == [1, 1]  # each first on its own test set
    result = invoke("report", *runs, "--out", tmp_path / "reports")
    assert result.exit_code == 0, result.output
    assert "test set" in result.output and f"{runs[0]}/t001" in result.output  # the run beside the trial
    report = next((tmp_path / "reports").glob("combined-*/report.md")).read_text()
    assert "These runs test on 2 different test sets" in report
    assert report.count("\n## Leaderboard") == 2 and "\n# digits (" in report and "\n# imagefolder:" in report


def test_a_folder_whose_test_images_changed_is_another_test_set(invoke, tmp_path):
    """Same name, same number of test images, other pixels: `bench compare` refuses, the report ranks each apart."""
    from PIL import Image

    folder = tmp_path / "folder"

    def draw(shift):
        for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            (folder / name).mkdir(parents=True, exist_ok=True)
            for i in range(20):
                pixel = tuple(min(255, c + 3 * i + shift) for c in colour)
                Image.new("RGB", (8, 8), pixel).save(folder / name / f"{i}.png")

    quick = ("--arch", "cnn_baseline", "--epochs", "1", "--batch-size", "16", "--no-benchmark", "-q")
    quick += ("--dataset", f"imagefolder:{folder}", "--image-size", "8")
    draw(0)
    assert invoke("run", *quick).exit_code == 0
    draw(5)
    assert invoke("run", *quick).exit_code == 0
    a, b = (r["id"] for r in invoke.json("runs"))
    result = invoke("compare", a, b)
    assert result.exit_code == 2 and "test on different sets" in result.output, result.output
    assert sorted(r["test_rank"] for r in invoke.json("report", a, b)) == [1, 1]
    assert invoke("report", a, b, "--out", tmp_path / "reports").exit_code == 0
    report = next((tmp_path / "reports").glob("combined-*/report.md")).read_text()
    assert report.count("\n## Leaderboard") == 2 and "These runs test on 2 different test sets" in report


def test_every_swept_axis_is_a_column_of_every_trial_table(invoke, tmp_path, monkeypatch):
    """Trials that differ only in axes beside optimizer, lr and batch (here label smoothing and weight decay) read
    differently in the trial lines, the leaderboard, the configuration tables and the report."""
    monkeypatch.setenv("COLUMNS", "300")
    args = ("run", "--arch", "cnn_baseline", "--epochs", "1", "--no-benchmark", "--label-smoothing", "0,0.1")
    result = invoke(*args, "--weight-decay", "0,0.001")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("✓ t00")]
    assert len(lines) == 4 and len({line.split(": ")[0].split(" ", 2)[2] for line in lines}) == 4
    assert "lr=0.01 batch=64 weight_decay=0.001 label_smoothing=0.1:" in result.output
    header = next(line for line in result.output.splitlines() if "architecture" in line and "batch" in line)
    assert "label_smoothing" in header and "weight_decay" in header and "momentum" not in header
    assert invoke("report", "--out", tmp_path).exit_code == 0
    text = next(tmp_path.glob("*/report.md")).read_text()
    board = text.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    assert "| weight_decay | label_smoothing |" in board and "| momentum |" not in board
    assert re.search(r"batch 64, weight_decay=0(\.001)? label_smoothing=0(\.1)?\.", text)  # the top trials
    seeds = invoke(*args, "--seed", "0,1")  # configurations over seeds: the swept axis, not the seed
    assert seeds.exit_code == 0
    header = next(line for line in seeds.output.splitlines() if "architecture" in line and "batch" in line)
    assert "label_smoothing" in header and "seed" not in header


def test_compare_says_whether_an_accuracy_difference_over_seeds_is_significant(invoke, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "400")
    seeds = ("--arch", "cnn_baseline", "--epochs", "2", "--no-benchmark", "-q", "--seed", "0,1,2")
    for lr in ("0.05", "0.05", "0.0001"):  # the same twice, then a rate far too low to learn in 2 epochs
        assert invoke("run", *seeds, "--lr", lr).exit_code == 0
    a, again, slow = (r["id"] for r in invoke.json("runs"))
    (same,) = invoke.json("compare", a, again)
    assert same["test_acc_significance"]["significant"] is False and same["test_acc_significance"]["n_a"] == 3
    (worse,) = invoke.json("compare", a, slow)
    assert worse["test_acc_change"] < 0 and worse["test_acc_significance"]["significant"] is True
    assert worse["test_acc_significance"]["p_value"] < 0.05
    assert "significant (p=" in invoke("compare", a, slow).output
    # the combined report of the three says the same of each against the first (issue 37)
    assert invoke("report", a, again, slow, "--out", tmp_path).exit_code == 0
    against = next(tmp_path.glob("combined-*/report.md")).read_text().split("## Run against run", 1)[1]
    first, second = against.split("### B = ")[1:3]
    assert "| not significant (p=" in first and "| significant (p=" in second


@pytest.mark.slow  # eight repetitions in fresh worker processes, timed: run apart, one test at a time
def test_compare_says_whether_a_latency_difference_is_significant(invoke, monkeypatch):
    """Issue 37: the same files measured again in another run are not significantly slower; a bigger variant of the
    same architecture (ResNet-20 x32 against ResNet-8 x16: 3-5x the time a call) is significantly slower. Each
    repetition in a fresh worker process, its p50 from 300 calls."""
    monkeypatch.setenv("COLUMNS", "400")
    small = ("--arch", "resnet", "--where", "depth=8", "--where", "width=16")
    timing = ("--warmup", "20", "--min-runs", "300")  # after FAST_DEPLOY_ARGS: the later flags win
    common = ("--epochs", "1", "--limit-train", "256", "--seed", "0", *FAST_DEPLOY_ARGS, *timing, "-q")
    big = ("--arch", "resnet", "--where", "depth=20", "--where", "width=32")
    for arch, repeat in ((small, "3"), (small, "2"), (big, "3")):  # Welch with 2 against 2 has 1-2 degrees of freedom
        assert invoke("run", *arch, *common, "--repeat", repeat).exit_code == 0
    a, again, big = (r["id"] for r in invoke.json("runs"))
    (same,) = invoke.json("compare", a, again)
    verdict = same["latency_significance"]
    assert same["differs"] == {} and verdict["n_a"] >= 2 and verdict["n_b"] == 2 and verdict["margin"] == 0.05
    assert verdict["significant"] is False, same
    (bigger,) = invoke.json("compare", a, big)
    assert bigger["differs"]["depth"] == [8, 20] and bigger["differs"]["width"] == [16, 32]
    slower = bigger["latency_significance"]
    assert slower["significant"] is True and slower["change"] > slower["margin"], bigger
    assert "| not significant (p=" in invoke("compare", a, again).output.replace("│", "|")
    assert "| significant (p=" in invoke("compare", a, big).output.replace("│", "|")


def test_welch_needs_two_independent_values_a_side():
    from bench.results.significance import welch, wilson

    # the Wilson score interval of 250 of 500 (statsmodels' proportion_confint(250, 500, method="wilson"))
    assert [round(x, 4) for x in wilson(0.5, 500)] == [0.4563, 0.5437] and wilson(None, 500) is None

    assert welch([1.0, 1.1, 0.9], [2.0, 2.1, 1.9]).significant is True
    assert welch([1.0, 1.2, 0.9, 1.1], [1.05, 0.95, 1.15, 1.0]).significant is False
    verdict = welch([1.0], [1.0, 1.1], "repetitions")
    assert (
        verdict.significant is None and verdict.text() == "not testable (1 and 2 repetitions: 2 or more on each side)"
    )
    assert welch([0.5, 0.5], [0.5, 0.5]).significant is False and welch([0.5, 0.5], [0.6, 0.6]).significant is True
    # a latency margin: 3% slower with no doubt is still not significant at a 5% margin; 30% slower is
    drift = welch([1.0, 1.001, 0.999], [1.03, 1.031, 1.029], "repetitions", margin=0.05)
    assert drift.significant is False and drift.p_value < 0.05 and drift.change == pytest.approx(0.03)
    assert drift.text().endswith("within the 5% margin)")
    assert welch([1.0, 1.01, 0.99], [1.3, 1.31, 1.29], "repetitions", margin=0.05).significant is True


def test_compare_puts_two_runs_side_by_side_per_variant(invoke, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    quick = ("--arch", "cnn_baseline", "--epochs", "2", *FAST_DEPLOY_ARGS, "-q")
    assert invoke("run", *quick, "--lr", "0.01").exit_code == 0
    assert invoke("run", *quick, "--lr", "0.03", "--seed", "0,1").exit_code == 0
    a, b = (r["id"] for r in invoke.json("runs"))
    (row,) = invoke.json("compare", a, b)
    assert row["architecture"] == "cnn_baseline" and row["differs"] == {"lr": [0.01, 0.03]}
    assert row["a"]["test_acc"]["n"] == 1 and row["b"]["test_acc"]["n"] == 2  # B's two seeds, summarized
    assert row["test_acc_change"] == pytest.approx(row["b"]["test_acc"]["mean"] - row["a"]["test_acc"]["mean"])
    assert row["a"]["latency"]["p50_ms"] > 0 and row["b"]["latency"]["p50_ms"] > 0
    both_quiet = not row["a"]["latency"]["noisy"] and not row["b"]["latency"]["noisy"]
    assert (row["latency_ratio"] is not None) == both_quiet
    result = invoke("compare", a, b)
    assert result.exit_code == 0 and "lr=0.01->0.03" in result.output and "(n=2)" in result.output
    # one seed on A's side, one repetition on each: said, not tested
    assert row["test_acc_significance"]["significant"] is None and "1 and 2 seeds" in result.output
    assert "not testable (1 and 1 quiet repetitions" in result.output or row["a"]["latency"]["noisy"]
    result = invoke("compare", a, "nope")
    assert result.exit_code == 2 and "unknown run 'nope'" in result.output
