"""Starting from weights (--weights), freezing (--freeze) and the head's learning rate (--head-lr): what loads is
said, what is frozen stays bit for bit, the ONNX file names where its weights began; bad values are one line."""

import json
import os
import shutil
import types
from pathlib import Path

import pytest
import torch
from conftest import FAST_DEPLOY
from torch import nn

import bench
from bench.core.errors import BenchError, UsageError
from bench.deploy.export import read_metadata
from bench.options.hparams import HParams
from bench.plugins import manager as plugins
from bench.store import Store
from bench.train import checkpoints
from bench.train.optim import make_optimizer
from bench.train.weights import MARK, head_name, head_parameters

QUICK = {"no_benchmark": True, "epochs": [2]}
EXPORT = FAST_DEPLOY  # the ONNX metadata is the point, not the exporter or the timing


class NormPlugin:
    """A small CNN with batch norm (whose statistics a frozen backbone must keep)."""

    @staticmethod
    def build(input_shape, num_classes, width=8):
        return nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(width * 4, num_classes),
        )

    @bench.hookimpl
    def register_architectures(self, register):
        register("norm_cnn", self.build, variants={"width": [8]}, defaults={"optimizer": "adam", "lr": 0.01})


@pytest.fixture(scope="module")
def norm_plugin():
    plugins.register_in_process(NormPlugin(), name="norm")
    yield "norm"
    plugins.unregister_in_process("norm")


@pytest.fixture(scope="module")
def trained_once(norm_plugin, tmp_path_factory):
    """A norm_cnn trained on digits, once for the module: the weights later runs start from."""
    store = tmp_path_factory.mktemp("trained") / "runs" / "bench.db"
    result = bench.run(plugin=["norm"], **QUICK, store_path=store)
    return store.parent, result.run_id


@pytest.fixture
def trained(trained_once, store_path):
    """A copy of the module's store with that run, at ``store_path``: its first trial's record."""
    shutil.copytree(trained_once[0], store_path.parent)
    (trial,) = bench.trials(trained_once[1], store_path=store_path)
    return types.SimpleNamespace(run_id=trained_once[1]), trial


def test_freeze_backbone_trains_only_the_head_and_keeps_everything_else_bit_for_bit(trained, store_path):
    first, source = trained
    weights, frozen = f"{first.run_id}/t001", ["backbone"]
    result = bench.run(plugin=["norm"], epochs=[2], weights=weights, freeze=frozen, store_path=store_path, **EXPORT)
    trial = result.trials[0]
    before, _ = checkpoints.load(source["checkpoint"])
    after, _ = checkpoints.load(trial["checkpoint"])
    head = "7."  # the logits layer of NormPlugin's Sequential
    for key in before:
        if key.startswith(head):
            assert not torch.equal(before[key], after[key]), key  # the head trained
        else:
            assert torch.equal(before[key], after[key]), key  # weights and batch-norm statistics, bit for bit
    assert result.notes[0].startswith("norm_cnn: weights best.pt (sha256 ") and "loaded 11 tensors" in result.notes[0]
    path, digest = trial["hparams"]["weights"].split(MARK)
    assert path == source["checkpoint"] and len(digest) == 64
    meta = read_metadata(trial["onnx"]["path"])
    assert meta["initial_weights"] == {"file": source["checkpoint"], "sha256": digest}
    plain = bench.run(plugin=["norm"], epochs=[2], store_path=store_path, **EXPORT).trials[0]
    assert read_metadata(plain["onnx"]["path"])["initial_weights"] == "random (torch.manual_seed(0))"


