"""The ROB313 lab's own experiment on real CIFAR-10 images (../shared/data/cifar10-jpeg.tar.gz), kept working in
CI on a slice: the lab's config, unchanged but for the data location, for one epoch on 1,000 images."""

import os
import tarfile
from pathlib import Path

import pytest

from bench.store import Store

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = Path(os.environ.get("BENCH_CIFAR_ARCHIVE") or ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def cifar_slice(tmp_path_factory):
    """An image folder of the archive's first 100 training and 20 test images of each class."""
    if not ARCHIVE.is_file():
        if os.environ.get("BENCH_REQUIRE_CIFAR"):
            pytest.fail(f"the CIFAR-10 archive is required here: {ARCHIVE}")
        pytest.skip(f"no CIFAR-10 archive at {ARCHIVE} (set BENCH_CIFAR_ARCHIVE)")
    root = tmp_path_factory.mktemp("cifar") / "cifar10-slice"
    keep = {"train": 100, "test": 20}
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(ARCHIVE) as tar:
        for member in tar:
            parts = Path(member.name).parts  # cifar10-jpeg/<split>/<class>/NNNN.jpg
            if not member.isfile() or len(parts) != 4 or parts[1] not in keep:
                continue
            key = (parts[1], parts[2])
            if taken.get(key, 0) < keep[parts[1]]:
                taken[key] = taken.get(key, 0) + 1
                target = root / parts[1] / parts[2] / parts[3]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    assert sorted(taken.values()) == [20] * 10 + [100] * 10
    return root


@pytest.mark.slow
def test_the_lab_config_runs_on_a_slice_of_cifar10(cifar_slice, invoke, store_path):
    result = invoke(
        "run",
        "--config",
        ROOT / "configs" / "rob313.toml",
        "--dataset",
        f"imagefolder:{cifar_slice}",
        "--epochs",
        "1",
        "-q",
        "--batch-sizes",
        "1",
        "--min-runs",
        "5",
        "--min-time",
        "0",
        "--warmup",
        "1",
    )
    assert result.exit_code == 0, result.output
    # one epoch on 980 images may leave it at chance (then not deployed by the run): the trial named deploys it
    timing = ("--batch-sizes", "1", "--min-runs", "5", "--min-time", "0", "--warmup", "1")
    assert invoke("benchmark", "latest", "t001", *timing).exit_code == 0
    (row,) = invoke.json("report")
    assert row["architecture"] == "cnn_vgg" and row["params"] == 2_211_338  # the lab's 2.21M
    assert row["status"] == "completed" and row["split"] == {"train": 980, "val": 20, "test": 200}
    hp = row["hparams"]
    assert (hp["optimizer"], hp["lr"], hp["momentum"], hp["batch_size"], hp["select"], hp["seed"], hp["augment"]) == (
        "sgd",
        0.01,
        0.9,
        64,
        "val_loss",
        42,
        "flip,grayscale",
    )
    assert row["onnx"]["status"] == "ok" and row["onnx"]["top1_agreement"] == 1.0
    with Store(store_path) as s:
        run = s.run()
        assert run["classes"] == CLASSES and run["input_shape"] == [3, 32, 32]
        assert run["config"]["mean"] == [0.5, 0.5, 0.5]  # per channel, from the config file: repeats kept


@pytest.mark.slow
def test_the_fast_config_s_export_passes_parity_and_a_broken_one_does_not(cifar_slice, invoke, store_path, tmp_path):
    """Issue 26, item 5: fast_cnn's export (whitening stem, flip TTA inside the model) is faithful within the default
    tolerance, relative to its logits' scale; the same file with one weight changed is refused."""
    import onnx
    from onnx import numpy_helper

    from bench.deploy.export import check_parity
    from bench.deploy.trials import load_model, test_images
    from bench.plugins.dataset_loading import load_run_dataset

    result = invoke(
        "run",
        "--config",
        ROOT / "configs" / "cifar10-fast.toml",
        "--dataset",
        f"imagefolder:{cifar_slice}",
        "--epochs",
        "2",
        "--warmup-epochs",
        "1",
        "--quantize",
        "none",
        "--batch-sizes",
        "1",
        "--min-runs",
        "3",
        "--min-time",
        "0",
        "-q",
    )
    assert result.exit_code == 0, result.output
    # two epochs on a slice may leave it at chance (then not deployed by the run): the trial named deploys it
    timing = ("--batch-sizes", "1", "--min-runs", "3", "--min-time", "0")
    assert invoke("benchmark", "latest", "t001", *timing).exit_code == 0
    (row,) = invoke.json("report")
    assert row["architecture"] == "fast_cnn" and row["onnx"]["status"] == "ok", row["onnx"]["note"]
    proto = onnx.load(row["onnx"]["path"])
    weights = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    changed = numpy_helper.to_array(weights).copy()
    changed.flat[: changed.size // 100] += 0.05  # 1% of the largest weight tensor, slightly off
    weights.CopyFrom(numpy_helper.from_array(changed, weights.name))
    onnx.save(proto, tmp_path / "broken.onnx")
    with Store(store_path) as s:
        run = s.run()
        trial = s.trials(run["id"])[0]
        model = load_model(s, run, trial)
    images, _ = test_images(load_run_dataset(run), trial)
    assert check_parity(model, row["onnx"]["path"], images).ok
    broken = check_parity(model, tmp_path / "broken.onnx", images)
    assert not broken.ok and "of their scale" in broken.note
