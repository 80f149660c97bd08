"""Issue 40: choosing an architecture on one's own small data. A model that did not learn is caught (no winner, no
deployment, no place on a front), and says why."""

import numpy as np
import pytest
import torch
from conftest import fast_deploy_args

import bench
from bench.plugins import manager as plugins


@pytest.fixture(scope="module")
def noise_folder(tmp_path_factory):
    """An image folder that no model can learn: 4 classes of 60 random-noise 8x8 PNGs each (its labels say nothing)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c", "d"):
        (root / name).mkdir()
        for i in range(60):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i:03d}.png")
    return root


def test_a_model_at_chance_is_no_winner_is_not_deployed_and_is_left_off_the_fronts(
    invoke, noise_folder, tiny_plugin, tmp_path, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "300")
    train = ("--dataset", f"imagefolder:{noise_folder}", "--val-ratio", "0.5", "--epochs", "3", "--seed", "0")
    result = invoke("run", "--arch", "tiny_cnn", "--where", "width=8", "--arch", "cnn_baseline", *train, "-q")
    assert result.exit_code == 0, result.output
    rows = invoke.json("report")
    assert [r["learned"] for r in rows] == [False, False] and not any(r["winner"] for r in rows)
    assert all(r["onnx"] is None and r["latency"] == [] for r in rows)  # no time spent deploying them
    (warning,) = [line for line in result.output.splitlines() if line.startswith("Warning: did not learn")]
    assert "tiny_cnn (t001: validation" in warning and "within noise of guessing (" in warning, warning
    assert "cnn_baseline (t002" in warning and "deploys one anyway" in warning, warning
    table = invoke("report").output
    assert table.count("completed, at chance") == 2 and "│ ★" not in table  # ranked, no winner marked

    # named, a trial at chance is deployed anyway, and still kept off every front, with the reason
    assert invoke("benchmark", "latest", "t001", *fast_deploy_args("benchmark")).exit_code == 0
    assert invoke.json("report")[0]["onnx"]["status"] == "ok"
    assert invoke("report", "--out", tmp_path).exit_code == 0
    report = next(tmp_path.glob("*/report.md")).read_text()
    assert "Left off the fronts: t001, t002, which did not learn" in report
    assert "Pareto front (no other benchmarked trial" not in report
    assert "Did not learn: validation" in report  # the diagnosis, with what may help
    # and `bench export RUN` with no trial named says why there is nothing to export
    result = invoke("export", "latest")
    assert result.exit_code == 1 and "no trial of run" in result.output and "learned" in result.output


def test_chance_is_the_most_common_class_plus_noise_over_the_validation_images():
    from bench.results.diagnosis import chance, learned

    trial = {"confusion": [[5, 0], [15, 0]], "split": {"val": 100}, "val_acc": 0.80}
    share, bound = chance(trial)
    assert share == 0.75 and bound == pytest.approx(0.75 + 2.326 * (0.75 * 0.25 / 100) ** 0.5)
    assert learned(trial) is False  # 80% where guessing the common class gets 75%: within noise over 100 images
    assert learned({**trial, "val_acc": 0.9}) is True
    assert learned({**trial, "confusion": None}) is True  # nothing to tell chance by: never held against it


class Shifted(torch.nn.Module):
    """Activations far from batch norm's initial statistics (mean 0, variance 1), as a deep net's are."""

    def forward(self, x):
        return 20 * x - 300


class SlowBatchNormPlugin:
    """A small CNN whose batch norm averages its statistics over ~1,000 batches (momentum 0.001), as torchvision's
    MobileNetV3 does over 100: on a small folder the running averages never catch up with the weights."""

    @staticmethod
    def build(input_shape, num_classes, momentum=0.001):
        from torch import nn

        return nn.Sequential(
            nn.Conv2d(input_shape[0], 16, 3, padding=1),
            Shifted(),
            nn.BatchNorm2d(16, momentum=momentum),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, num_classes),
        )

    @bench.hookimpl
    def register_architectures(self, register):
        register(
            "slow_bn",
            self.build,
            variants={"momentum": [0.001]},
            defaults={"optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 6},
        )


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """An image folder any CNN can learn: 4 classes of 50 noisy 8x8 PNGs, each class its own colour."""
    from PIL import Image

    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for k, name in enumerate(("red", "green", "blue", "grey")):
        (root / name).mkdir()
        colour = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [120, 120, 120]][k])
        for i in range(50):
            pixels = np.clip(colour + rng.normal(0, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def test_batch_norm_statistics_are_recalibrated_when_their_average_outlasts_an_epoch(invoke, colour_folder, tmp_path):
    plugins.register_in_process(SlowBatchNormPlugin(), name="slow_bn")
    try:
        train = ("--arch", "slow_bn", "--dataset", f"imagefolder:{colour_folder}", "--seed", "0", "--no-benchmark")
        for setting in ("off", "auto"):
            assert invoke("run", *train, "--bn-recalibrate", setting, "-q").exit_code == 0
        stale, recalibrated = (invoke.json("report", run)[0] for run in (r["id"] for r in invoke.json("runs")))
    finally:
        plugins.unregister_in_process("slow_bn")
    # auto resolved when the run was planned, and recorded: ~1,000 batches of average against 4 steps an epoch
    assert stale["hparams"]["bn_recalibrate"] == "off"
    assert recalibrated["hparams"]["bn_recalibrate"] == "on"
    assert recalibrated["val_acc"] >= 0.9 and recalibrated["learned"] is True
    assert stale["val_acc"] < recalibrated["val_acc"] - 0.2, (stale, recalibrated)
    # the diagnosis names the cause, and the way out
    assert invoke("report", stale["run"], "--out", tmp_path).exit_code == 0
    report = next(tmp_path.glob("*/report.md")).read_text()
    assert "Batch-norm statistics do not match the weights" in report and "--bn-recalibrate on" in report
