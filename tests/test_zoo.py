"""The torchvision model zoo as a built-in plugin: every model builds for CIFAR-size and MNIST-size inputs, and one
model per family type trains, exports with parity and is benchmarked through the whole pipeline."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.plugins.manager import get_registry

ZOO = [
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "shufflenet_v2_x1_0",
    "regnet_y_400mf",
    "squeezenet1_1",
    "convnext_tiny",
]


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)], ids=["3x32x32", "1x28x28"])
@pytest.mark.parametrize("model", ZOO)
def test_every_default_zoo_model_builds_and_runs_forward(model, shape):
    arch = get_registry().get(f"tv_{model}")
    (variant,) = arch.variants("default")
    assert variant == {"model": model, "stem": "small", "weights": "random"}
    net = arch.build(shape, 7, variant).eval()
    with torch.no_grad():
        out = net(torch.randn(2, *shape))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == shape[0] and first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert not [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)][:1] or model == "squeezenet1_1"


def test_the_imagenet_stem_is_torchvisions_own():
    import torchvision

    arch = get_registry().get("tv_resnet18")
    net = arch.build((3, 224, 224), 1000, {"model": "resnet18", "stem": "imagenet"})
    reference = torchvision.models.resnet18(weights=None)
    assert [tuple(p.shape) for p in net.parameters()] == [tuple(p.shape) for p in reference.parameters()]
    assert net.conv1.stride == (2, 2) and isinstance(net.maxpool, torch.nn.MaxPool2d)
    one_channel = arch.build((1, 28, 28), 10, {"model": "resnet18", "stem": "imagenet"})
    assert one_channel.conv1.in_channels == 1 and one_channel.conv1.kernel_size == (7, 7)


@pytest.mark.slow
def test_a_model_of_each_family_type_trains_exports_and_is_benchmarked(invoke):
    """Residual (resnet18), depthwise with squeeze-excite (mobilenet_v3_small), ConvNeXt: one epoch on a slice of
    digits (--val-ratio 0.8: 288 training images), picked across the plugin by --where model=. Exported by the
    TorchScript exporter: the dynamo exporter (the default, tested on the lab's nets) takes 5-12 s per zoo model;
    no int8/fp16 variants (tests/test_quantize.py has them)."""
    result = invoke(
        "run",
        "--plugin",
        "torchvision",
        "--where",
        "model=resnet18,mobilenet_v3_small,convnext_tiny",
        "--where",
        "stem=small",
        "--epochs",
        "1",
        "--val-ratio",
        "0.8",
        "--exporter",
        "torchscript",
        "--batch-sizes",
        "1",
        "--min-runs",
        "5",
        "--min-time",
        "0",
        "--quantize",
        "none",
        "--engines",
        "onnxruntime,torch",
        "-q",
    )
    assert result.exit_code == 0, result.output
    rows = invoke.json("report")
    assert sorted(r["architecture"] for r in rows) == ["tv_convnext_tiny", "tv_mobilenet_v3_small", "tv_resnet18"]
    for r in rows:  # each its own architecture, so each a winner
        assert r["status"] == "completed" and r["winner"]
        assert r["onnx"]["status"] == "ok" and r["onnx"]["top1_agreement"] == 1.0, r["onnx"]
        assert {m["engine"] for m in r["latency"]} == {"onnxruntime", "torch"}


def test_where_across_a_plugin_keeps_each_architectures_own_values_and_refuses_unknown_ones(invoke):
    from bench.options.config import RunConfig
    from bench.sweep.plan import plan_run

    specs = plan_run(RunConfig(plugin=["torchvision"], where={"model": ["resnet18", "squeezenet1_1"]}))
    assert [s.architecture.name for s in specs] == ["tv_resnet18", "tv_squeezenet1_1"]
    result = invoke("run", "--plugin", "torchvision", "--where", "model=resnet19")
    assert (
        result.exit_code == 2 and "no selected architecture has model=resnet19 (tv_resnet18: resnet18;" in result.output
    )


# --- timm: an optional extra ----------------------------------------------------------------------------------


def test_any_timm_model_runs_through_the_pipeline(invoke):
    pytest.importorskip("timm")
    train = ("--plugin", "timm", "--where", "model=resnet10t", "--epochs", "1", "--val-ratio", "0.8", "--no-benchmark")
    result = invoke("run", *train, "-q")
    assert result.exit_code == 0, result.output
    # one epoch on 20% of digits may leave it at chance (then no winner is deployed): the trial is named instead
    deploy = ("--exporter", "torchscript", "--batch-sizes", "1", "--min-runs", "5", "--min-time", "0")
    # timm's model through the pipeline is the point, not the engines
    result = invoke("benchmark", "latest", "t001", *deploy, "--engines", "onnxruntime")
    assert result.exit_code == 0, result.output
    (row,) = invoke.json("report")
    assert row["architecture"] == "timm" and row["variant"] == {"model": "resnet10t", "weights": "random"}
    assert row["status"] == "completed" and row["onnx"]["status"] == "ok" and row["latency"]


def test_an_unknown_timm_name_is_one_line_with_the_nearest_names(invoke):
    pytest.importorskip("timm")
    result = invoke("run", "--plugin", "timm", "--where", "model=resnet10x")
    assert result.exit_code == 2
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "'resnet10x' is not a value of timm.model; nearest: resnet10t," in error


def test_pretrained_weights_come_from_the_local_cache_only(invoke, tmp_path, monkeypatch):
    pytest.importorskip("timm")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))  # nothing cached: a clear failure, no download
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    result = invoke(
        "run",
        "--plugin",
        "timm",
        "--where",
        "model=resnet10t",
        "--where",
        "weights=pretrained",
        "--epochs",
        "1",
        "--no-benchmark",
        "-q",
    )
    assert result.exit_code == 0, result.output
    (row,) = invoke.json("report")
    assert row["status"] == "failed"
    assert "no pretrained weights for timm model 'resnet10t' on this machine" in row["note"]


def test_without_timm_the_plugin_says_how_to_install_it(invoke, monkeypatch):
    import sys

    from bench.plugins import manager as plugins

    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` fails, as where it is not installed
    plugins.reset()
    (timm,) = [p for p in invoke.json("plugins", store=False) if p["name"] == "timm"]
    assert "pip install 'cnnbench[timm]'" in timm["error"] and timm["architectures"] == []
    result = invoke("run", "--plugin", "timm")
    assert result.exit_code != 0
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "pip install 'cnnbench[timm]'" in error
    assert invoke("run", "--plugin", "cnn_baseline", "--epochs", "1", "--no-benchmark", "-q").exit_code == 0


@pytest.mark.slow
def test_a_zoo_model_with_the_imagenet_stem_trains_at_128_px_and_its_file_classifies_photos_of_any_size(
    invoke, tmp_path, monkeypatch
):
    """Issue 29: torchvision's mobilenet_v3_small as published (its ImageNet stem) on a folder of 128x128 photos
    (crops of scikit-learn's two sample photographs), kept at their own size: one epoch, exported, and
    docs/deployment.md's snippet prepares a 200x150 photo from the file's metadata alone."""
    import onnxruntime as ort
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from bench.deploy.export import read_metadata

    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name, photo in zip(("china", "flower"), load_sample_images().images, strict=True):
        (root / name).mkdir(parents=True)
        for i in range(12):
            y, x = rng.integers(0, photo.shape[0] - 128), rng.integers(0, photo.shape[1] - 128)
            Image.fromarray(photo[y : y + 128, x : x + 128]).save(root / name / f"{i:03d}.jpg", quality=90)
    result = invoke(
        "run",
        *("--plugin", "torchvision", "--where", "model=mobilenet_v3_small", "--where", "stem=imagenet"),
        *("--where", "weights=random"),
        *("--dataset", f"imagefolder:{root}", "--epochs", "1", "--batch-size", "8"),
        *("--engines", "onnxruntime", "--quantize", "none", "--batch-sizes", "1", "--min-runs", "3", "--min-time", "0"),
    )
    assert result.exit_code == 0, result.output
    # one epoch on 24 photos may leave it at chance (then not deployed by the run): the trial named deploys it
    timing = ("--engines", "onnxruntime", "--batch-sizes", "1", "--min-runs", "3", "--min-time", "0")
    assert invoke("benchmark", "latest", "t001", *timing).exit_code == 0
    (row,) = invoke.json("report")
    assert row["status"] == "completed" and row["onnx"]["status"] == "ok"
    meta = read_metadata(row["onnx"]["path"])
    assert meta["input_shape"] == [3, 128, 128] and meta["resize"] == "none: every image is 128x128"
    page = (Path(__file__).parent.parent / "docs" / "deployment.md").read_text()
    (code,) = [c for c in re.findall(r"^```python\n(.*?)^```", page, flags=re.S | re.M) if '"cat.jpg"' in c]
    monkeypatch.chdir(tmp_path)
    Image.fromarray(load_sample_images().images[1][:150, :200]).save("cat.jpg")
    scope = {"meta": meta, "np": np}
    exec(code, scope)
    mean, std = (np.array(meta[k], np.float32).reshape(1, -1, 1, 1) for k in ("mean", "std"))
    x = ((scope["raw"] * meta["pixel_scale"] - mean) / std).astype(np.float32)
    session = ort.InferenceSession(row["onnx"]["path"], providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": x})[0].shape == (1, 2)


def test_torchvision_s_published_weights_come_from_the_local_hub_cache_only(tmp_path, monkeypatch):
    """weights=imagenet reads torchvision's DEFAULT file from torch hub's checkpoint folder (here a stand-in with
    random values, under the published file name): what fits is loaded, the classifier for 10 classes is not, and
    one-channel images get the first convolution summed over its colour channels. Without the file: one line."""
    import torchvision

    from bench.core.errors import BenchError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    arch = get_registry().get("tv_mobilenet_v3_small")
    with pytest.raises(BenchError, match=r"torchvision's weights of mobilenet_v3_small are not on this machine"):
        arch.build((3, 32, 32), 10, {"model": "mobilenet_v3_small", "stem": "imagenet", "weights": "imagenet"})
    url = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(1)
    published = torchvision.models.mobilenet_v3_small().state_dict()
    torch.save(published, tmp_path / "hub" / "checkpoints" / Path(url).name)
    net = arch.build((3, 32, 32), 10, {"model": "mobilenet_v3_small", "stem": "imagenet", "weights": "imagenet"})
    state = net.state_dict()
    assert torch.equal(state["features.0.0.weight"], published["features.0.0.weight"])
    assert torch.equal(state["features.5.block.0.0.weight"], published["features.5.block.0.0.weight"])
    assert state["classifier.3.weight"].shape == (10, 1024)  # the head for 10 classes: not the file's
    gray = arch.build((1, 28, 28), 10, {"model": "mobilenet_v3_small", "stem": "imagenet", "weights": "imagenet"})
    summed = published["features.0.0.weight"].sum(1, keepdim=True)
    assert torch.allclose(gray.state_dict()["features.0.0.weight"], summed)