def test_another_class_count_re_initializes_the_head_and_says_so(trained, store_path, tmp_path):
    first, source = trained
    state, _ = checkpoints.load(source["checkpoint"])
    state = {**state, "7.weight": torch.zeros(3, 32), "7.bias": torch.zeros(3), "extra.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "three_classes.pt")  # a plain state dict, from a 3-class model
    result = bench.run(plugin=["norm"], **QUICK, weights=str(tmp_path / "three_classes.pt"), store_path=store_path)
    assert result.status == "completed"
    (note,) = result.notes
    assert "loaded 9 tensors" in note and "skipped 1 the model lacks (extra.weight)" in note
    assert "re-initialized 2 (7.weight, 7.bias)" in note


def test_weights_that_do_not_fit_are_one_line_before_anything_is_recorded(trained, store_path, tmp_path):
    first, source = trained
    state, _ = checkpoints.load(source["checkpoint"])
    torch.save({**state, "0.weight": torch.zeros(8, 1, 5, 5)}, tmp_path / "clash.pt")
    with pytest.raises(BenchError, match=r"^the weights clash.pt do not fit: 0.weight is \(8, 1, 5, 5\) there, "):
        bench.run(plugin=["norm"], **QUICK, weights=str(tmp_path / "clash.pt"), store_path=store_path)
    torch.save({"something": 1}, tmp_path / "not_weights.pt")
    with pytest.raises(BenchError, match="hold no state dict"):
        bench.run(plugin=["norm"], **QUICK, weights=str(tmp_path / "not_weights.pt"), store_path=store_path)
    # Issue 41: integer keys were an AttributeError traceback ('int' object has no attribute 'startswith')
    torch.save({0: torch.zeros(3), 1: torch.zeros(3)}, tmp_path / "int_keys.pt")
    with pytest.raises(BenchError, match="hold no state dict: its keys are tensor names, not 0$"):
        bench.run(plugin=["norm"], **QUICK, weights=str(tmp_path / "int_keys.pt"), store_path=store_path)
    with Store(store_path, readonly=True) as store:
        assert len(store.runs()) == 1  # only the fixture's


def test_a_weights_file_that_is_no_state_dict_is_one_line_from_the_command_line(invoke, tmp_path):
    torch.save({0: torch.zeros(3)}, tmp_path / "int_keys.pt")
    result = invoke("run", "--plugin", "cnn_baseline", "--epochs", "1", "--weights", tmp_path / "int_keys.pt")
    assert result.exit_code == 1 and "Traceback" not in result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error.endswith("hold no state dict: its keys are tensor names, not 0")


def test_a_resume_refuses_weights_that_changed_since_the_plan(trained, store_path, tmp_path):
    first, source = trained
    weights = tmp_path / "w.pt"
    weights.write_bytes(Path(source["checkpoint"]).read_bytes())

    class Stop(bench.RunListener):
        def epoch_done(self, spec, stats):
            raise KeyboardInterrupt

    stopped = bench.run(plugin=["norm"], **QUICK, weights=str(weights), store_path=store_path, listener=Stop())
    assert stopped.status == "interrupted"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(BenchError, match=r"changed since the run was planned"):
        bench.resume(stopped.run_id, store_path=store_path)


def test_the_head_trains_at_head_lr_times_lr_and_frozen_parameters_are_not_optimized():
    model = NormPlugin.build((1, 8, 8), 10)
    assert head_name(model, 10) == "7"
    model[0].weight.requires_grad_(False)
    hp = HParams(lr=0.01, head_lr=10.0, optimizer="sgd", precision="fp32", channels_last=False)
    optimizer = make_optimizer(model, hp, head_parameters(model, 10))
    groups = {g["lr"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    assert groups[0.1] == head_parameters(model, 10)
    assert id(model[0].weight) not in set().union(*groups.values())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"freeze": ["all"]}, "Invalid value for '--freeze': 'all' (none, backbone or a number of layers)"),
        ({"head_lr": [0]}, "Invalid value for '--head-lr': 0.0 (a number > 0)"),
        ({"weights": "no/such/file.pt"}, "Invalid value for '--weights': 'no/such/file.pt' is neither a file nor"),
        ({"weights": "latest/t009"}, "Invalid value for '--weights': 'latest/t009' run "),
        ({"freeze": ["9"]}, "Invalid value for '--freeze': '9' (the model has 4 layers with weights)"),
    ],
)
def test_bad_transfer_options_are_one_line(options, message, trained, store_path):
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        bench.run(plugin=["norm"], **QUICK, **options, store_path=store_path)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("BENCH_REQUIRE_FASHION"),
    reason="Fashion-MNIST is not installed (apt install dataset-fashion-mnist)",
)
def test_weights_trained_on_fashion_mnist_fine_tune_a_small_digit_folder_better_than_scratch(tmp_path):
    """Transfer, measured: a small CNN trained on Fashion-MNIST, then fine-tuned on 500 handwritten digits (scikit-
    learn's, upscaled to 28x28 PNGs in a folder), against the same net from scratch on the same images and epochs."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = tmp_path / "digits"
    counts = {}
    for image, label in zip(digits.images, digits.target, strict=True):
        if counts.get(label, 0) >= 50:
            continue
        counts[label] = counts.get(label, 0) + 1
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        pixels = (image * 255 / 16).astype("uint8")
        Image.fromarray(pixels).resize((28, 28), Image.BILINEAR).save(folder / str(label) / f"{counts[label]}.png")
    store = tmp_path / "runs" / "bench.db"
    net = {
        "arch": ["cnn_dropout"],  # its smallest variant: two conv blocks, a 64-unit head
        "where": {"kernel_size": [3], "convs_per_block": [1], "feature_maps": ["32-64"], "dropout": [0.0]},
        "no_benchmark": True,
        "seed": [0, 1, 2],
        "optimizer": ["adam"],
        "lr": [1e-3],
    }
    source = bench.run(**net, dataset="fashion-mnist", epochs=[3], limit_train=12000, store_path=store)
    weights = f"{source.run_id}/t001"
    small = {**net, "dataset": f"imagefolder:{folder}", "image_size": 28, "epochs": [2], "store_path": store}
    tuned = bench.run(**small, weights=weights)
    scratch = bench.run(**small)
    mean = lambda r: sum(t["test_acc"] for t in r.trials) / len(r.trials)  # noqa: E731
    figures = {"fine-tuned": mean(tuned), "scratch": mean(scratch)}
    print(json.dumps(figures))
    assert figures["fine-tuned"] > figures["scratch"] + 0.03, figures  # measured: 85.7% against 79.0%


def test_grayscale_weights_start_an_rgb_model_as_timm_adapts_a_stem(tmp_path):
    """Issue 40: weights trained on grey images start a model of RGB images; its first convolution sees in an image
    whose three channels are equal what the grey model saw in that grey image. The other way, RGB weights start a
    grey model (their sum)."""
    from bench.train.weights import load_into, resolve

    torch.manual_seed(0)
    grey, rgb = NormPlugin.build((1, 8, 8), 10).eval(), NormPlugin.build((3, 8, 8), 10).eval()
    torch.save(grey.state_dict(), tmp_path / "grey.pt")
    loaded = load_into(rgb, resolve(str(tmp_path / "grey.pt")), list(range(10)))
    assert loaded.adapted == ["0.weight (1 -> 3 input channels)"] and "by timm's in_chans rule" in loaded.line()
    image = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(rgb(image.expand(-1, 3, -1, -1)), grey(image))
    torch.save(rgb.state_dict(), tmp_path / "rgb.pt")
    back = NormPlugin.build((1, 8, 8), 10).eval()
    assert load_into(back, resolve(str(tmp_path / "rgb.pt")), list(range(10))).adapted
    torch.testing.assert_close(back(image), grey(image))


def test_dry_run_refuses_weights_that_do_not_fit(invoke, trained, tmp_path):
    first, source = trained
    state, _ = checkpoints.load(source["checkpoint"])
    torch.save({**state, "0.weight": torch.zeros(8, 1, 5, 5)}, tmp_path / "clash.pt")
    result = invoke("run", "--plugin", "norm", "--weights", str(tmp_path / "clash.pt"), "--dry-run")
    assert result.exit_code == 1 and "Error: the weights clash.pt do not fit: 0.weight is (8, 1, 5, 5)" in result.output
