"""What is recorded stays true: damaged and hostile files are refused by name, a failed re-export keeps the verified
one, a run pins its data and stays usable on another machine, a resume takes its config file, deploy commands on
odd trials say why (reliability rounds two and three)."""

import json
import shutil
import sqlite3
from pathlib import Path

import onnx
import pytest
import torch
from conftest import fast_deploy_args

from bench.store import Store

TORCHSCRIPT = ("--exporter", "torchscript")  # the dynamo exporter's files: tests/test_onnx.py

# --- damaged and hostile files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def made_once(tmp_path_factory):
    """One exported, quantized and benchmarked trial, made once for the module; each test gets its own copy."""
    from click.testing import CliRunner

    from bench.cli import cli

    store = tmp_path_factory.mktemp("made") / "runs" / "bench.db"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--arch",
            "cnn_baseline",
            "--epochs",
            "1",
            "--min-runs",
            "5",
            "--min-time",
            "0",
            "--batch-sizes",
            "1",
            "--engines",
            "onnxruntime",  # the records are the point here, not the engines
            "--exporter",
            "torchscript",  # nor the exporter (the dynamo exporter's files: tests/test_onnx.py)
            "--quantize",
            "int8",
            "--store",
            str(store),
        ],
    )
    assert result.exit_code == 0, result.output
    return store.parent


@pytest.fixture
def one_trial(made_once, tmp_path, invoke):
    """A copy of the module's trial (the store keeps paths relative to its folder): each test may damage it."""
    shutil.copytree(made_once, tmp_path / "runs")
    store = tmp_path / "runs" / "bench.db"
    (row,) = invoke.json("report", "--store", store, store=False)
    return store, row


def test_a_truncated_or_replaced_checkpoint_is_refused_by_name(one_trial, invoke):
    store, row = one_trial
    checkpoint = Path(row["checkpoint"])
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    result = invoke("export", "latest", "--store", store, store=False)
    assert result.exit_code == 1 and f"checkpoint {checkpoint} does not match its recorded SHA-256" in result.output
    assert "Traceback" not in result.output


def test_a_damaged_or_missing_onnx_file_is_refused(one_trial, invoke):
    store, row = one_trial
    model = Path(row["onnx"]["path"])
    model.write_bytes(model.read_bytes()[:500])
    result = invoke("benchmark", "latest", "--store", store, "--min-runs", "3", "--min-time", "0", store=False)
    assert result.exit_code == 1 and "changed since it was exported" in result.output
    model.unlink()
    result = invoke("benchmark", "latest", "--store", store, "--min-runs", "3", "--min-time", "0", store=False)
    assert result.exit_code == 1 and f"cannot read {model}" in result.output


def test_run_names_that_would_escape_the_runs_folder_are_refused(one_trial, invoke, tmp_path):
    store, row = one_trial
    db = sqlite3.connect(store)
    db.execute("PRAGMA foreign_keys = OFF")
    db.execute("UPDATE trials SET run_id = '../../escaped' WHERE run_id = ?", (row["run"],))
    db.execute("UPDATE runs SET id = '../../escaped' WHERE id = ?", (row["run"],))
    db.commit()
    db.close()
    for args in (["report", "--out", tmp_path / "reports"], ["export", "latest"]):
        result = invoke(*args, "--store", store, store=False)
        assert result.exit_code == 1 and "could point outside" in result.output, result.output
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "escaped").exists()


def _figures(store: Path) -> tuple:
    """The export, latency figures and variants of the store's one trial."""
    with Store(store) as s:
        (trial,) = s.trials(s.run()["id"])
        trial_id = trial["id"]
        latency = sorted((m["engine"], m["precision"], m["batch_size"], m["p50_ms"]) for m in s.latency_of(trial_id))
        variants = sorted((v["precision"], v["sha256"]) for v in s.variants_of(trial_id))
        return s.export_of(trial_id), latency, variants


def test_a_failed_re_export_keeps_the_verified_export_and_its_figures(one_trial, invoke):
    """A re-export replaces the records only once the new file is verified; figures belong to the file."""
    store, row = one_trial
    model = Path(row["onnx"]["path"])
    data = model.read_bytes()
    export, latency, variants = _figures(store)
    assert export["status"] == "ok" and latency and variants
    result = invoke("export", "latest", "--opset", "30", *TORCHSCRIPT, "--store", store, store=False)
    assert result.exit_code == 1, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "export failed" in error and "previous verified export (opset 18" in error and "are kept" in error
    assert model.read_bytes() == data and _figures(store) == (export, latency, variants)
    # a verified export of other bytes replaces the old one, and the old file's figures go with it
    result = invoke("export", "latest", "--opset", "17", *TORCHSCRIPT, "--store", store, store=False)
    assert result.exit_code == 0, result.output
    export2, latency2, variants2 = _figures(store)
    assert export2["opset"] == 17 and export2["sha256"] != export["sha256"] and latency2 == variants2 == []
    result = invoke("benchmark", "latest", "--store", store, *fast_deploy_args("benchmark"), store=False)
    assert result.exit_code == 0 and _figures(store)[1]


