"""ONNX export and inference benchmark on real trained models, real files and real onnxruntime sessions."""

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper
from torch import nn

import bench
from bench.cli import cli
from bench.deploy.export import check_parity, read_metadata
from bench.deploy.trials import load_model
from bench.plugins import manager as plugins
from bench.plugins.dataset_loading import load_dataset
from bench.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


MIN_TIME = 0.05


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A real sweep of two architectures on digits, its winners exported and benchmarked with the defaults but
    for the time per measurement (MIN_TIME, not 1 s: 8 measurements) and the int8/fp16 variants (tests/test_quantize.py
    has them)."""
    store = tmp_path_factory.mktemp("deployed") / "bench.db"
    result = _cli(
        "run",
        "--arch",
        "cnn_baseline",
        "--arch",
        "cnn_dropout",
        "--epochs",
        "2",
        "--min-time",
        MIN_TIME,
        "--quantize",
        "none",
        "--engines",
        "onnxruntime,torch",  # OpenVINO's own measurements: tests/test_quantize.py
        "--store",
        store,
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(_cli("report", "--json", "--store", store).stdout)
    return store, rows


def _raw_test_set(run_seed=0, val_ratio=0.2):
    data = load_dataset("digits")
    test = data.split(val_ratio, run_seed).test
    return test.images.numpy(), test.labels.numpy()


def test_each_winner_has_an_onnx_file_whose_accuracy_plain_onnxruntime_reproduces(deployed):
    store, rows = deployed
    winners = [r for r in rows if r["winner"]]
    assert {r["architecture"] for r in winners} == {"cnn_baseline", "cnn_dropout"}
    assert all(r["onnx"] is None for r in rows if not r["winner"])
    raw, labels = _raw_test_set()
    for r in winners:
        exp = r["onnx"]
        assert exp["status"] == "ok" and exp["path"].endswith(f"t{r['trial']:03d}/model.onnx")
        # Independently of cnnbench: onnxruntime alone, preprocessing from the file's own metadata.
        session = ort.InferenceSession(exp["path"], providers=["CPUExecutionProvider"])
        meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
        mean, std = (np.array(meta[k], np.float32).reshape(1, -1, 1, 1) for k in ("mean", "std"))
        x = ((raw * meta["pixel_scale"] - mean) / std).astype(np.float32)
        predictions = session.run(None, {"input": x})[0].argmax(1)
        assert float((predictions == labels).mean()) == exp["onnx_test_acc"]
        assert exp["onnx_test_acc"] == pytest.approx(exp["torch_test_acc"], abs=1 / len(labels))
        assert exp["torch_test_acc"] == r["test_acc"]
        assert exp["max_abs_diff"] <= exp["tolerance"] == 1e-3 and exp["top1_agreement"] == 1.0
        assert exp["parity_images"] == len(labels)
        assert exp["opset"] == 18 and "torch.onnx" in exp["exporter"]
        assert exp["flops"] > 0 and exp["size_bytes"] == Path(exp["path"]).stat().st_size


def test_onnx_file_is_checked_self_describing_and_has_a_dynamic_batch(deployed):
    _, rows = deployed
    r = next(r for r in rows if r["winner"] and r["architecture"] == "cnn_dropout")
    path = r["onnx"]["path"]
    onnx.checker.check_model(onnx.load(path), full_check=True)
    meta = read_metadata(path)
    assert meta["classes"] == [str(i) for i in range(10)]
    assert meta["input_shape"] == [1, 8, 8] and meta["pixel_scale"] == 1 / 16
    assert len(meta["mean"]) == len(meta["std"]) == 1
    assert meta["channel_order"] == "grayscale" and meta["resize"] == "none: the dataset's images are 8x8"
    assert meta["architecture"] == "cnn_dropout" and meta["trial"] == f"{r['run']}/t{r['trial']:03d}"
    assert meta["variant"] == json.loads(json.dumps(r["variant"]))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for n in (1, 7, 130):
        assert session.run(None, {"input": np.zeros((n, 1, 8, 8), np.float32)})[0].shape == (n, 10)


def test_latency_rows_have_enough_runs_ordered_percentiles_and_their_method(deployed):
    _, rows = deployed
    for r in (r for r in rows if r["winner"]):
        latency = r["latency"]
        keys = {(m["engine"], m["provider"], m["batch_size"]) for m in latency}
        expected = {(e, p, b) for e, p in [("onnxruntime", "CPUExecutionProvider"), ("torch", "cpu")] for b in (1, 64)}
        assert expected <= keys
        for m in latency:
            if m["status"] != "ok":
                continue
            assert m["n"] >= 100 and m["total_s"] >= MIN_TIME  # the default runs, and the time asked for
            assert m["min_ms"] <= m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"] <= m["max_ms"]
            assert m["throughput"] == pytest.approx(m["batch_size"] / m["mean_ms"] * 1000)
            assert m["session_ms"] > 0 and m["first_ms"] > 0 and m["warmup"] == 10
            assert "linear interpolation" in m["method"]["percentiles"]
            assert m["method"]["intra_op_threads"] >= 1
            if m["engine"] == "onnxruntime":  # auto: the faster level in the probe is the one measured
                probe = m["method"]["graph_optimization_probe_p50_ms"]
                assert set(probe) == {"extended", "all"}
                assert m["method"]["graph_optimization"] == min(probe, key=probe.get)
    with Store(deployed[0]) as store:
        trial = next(t for t in store.trials(rows[0]["run"]) if t["idx"] == rows[0]["trial"])
        stored = store.latency_of(trial["id"])
        assert all(len(m["samples"]) == m["n"] for m in stored if m["status"] == "ok")


def test_readme_onnx_example_runs_as_written(deployed, capsys):
    _, rows = deployed
    path = next(r for r in rows if r["winner"])["onnx"]["path"]
    readme = (ROOT / "README.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.+?)```", readme, flags=re.S) if "onnxruntime" in c]
    assert len(code.strip().splitlines()) <= 10
    exec(code.replace("runs/RUN/t003/model.onnx", path), {})
    printed = capsys.readouterr().out
    assert re.fullmatch(r"\[('\d', ){7}'\d'\]\n", printed)


def test_the_report_says_what_to_ship_and_bench_predict_runs_it_as_the_readme_does(deployed, tmp_path):
    """Per target measured (ONNX Runtime and PyTorch on the CPU), the fastest model within the accepted loss, with
    its file and the command that loads it; `bench predict` classifies image files with it, exactly as the README's
    onnxruntime snippet does on the same pixels."""
    from PIL import Image

    store, rows = deployed
    assert _cli("report", "--store", store, "--out", tmp_path / "rep").exit_code == 0
    text = next((tmp_path / "rep").glob("*/report.md")).read_text()
    ship = text.split("## What to ship", 1)[1].split("\n## ", 1)[0]
    table = [line for line in ship.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split(" | ")[0] for line in table] == ["| onnxruntime on cpu", "| torch on cpu"]
    ort_row = table[0]
    assert "`bench predict " in ort_row and "model.onnx`" in ort_row and "--engine onnxruntime" in ort_row
    digits = load_dataset("digits")
    folder = tmp_path / "images"
    folder.mkdir()
    raw = digits.test.images[:6].numpy()  # 0..16: an 8-bit image file holds them as 0..255
    for i, image in enumerate(raw):
        Image.fromarray((image[0].astype(np.int32) * 255 // 16).astype(np.uint8)).save(folder / f"{i}.png")
    result = _cli("predict", "latest", folder, "--json", "--store", store)
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.stdout)
    assert [Path(p["image"]).name for p in predicted] == [f"{i}.png" for i in range(6)]
    shipped = ort_row.split("`")[1]  # the recommended file: the README's snippet on the same pixels
    session = ort.InferenceSession(str(Path(store).parent / shipped))
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    pixels = np.stack([np.asarray(Image.open(folder / f"{i}.png"))[None] for i in range(6)]) / 255.0
    mean, std = (np.array(meta[k], np.float32).reshape(1, -1, 1, 1) for k in ("mean", "std"))
    logits = session.run(None, {"input": ((pixels - mean) / std).astype(np.float32)})[0]
    assert [p["class"] for p in predicted] == [meta["classes"][i] for i in logits.argmax(1)]
    assert all(abs(sum(x for _, x in p["top"]) - 1) < 0.5 and p["probability"] == p["top"][0][1] for p in predicted)
    torch_said = json.loads(
        _cli("predict", "latest", folder / "0.png", "--engine", "torch", "--json", "--store", store).stdout
    )
    assert torch_said[0]["class"] == predicted[0]["class"]  # the checkpoint in PyTorch agrees with its export
    missing = _cli("predict", "latest", tmp_path / "nothing.png", "--store", store)
    assert missing.exit_code == 2 and "no such image file or folder" in missing.output
    unmade = _cli("predict", "latest", folder, "--precision", "int8", "--store", store)
    assert unmade.exit_code == 1 and "cannot run t00" in unmade.output and "int8" in unmade.output


def test_the_fastest_model_within_the_accepted_loss_is_recommended_counted_in_images():
    from types import SimpleNamespace

    from bench.results.recommend import recommend

    def timed(precision, p50):
        row = {"engine": "onnxruntime", "provider": "CPUExecutionProvider", "batch_size": 1, "repeat": 1}
        return {**row, "precision": precision, "status": "ok", "p50_ms": p50, "noisy": False}

    def evaluated(precision, acc):
        return {"engine": "onnxruntime", "precision": precision, "status": "ok", "test_acc": acc}

    trial = {"idx": 1, "test_acc": 0.44, "checkpoint": "r/t001/best.pt"}
    export = {"path": "r/t001/model.onnx"}
    variants = [
        {"precision": p, "path": f"r/t001/model-{p}.onnx", "status": "ok", "test_acc": None} for p in ("int8", "fp16")
    ]
    entry = SimpleNamespace(
        run={"id": "r"},
        trial=trial,
        export=export,
        variants=variants,
        latency=[timed("fp32", 2.0), timed("int8", 0.5), timed("fp16", 1.0)],
        evaluations=[evaluated("fp32", 0.44), evaluated("int8", 0.43), evaluated("fp16", 0.44)],
    )
    (choice,) = recommend([entry], 1.0, 100)  # int8 loses exactly 1 point of 100 images: allowed
    assert (choice.precision, choice.file, choice.best_acc) == ("int8", "r/t001/model-int8.onnx", 0.44)
    (choice,) = recommend([entry], 0.5, 100)  # ... not within half a point: fp16, as accurate as fp32 and faster
    assert choice.precision == "fp16" and choice.command().startswith("bench predict r IMAGES... --trial t001")


# --- failures: corrupted files, models that cannot be exported, CUDA without a GPU --------------------


def test_parity_catches_a_weight_changed_after_export(tiny_run, store_path, tmp_path):
    (row,) = tiny_run.json("export", "latest")
    assert row["onnx"]["status"] == "ok"
    model_proto = onnx.load(row["onnx"]["path"])
    weights = max(model_proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    changed = numpy_helper.to_array(weights).copy()
    changed.flat[0] += 0.5
    weights.CopyFrom(numpy_helper.from_array(changed, weights.name))
    onnx.save(model_proto, tmp_path / "corrupt.onnx")
    with Store(store_path) as store:
        run = store.run()
        model = load_model(store, run, store.trials(run["id"])[0])
    data = load_dataset("digits")
    from bench.data.splits import Normalizer

    images = Normalizer(data)(data.test.images)
    assert check_parity(model, row["onnx"]["path"], images).ok
    bad = check_parity(model, tmp_path / "corrupt.onnx", images)
    assert not bad.ok and bad.max_abs_diff > 1e-4 and "tolerance" in bad.note
    # The same change in the exported file itself: the benchmark refuses it rather than time a wrong model.
    onnx.save(model_proto, row["onnx"]["path"])
    result = tiny_run("benchmark", "latest", "1", "--min-runs", "3", "--min-time", "0")
    assert result.exit_code == 1 and "changed since it was exported" in result.output


def test_tolerance_beyond_the_measured_difference_fails_the_export_and_skips_the_benchmark(invoke):
    # A ResNet: onnxruntime folds batch norm into the convolutions, so its logits differ from PyTorch's in the last
    # bits (the tiny test CNN's can match exactly, leaving no tolerance to fail).
    args = ("--arch", "resnet", "--where", "depth=8", "--where", "width=16", "--epochs", "1", "--no-benchmark", "-q")
    assert invoke("run", *args).exit_code == 0
    result = invoke("benchmark", "latest", "--tolerance", "0", "--min-runs", "3", "--min-time", "0", "--json")
    # Asked for by name, a trial that cannot be benchmarked is an error saying why and what changes it (issue 26).
    assert result.exit_code == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "not benchmarked" in error and "--tolerance" in error
    (row,) = json.loads(result.stdout)
    exp = row["onnx"]
    assert exp["max_abs_diff"] > 0
    assert exp["status"] == "parity_failed" and "tolerance 0" in exp["note"] and row["latency"] == []


@torch.library.custom_op("cnnbench_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    """An operator with no ONNX mapping in either exporter, as a third-party layer might be."""
    return x * 2


@mystery.register_fake
def _(x):
    return torch.empty_like(x)


mystery.register_autograd(lambda ctx, grad: grad * 2)


class MixedPlugin:
    @bench.hookimpl
    def register_architectures(self, register):
        def exportable(shape, classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], classes))

        class Unexportable(nn.Module):
            def __init__(self, shape, classes):
                super().__init__()
                self.fc = nn.Linear(shape[0] * shape[1] * shape[2], classes)

            def forward(self, x):
                return self.fc(mystery(x).flatten(1))

        register("mixed_ok", exportable, variants={})
        register("mixed_custom_op", Unexportable, variants={})


def test_a_model_that_cannot_be_exported_is_recorded_and_the_others_go_on(invoke):
    plugins.register_in_process(MixedPlugin(), name="mixed")
    try:
        result = invoke(
            "run",
            "--plugin",
            "mixed",
            "--epochs",
            "1",
            "--min-runs",
            "3",
            "--min-time",
            "0",
            "--batch-sizes",
            "1",
            "--engines",
            "onnxruntime,torch",
        )
        assert result.exit_code == 0, result.output
        rows = {r["architecture"]: r for r in invoke.json("report")}
    finally:
        plugins.unregister_in_process("mixed")
    failed, ok = rows["mixed_custom_op"]["onnx"], rows["mixed_ok"]["onnx"]
    assert failed["status"] == "export_failed" and "cnnbench_test" in failed["note"] and failed["path"] is None
    assert rows["mixed_custom_op"]["latency"] == []
    assert ok["status"] == "ok" and {m["engine"] for m in rows["mixed_ok"]["latency"]} == {"onnxruntime", "torch"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: CUDA is measured, not refused")
def test_cuda_requested_without_a_gpu_is_reported_with_its_reason(tiny_run):
    quick = ("--min-runs", "3", "--min-time", "0", "--exporter", "torchscript")  # the providers are the point
    (row,) = tiny_run.json("benchmark", "latest", "--providers", "cuda", *quick)
    cuda = [m for m in row["latency"] if m["provider"] in ("CUDAExecutionProvider", "cuda")]
    assert {m["engine"] for m in cuda} == {"onnxruntime", "torch"} and len(cuda) == 4
    for m in cuda:
        assert m["status"] == "unavailable" and m["n"] is None and m["p50_ms"] is None
        assert "CUDA" in m["note"]
    assert not any(m["provider"] == "CPUExecutionProvider" for m in row["latency"])


@pytest.mark.parametrize("ref", ["t009", "²", "٣"])  # superscript and Arabic-Indic digits pass str.isdigit()
def test_export_names_a_trial_that_does_not_exist(tiny_run, ref):
    result = tiny_run("export", "latest", ref)
    assert result.exit_code == 2 and f"has no trial '{ref}'" in result.output  # a name typed, as a run's


@pytest.mark.parametrize("opset", [13, 17])
def test_the_requested_opset_is_the_files_opset(tiny_run, opset):
    """The dynamo exporter writes opset 18 or later: --opset is applied by conversion, and recorded as written."""
    from bench.deploy.export import file_opset

    (row,) = tiny_run.json("export", "latest", "--opset", opset)
    assert row["onnx"]["status"] == "ok" and row["onnx"]["opset"] == opset
    assert file_opset(onnx.load(row["onnx"]["path"])) == opset


def test_export_quantize_and_benchmark_normalize_the_test_images_a_chunk_at_a_time(tiny_run, monkeypatch):
    """The test split is never made float32 all at once (four times its size): digits' 359 test images are read
    in chunks of at most 256, and the figures are those of the whole split."""
    from bench.data.splits import Normalizer
    from bench.deploy import export

    monkeypatch.setattr(export, "PARITY_IMAGES", 100)  # the parity check's few images: fewer than a chunk here
    sizes = []
    call = Normalizer.__call__
    monkeypatch.setattr(Normalizer, "__call__", lambda self, images: sizes.append(len(images)) or call(self, images))
    options = ("--quantize", "int8", "--calibration-images", "64", "--engines", "onnxruntime", "--batch-sizes", "1")
    options += ("--min-runs", "3", "--min-time", "0")
    (row,) = tiny_run.json("quantize", "latest", *options)
    assert row["onnx"]["status"] == "ok" and sizes and max(sizes) <= 256 and 359 not in sizes
    assert sizes.count(256) >= 3 and sizes.count(359 - 256) >= 3  # export, the int8 check, the engine: all 359
    correct = row["onnx"]["onnx_test_acc"] * 359
    assert abs(correct - round(correct)) < 1e-6  # measured on the whole split
