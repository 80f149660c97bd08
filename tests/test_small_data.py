"""Issue 40: choosing an architecture on one's own small data. A model that did not learn is caught (no winner, no
deployment, no place on a front), and says why."""

import numpy as np
import pytest
from conftest import fast_deploy_args


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