def test_a_run_pins_its_data_a_changed_folder_is_refused_by_export_benchmark_and_resume(tmp_path, invoke):
    from PIL import Image

    folder = tmp_path / "folder"
    rng = torch.Generator().manual_seed(0)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (folder / name).mkdir(parents=True)
        for i in range(40):
            noise = torch.randint(-40, 40, (3,), generator=rng).tolist()
            Image.new("RGB", (12, 12), tuple(c + n for c, n in zip(colour, noise, strict=True))).save(
                folder / name / f"{i}.png"
            )
    store = tmp_path / "bench.db"
    args = ("--store", store)
    result = invoke(
        "run",
        "--arch",
        "cnn_baseline",
        "--dataset",
        f"imagefolder:{folder}",
        "--image-size",
        "12",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-benchmark",
        *args,
        store=False,
    )
    assert result.exit_code == 0, result.output
    with Store(store) as s:
        recorded = s.run()["data"]
    assert recorded["train"] == 64 and recorded["test"] == 16 and len(recorded["fingerprint"]) == 64
    assert invoke("export", "latest", *TORCHSCRIPT, *args, store=False).exit_code == 0  # the same data: fine
    for i in range(30):  # a user adds white images to a class
        Image.new("RGB", (12, 12), (255, 255, 255)).save(folder / "red" / f"white{i}.png")
    for command in (
        ["export", "latest"],
        ["benchmark", "latest"],
        ["quantize", "latest"],
        ["run", "--resume", "latest"],
    ):
        result = invoke(*command, *args, store=False)
        assert result.exit_code == 1, result.output
        (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert "changed since the run recorded it (train 64 -> 88, test 16 -> 22" in error
    for i in range(30):
        (folder / "red" / f"white{i}.png").unlink()
    (folder / "red" / "0.png").write_bytes((folder / "red" / "1.png").read_bytes())  # same count, other pixels
    result = invoke("export", "latest", *args, store=False)
    assert result.exit_code == 1 and "changed since the run recorded it (mean [" in result.output


def test_hidden_files_in_a_class_folder_are_skipped_as_the_cache_key_skips_them(tmp_path):
    from PIL import Image

    from bench.plugins.dataset_loading import load_dataset

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / name / f"{i}.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / ".hidden.png")
    data = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert len(data.train) + len(data.test) == 10
    (tmp_path / "cat" / ".hidden.png").unlink()
    assert len(load_dataset(f"imagefolder:{tmp_path}", image_size=8).train) == len(data.train)


def test_a_run_recorded_on_a_larger_machine_stays_usable_here(one_trial, invoke):
    """Thread counts recorded on a 64-core machine are this machine's CPU count when export, benchmark or resume
    read them; an override is checked against this machine."""
    store, row = one_trial
    db = sqlite3.connect(store)
    (config,) = db.execute("SELECT config FROM runs").fetchone()
    db.execute("UPDATE runs SET config = ?", (json.dumps({**json.loads(config), "threads": 64, "bench_threads": 64}),))
    db.commit()
    db.close()
    for command in (
        ["export", "latest", *TORCHSCRIPT],
        ["benchmark", "latest", *fast_deploy_args("benchmark")],
        ["run", "--resume", "latest"],
    ):
        result = invoke(*command, "--store", store, store=False)
        assert result.exit_code == 0, result.output
    result = invoke("run", "--resume", "latest", "--threads", "1", "--store", store, store=False)
    assert result.exit_code == 0, result.output
    result = invoke("run", "--resume", "latest", "--threads", "4096", "--store", store, store=False)
    assert result.exit_code == 2 and "Invalid value for '--threads'" in result.output


def test_a_config_file_applies_to_a_resume_as_its_options_would(one_trial, invoke, tmp_path):
    store, _ = one_trial
    plan = tmp_path / "plan.toml"
    plan.write_text('plugin = "cnn_dropout"\nepochs = 3\n')
    result = invoke("run", "--config", plan, "--resume", "latest", "--store", store, store=False)
    assert result.exit_code == 2 and "--resume runs the stored plan of its run" in result.output
    assert f"{plan} sets 'epochs'" in result.output or f"{plan} sets 'plugin'" in result.output
    db = sqlite3.connect(store)  # a run stopped before its winner was benchmarked
    db.execute("UPDATE runs SET status = 'interrupted'")
    db.execute("DELETE FROM latency")
    db.commit()
    db.close()
    how = tmp_path / "how.toml"
    how.write_text("no_benchmark = true\n")
    result = invoke("run", "--config", how, "--resume", "latest", "--store", store, store=False)
    assert result.exit_code == 0, result.output
    with Store(store) as s:
        (trial,) = s.trials(s.run()["id"])
        assert s.run()["status"] == "completed" and s.latency_of(trial["id"]) == []


def test_deploy_commands_on_odd_trials_say_why_and_exit_non_zero(one_trial, invoke):
    store, _ = one_trial
    result = invoke("export", "latest", "t9", "--store", store, store=False)
    assert result.exit_code == 2 and "has no trial 't9' (trials: t001..t001)" in result.output  # as an unknown run
    db = sqlite3.connect(store)  # the winner's export failed
    db.execute("UPDATE exports SET status = 'export_failed', note = 'the exporter gave up'")
    db.commit()
    db.close()
    for command in (["quantize", "latest", "--no-benchmark"], ["benchmark", "latest"]):
        result = invoke(*command, "--store", store, store=False)
        assert result.exit_code == 1 and "its ONNX export failed (the exporter gave up)" in result.output


def test_a_figure_of_class_names_no_font_draws_says_so_once(tmp_path, invoke):
    from bench.report.plots import fonts_for

    families, note = fonts_for(["cat", "dog"])
    assert families[0] == "DejaVu Sans" and note is None
    _, note = fonts_for(["\u732b", "\u72ac"])  # CJK: drawn where a font has them, else named once
    from matplotlib import font_manager, ft2font

    has_cjk = any(
        0x732B in ft2font.FT2Font(f.fname).get_charmap()
        for f in font_manager.fontManager.ttflist
        if not f.name.startswith("Last Resort")
    )
    assert (note is None) == has_cjk
    if note:
        assert "no installed font draws" in note and "fonts-noto-cjk" in note


def test_bench_run_leaves_the_callers_random_state_and_threads_as_they_were(tmp_path):
    import bench

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    bench.run(arch=["cnn_baseline"], epochs=[1], no_benchmark=True, threads=1, store_path=tmp_path / "bench.db")
    assert torch.equal(torch.rand(3), expected) and torch.get_num_threads() == threads


def test_int8_of_an_old_opset_export_falls_back_to_dynamic_and_names_no_temporary_file(one_trial, invoke):
    store, _ = one_trial
    assert invoke("export", "latest", "--opset", "7", "--store", store, store=False).exit_code == 0
    (row,) = invoke.json("quantize", "latest", "--no-benchmark", "--store", store, store=False)
    int8 = next(v for v in row["variants"] if v["precision"] == "int8")
    assert int8["status"] == "ok" and "dynamic int8 instead" in int8["note"], int8
    assert "cnnbench-quantize-" not in int8["note"] and "/tmp" not in int8["note"]
    onnx.checker.check_model(onnx.load(int8["path"]), full_check=True)


def test_a_variant_that_fails_when_made_again_leaves_no_earlier_file_behind(one_trial, invoke, monkeypatch):
    """The tool's failure is simulated (a quantizer that gives up); what is checked is what cnnbench does with it."""
    from bench.deploy import steps as deploy
    from bench.deploy.quantize import Variant

    store, row = one_trial
    int8 = Path(row["onnx"]["path"]).parent / "model-int8.onnx"
    assert int8.is_file()
    monkeypatch.setattr(deploy, "make_variants", lambda *a, **k: [Variant("int8", "failed", "the quantizer gave up")])
    result = invoke("quantize", "latest", "--quantize", "int8", "--no-benchmark", "--store", store, store=False)
    assert result.exit_code == 0, result.output
    (variant,) = invoke.json("report", "--store", store, store=False)[0]["variants"]
    assert variant["status"] == "failed" and variant["path"] is None and not int8.exists()


def test_an_image_folder_too_large_for_the_cache_disk_is_refused_before_decoding(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from PIL import Image

    from bench.core.errors import BenchError
    from bench.plugins.dataset_loading import load_dataset

    for name in ("cat", "dog"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8)).save(tmp_path / "images" / name / f"{i}.png")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))  # 1 MB free
    cache = tmp_path / "cache"
    with pytest.raises(
        BenchError, match=r"6 images at 512x512 need 0.0 GB of decode cache in .*, which has 0.0 GB free"
    ):
        load_dataset(f"imagefolder:{tmp_path / 'images'}", image_size=512, cache_dir=cache)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []  # no half-written cache left
    assert len(load_dataset(f"imagefolder:{tmp_path / 'images'}", image_size=8, cache_dir=cache).train) > 0
