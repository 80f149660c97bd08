"""Datasets: real Fashion-MNIST, image folders of real JPEGs, CIFAR-10's file formats, the decode cache,
batched augmentation and sweep files (--config), with the errors a user sees when something is wrong."""

import gzip
import os
import pickle
import re
import shutil
import struct
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FAST_DEPLOY_ARGS
from torch import nn

import bench
from bench.core.errors import BenchError
from bench.data.augment import augment
from bench.data.readers import read_idx
from bench.plugins import manager as plugins
from bench.plugins.dataset_loading import load_dataset
from bench.train.precision import bf16_is_fast

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


# --- Fashion-MNIST, from Debian's package --------------------------------------------------------------


def _need_fashion():
    if not DEBIAN_FASHION.is_dir():
        if os.environ.get("BENCH_REQUIRE_FASHION"):
            pytest.fail("Fashion-MNIST is required here: apt install dataset-fashion-mnist")
        pytest.skip("apt install dataset-fashion-mnist to run this real-data test")


def test_fashion_mnist_is_found_in_debians_folder_with_its_class_names():
    _need_fashion()
    data = load_dataset("fashion-mnist")
    assert data.input_shape == (1, 28, 28) and len(data.train) == 60_000 and len(data.test) == 10_000
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert data.train.images.dtype == torch.uint8 and int(data.train.labels.max()) == 9
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10


@pytest.mark.slow
def test_a_real_data_run_on_fashion_mnist(invoke):
    _need_fashion()
    result = invoke(
        "run",
        "--plugin",
        "cnn_baseline",
        "--dataset",
        "fashion-mnist",
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--lr",
        "0.05",
        "--no-benchmark",
        "-q",
    )
    assert result.exit_code == 0, result.output
    (row,) = invoke.json("report")
    assert row["status"] == "completed" and row["test_acc"] > 0.80
    assert row["split"] == {"train": 48_000, "val": 12_000, "test": 10_000}


# --- image folders of real JPEG files ------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Two classes of real JPEG images: crops of scikit-learn's two sample photographs (a temple in China,
    a flower), 40 per class, written with Pillow."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, photo in zip(("china", "flower"), load_sample_images().images, strict=True):
        (root / name).mkdir()
        for i in range(40):
            y, x = rng.integers(0, photo.shape[0] - 96), rng.integers(0, photo.shape[1] - 96)
            Image.fromarray(photo[y : y + 96, x : x + 96]).save(root / name / f"{i:03d}.jpg", quality=90)
    return root


def test_an_image_folder_keeps_its_images_own_size_and_a_mixed_one_takes_the_most_common(photo_folder, tmp_path):
    from PIL import Image

    data = load_dataset(f"imagefolder:{photo_folder}")  # 96x96 crops: kept as they are
    assert data.input_shape == (3, 96, 96) and data.resize == "none: every image is 96x96"
    mixed = tmp_path / "mixed"
    for name, color in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        (mixed / name).mkdir(parents=True)
        for i, size in enumerate([(40, 30)] * 5 + [(64, 64)] * 2):  # width x height
            Image.new("RGB", size, color).save(mixed / name / f"{i}.png")
    data = load_dataset(f"imagefolder:{mixed}")
    assert data.input_shape == (3, 30, 40)  # height x width of the most common size
    assert data.resize.startswith("bilinear") and "to 40x30, the most common of 2 sizes (10 of 14 images" in data.resize
    assert load_dataset(f"imagefolder:{mixed}", image_size=16).input_shape == (3, 16, 16)


def test_image_folder_of_jpegs_trains_with_class_names_from_the_folders(invoke, photo_folder, tmp_path, monkeypatch):
    data = load_dataset(f"imagefolder:{photo_folder}", image_size=24)
    assert data.classes == ["china", "flower"] and data.input_shape == (3, 24, 24)
    assert len(data.train) + len(data.test) == 80 and len(data.test) == 16
    assert min(data.std) > 0 and all(0 < m < 1 for m in data.mean)
    dataset = f"imagefolder:{photo_folder}"
    result = invoke(
        "run",
        "--plugin",
        "cnn_baseline",
        "--dataset",
        dataset,
        "--image-size",
        "24",
        "--epochs",
        "8",
        "--lr",
        "0.01",
        "--batch-size",
        "16",
        *FAST_DEPLOY_ARGS,  # what the file says of the folder is the point, not how it was timed
    )
    assert result.exit_code == 0, result.output
    (row,) = invoke.json("report")
    assert row["status"] == "completed" and row["test_acc"] >= 0.75
    assert row["onnx"]["status"] == "ok"  # export reloads the folder with the same options
    from bench.deploy.export import read_metadata

    meta = read_metadata(row["onnx"]["path"])
    assert meta["classes"] == ["china", "flower"] and meta["input_shape"] == [3, 24, 24]
    # the file alone says how a photo of any size becomes an input: resize (bilinear), channel order, scale
    assert meta["channel_order"] == "RGB" and meta["resize"].startswith("bilinear") and "24x24" in meta["resize"]
    import onnxruntime as ort
    from PIL import Image

    photo = next(p for p in sorted(photo_folder.rglob("*.jpg")))
    with Image.open(photo) as im:
        assert im.size != tuple(meta["input_shape"][1:])
    # docs/deployment.md's snippet, verbatim, on a photo of another size named cat.jpg
    page = (Path(__file__).parent.parent / "docs" / "deployment.md").read_text()
    (code,) = [c for c in re.findall(r"^```python\n(.*?)^```", page, flags=re.S | re.M) if '"cat.jpg"' in c]
    monkeypatch.chdir(tmp_path)
    shutil.copy(photo, "cat.jpg")
    scope = {"meta": meta, "np": np}
    exec(code, scope)
    raw = scope["raw"]
    assert raw.shape == (1, *meta["input_shape"])
    mean, std = (np.array(meta[k], np.float32).reshape(1, -1, 1, 1) for k in ("mean", "std"))
    x = ((raw * meta["pixel_scale"] - mean) / std).astype(np.float32)
    session = ort.InferenceSession(row["onnx"]["path"], providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": x})[0].shape == (1, 2)


def test_image_folder_errors_name_the_problem(tmp_path, photo_folder):
    import shutil

    with pytest.raises(BenchError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    one = tmp_path / "one"
    shutil.copytree(photo_folder / "china", one / "china")
    with pytest.raises(BenchError, match="needs at least two class subfolders"):
        load_dataset(f"imagefolder:{one}")
    empty = tmp_path / "empty"
    shutil.copytree(photo_folder, empty)
    (empty / "dog").mkdir()
    (empty / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(BenchError, match=f"class folder {re.escape(str(empty / 'dog'))} has no images"):
        load_dataset(f"imagefolder:{empty}")
    broken = tmp_path / "broken"
    shutil.copytree(photo_folder, broken)
    jpeg = broken / "flower" / "007.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:300])  # truncated
    with pytest.raises(BenchError, match=f"cannot read image {re.escape(str(jpeg))}"):
        load_dataset(f"imagefolder:{broken}")


def test_16_bit_32_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    """Issue 14, item 2: Pillow's convert("L") clipped 16-bit pixels to 255, so a folder of 16-bit PNGs trained on
    white images. Every wider format is scaled to 0..255; values its format cannot hold are refused by name."""
    from PIL import Image

    ramp = np.linspace(0, 1, 8 * 8).reshape(8, 8)
    writers = {
        "png16": lambda: (Image.fromarray(np.rint(ramp * 65535).astype(np.uint16)), ".png"),
        "tiff32": lambda: (Image.fromarray(np.rint(ramp * 65535).astype(np.int32)), ".tif"),
        "float": lambda: (Image.fromarray(ramp.astype(np.float32)), ".tif"),
    }
    for kind, write in writers.items():
        root = tmp_path / kind
        for cls in ("a", "b"):
            (root / cls).mkdir(parents=True)
            for i in range(5):
                image, suffix = write()
                image.save(root / cls / f"{i}{suffix}")
        data = load_dataset(f"imagefolder:{root}", image_size=8)
        assert data.input_shape == (1, 8, 8)
        pixels = torch.cat([data.train.images, data.test.images])
        assert pixels.min() == 0 and pixels.max() == 255, kind
        assert torch.equal(pixels[0, 0], torch.from_numpy(np.rint(ramp * 255).astype(np.uint8))), kind
    bad = tmp_path / "float" / "b" / "0.tif"
    Image.fromarray((ramp * 4).astype(np.float32)).save(bad)
    with pytest.raises(BenchError, match=f"image {re.escape(str(bad))} has floating-point pixels outside 0..1"):
        load_dataset(f"imagefolder:{tmp_path / 'float'}", image_size=8)


def test_decoded_arrays_are_cached_and_a_changed_file_is_decoded_again(tmp_path, photo_folder):
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    store = tmp_path / "cache"  # --cache-dir
    caches = lambda: {p for p in store.iterdir() if p.is_dir() and p.name.startswith("imagefolder-")}  # noqa: E731
    first = load_dataset(f"imagefolder:{folder}", image_size=16, cache_dir=store)
    assert len(caches()) == 1
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]  # nothing written into the dataset
    (cache,) = caches()
    assert {p.name for p in cache.iterdir()} == {
        "arrays.json",  # the manifest: what a whole cache holds
        "classes.npy",
        "train_mean_std.npy",
        "train_x.npy",
        "train_y.npy",
        "test_x.npy",
        "test_y.npy",
    }
    stamp = (cache / "train_x.npy").stat().st_mtime_ns
    reloaded = load_dataset(f"imagefolder:{folder}", image_size=16, cache_dir=store)
    assert torch.equal(reloaded.train.images, first.train.images)
    assert caches() == {cache} and (cache / "train_x.npy").stat().st_mtime_ns == stamp  # read, not rebuilt
    from PIL import Image

    Image.new("RGB", (50, 50), (255, 0, 0)).save(folder / "china" / "000.jpg")
    again = load_dataset(f"imagefolder:{folder}", image_size=16, cache_dir=store)
    assert len(caches()) == 1 and caches() != {cache}  # decoded again; the outdated cache removed
    assert not torch.equal(again.train.images, first.train.images) or not torch.equal(
        again.test.images, first.test.images
    )


def _mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory map holds ``tensor``'s pixels (Linux's /proc/self/maps), or None (anonymous memory)."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= address < high:
            return fields[5] if len(fields) == 6 and fields[5].startswith("/") else None
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads Linux's /proc/self/maps")
def test_a_cached_dataset_is_read_from_its_cache_file_and_trains_as_in_memory(photo_folder, tmp_path, monkeypatch):
    from bench.data.splits import Normalizer
    from bench.train.loop import HParams, train_trial

    data = load_dataset(f"imagefolder:{photo_folder}", image_size=12, cache_dir=tmp_path / "cache")
    splits = data.split(0.25, 3)
    (cache,) = (p for p in (tmp_path / "cache").glob("imagefolder-*") if p.is_dir())
    # the pixels of the dataset and of its splits are the cache file's pages: nothing of the data's size in memory
    for split in (data.train, splits.train, splits.val):
        assert _mapped_file(split.source) == str(cache / "train_x.npy")
    assert _mapped_file(data.test.source) == str(cache / "test_x.npy")
    loaded = data.in_memory()
    assert _mapped_file(loaded.train.source) is None
    assert data.record() == loaded.record()  # the fingerprint, chunk by chunk, of the same bytes
    pixels = loaded.train.images.float().div(255)
    assert data.mean == tuple(round(float(m), 4) for m in pixels.mean(dim=(0, 2, 3)))
    assert data.std == tuple(round(float(s), 4) for s in pixels.std(dim=(0, 2, 3)))
    assert torch.equal(splits.val.images, loaded.split(0.25, 3).val.images)

    def losses(d):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 2))
        hp = HParams(epochs=2, batch_size=16, seed=3, val_ratio=0.25, precision="fp32", channels_last=False)
        result = train_trial(model, d.split(0.25, 3), Normalizer(d), hp, tmp_path / "b.pt", 2)
        return [(e.train_loss, e.val_loss, e.val_acc) for e in result.history]

    assert losses(data) == losses(loaded)
    from bench.core import machine as environment
    from bench.data import splits as data_module

    # larger than the memory available (here: said to be 1 kB): read each batch ahead, the same figures
    monkeypatch.setattr(environment, "available_memory", lambda: 1000)
    large = load_dataset(f"imagefolder:{photo_folder}", image_size=12, cache_dir=tmp_path / "cache")
    prefetched = data_module._MAPPED
    assert large.train.source.data_ptr() in prefetched and data.train.source.data_ptr() not in prefetched
    assert losses(large) == losses(loaded)


def test_a_damaged_or_half_written_cache_is_decoded_again(photo_folder, tmp_path):
    cache = tmp_path / "cache"
    first = load_dataset(f"imagefolder:{photo_folder}", image_size=12, cache_dir=cache).record()
    (folder,) = (p for p in cache.glob("imagefolder-*") if p.is_dir())
    (folder / "train_x.npy").write_bytes(b"\x93NUMPY damaged")  # as a crash or a full disk might leave it
    (cache / f".{folder.name}.999.partial").mkdir()  # a build that was killed: never read
    again = load_dataset(f"imagefolder:{photo_folder}", image_size=12, cache_dir=cache)
    assert again.record() == first
    # Issue 41: an array removed by hand was a KeyError traceback ('classes') at the next run
    (folder,) = (p for p in cache.glob("imagefolder-*") if p.is_dir())
    (folder / "classes.npy").unlink()
    assert load_dataset(f"imagefolder:{photo_folder}", image_size=12, cache_dir=cache).record() == first
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")  # a cache folder that cannot be made (as a read-only one, even for root)
    with pytest.raises(BenchError, match="cannot write the decode cache in .*: --cache-dir DIR"):
        load_dataset(f"imagefolder:{photo_folder}", image_size=12, cache_dir=not_a_folder / "sub")


# --- CIFAR-10 and MNIST file formats -------------------------------------------------------------------


def _write_cifar(root: Path, n: int = 20) -> Path:
    """torchvision's cifar-10-batches-py layout, in CIFAR's own pickle format (random pixels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


def test_cifar10_python_batches_are_read(tmp_path):
    _write_cifar(tmp_path)
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert data.input_shape == (3, 32, 32) and len(data.train) == 100 and len(data.test) == 20
    assert data.classes[3] == "cat"


def test_cifar10_binary_batches_are_read(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, (10, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        (folder / name).write_bytes(records.tobytes())
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert len(data.train) == 50 and data.test.images.shape == (10, 3, 32, 32)


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path):
    folder = _write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(BenchError, match="data_batch_3 is not a readable CIFAR-10 batch.*refusing to load"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_missing_cifar10_is_one_line_naming_the_files(invoke, tmp_path):
    result = invoke("run", "--plugin", "cnn_vgg", "--dataset", "cifar10", "--data-dir", tmp_path / "none")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "cifar10: files not found: expected data_batch_1" in result.output
    assert "--download" in result.output


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_mnist(root: Path, labels_max: int = 9) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        _idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, labels_max + 1, n))
    return raw


def test_mnist_files_damaged_or_with_bad_labels_are_named(tmp_path):
    raw = _write_mnist(tmp_path / "ok")
    assert len(load_dataset("mnist", data_dir=tmp_path / "ok").train) == 30
    bad_labels = _write_mnist(tmp_path / "labels", labels_max=12)
    with pytest.raises(BenchError, match=f"{re.escape(str(bad_labels))}.*label 1[0-2] out of range"):
        load_dataset("mnist", data_dir=tmp_path / "labels")
    truncated = _write_mnist(tmp_path / "truncated")
    path = truncated / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(BenchError, match=f"{re.escape(str(path))} is damaged"):
        load_dataset("mnist", data_dir=tmp_path / "truncated")
    with pytest.raises(BenchError, match="not an IDX file"):
        (tmp_path / "x.idx").write_bytes(b"\x00\x00\x09\x03" + b"\x00" * 20)
        read_idx(tmp_path / "x.idx", 3)
    assert raw.is_dir()


# --- augmentation ----------------------------------------------------------------------------------------


def test_augmentations_are_what_they_say_and_seeded():
    x = torch.randint(0, 256, (256, 3, 12, 12), dtype=torch.uint8)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    flipped = augment(x, ("flip",), g())
    same, mirrored = (
        [torch.equal(a, b) for a, b in zip(flipped, x, strict=True)],
        [torch.equal(a, b.flip(2)) for a, b in zip(flipped, x, strict=True)],
    )
    assert all(s or m for s, m in zip(same, mirrored, strict=True)) and 80 < sum(mirrored) < 176
    cropped = augment(x, ("crop",), g())
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(0, 256, 37):
        assert any(
            torch.equal(cropped[i], padded[i, :, dy : dy + 12, dx : dx + 12]) for dy in range(9) for dx in range(9)
        )
    translated = augment(x, ("translate",), g())
    reflected = F.pad(x.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    offsets = [
        [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(translated[i], reflected[i, :, dy : dy + 12, dx : dx + 12])
        ]
        for i in range(256)
    ]
    assert all(offsets) and len({o[0] for o in offsets}) > 15
    gray = augment(x, ("grayscale",), g())
    changed = [i for i in range(256) if not torch.equal(gray[i], x[i])]
    assert 5 < len(changed) < 60 and all(torch.equal(gray[i, 0], gray[i, 1]) for i in changed)
    assert torch.equal(augment(x, ("flip", "crop", "grayscale"), g()), augment(x, ("flip", "crop", "grayscale"), g()))
    assert augment(x, (), g()) is x


def test_bf16_channels_last_and_augment_are_recorded_and_the_checkpoint_reproduces(invoke, store_path):
    result = invoke(
        "run",
        "--arch",
        "cnn_baseline",
        "--epochs",
        "2",
        "--precision",
        "bf16",
        "--channels-last",
        "--augment",
        "flip",
        "--no-benchmark",
        "-q",
    )
    assert result.exit_code == 0, result.output
    (row,) = invoke.json("report")
    hp = row["hparams"]
    assert (hp["precision"], hp["channels_last"], hp["augment"], hp["compile"]) == ("bf16", True, "flip", False)
    from bench.data.splits import Normalizer
    from bench.plugins.manager import get_registry
    from bench.train import checkpoints
    from bench.train.loop import evaluate

    model = get_registry().get("cnn_baseline").build((1, 8, 8), 10, row["variant"])
    model.load_state_dict(checkpoints.load(row["checkpoint"], row["checkpoint_sha256"])[0])
    data = load_dataset("digits")
    assert evaluate(model, data.test, Normalizer(data)).acc == row["test_acc"]


class ViewNet(nn.Module):
    """Flattens with .view, as many hand-written models do: that fails on channels_last activations."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], 8, 3, padding=1)
        self.fc = nn.Linear(8 * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


class ViewPlugin:
    @bench.hookimpl
    def register_architectures(self, register):
        register("view_net", ViewNet, defaults={"epochs": 1})


def test_default_precision_and_layout_are_the_measured_fastest_and_recorded_per_trial(invoke):
    # auto: channels_last when the model accepts it; bf16 for a model of >= 5 MFLOPs per image on a CPU with
    # fast bf16 (the VGG-like net at 8x8 is 19 MFLOPs), fp32 for the tiny baseline (0.06 MFLOPs).
    plugins.register_in_process(ViewPlugin(), name="view_plugin")
    try:
        result = invoke(
            "run",
            *("--arch", "cnn_baseline", "--arch", "cnn_vgg", "--arch", "view_net"),
            *("--limit-train", "300"),  # what each trial trains in is the point, not how well
            "--epochs",
            "1",
            "--no-benchmark",
            "-q",
        )
    finally:
        plugins.unregister_in_process("view_plugin")
    assert result.exit_code == 0, result.output
    rows = {r["architecture"]: r for r in invoke.json("report")}
    assert all(r["status"] == "completed" for r in rows.values())
    modes = {a: (r["hparams"]["precision"], r["hparams"]["channels_last"]) for a, r in rows.items()}
    fast_bf16 = bf16_is_fast(torch.device("cpu"))
    assert modes == {
        "cnn_baseline": ("fp32", True),
        "cnn_vgg": ("bf16" if fast_bf16 else "fp32", True),
        "view_net": ("fp32", False),  # .view cannot take NHWC activations: standard layout, and it trains
    }
    result = invoke(
        *("run", "--arch", "cnn_vgg", "--limit-train", "300", "--epochs", "1", "--precision", "fp32"),
        *("--no-channels-last", "--no-benchmark", "-q"),
    )
    assert result.exit_code == 0, result.output
    row = invoke.json("report")[0]
    assert (row["hparams"]["precision"], row["hparams"]["channels_last"]) == ("fp32", False)


class WideNet(nn.Sequential):
    """19 MFLOPs per digits image: 'auto' would pick bf16 on a CPU with fast bf16."""

    def __init__(self, input_shape, num_classes):
        super().__init__(
            nn.Conv2d(input_shape[0], 128, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, num_classes),
        )


class MeasuredPlugin:
    @bench.hookimpl
    def register_architectures(self, register):
        register("wide_fp32", WideNet, defaults={"epochs": 1, "precision": "fp32"})


def test_a_plugin_default_precision_replaces_auto_and_an_explicit_one_wins(invoke):
    plugins.register_in_process(MeasuredPlugin(), name="measured_plugin")
    try:
        precisions = []
        for extra in ((), ("--precision", "bf16")):
            # what the trial trains in is the point, not how well: 100 images
            result = invoke("run", "--arch", "wide_fp32", *extra, "--limit-train", "100", "--no-benchmark", "-q")
            assert result.exit_code == 0, result.output
            precisions.append(invoke.json("report")[0]["hparams"]["precision"])
    finally:
        plugins.unregister_in_process("measured_plugin")
    assert precisions == ["fp32", "bf16"]
    from bench.core.errors import PluginError
    from bench.models.registry import Registry

    with pytest.raises(PluginError, match="default precision='fp16', which is not one of auto, fp32, bf16"):
        Registry().register_callback("p")("x", WideNet, defaults={"precision": "fp16"})


def test_auto_is_resolved_once_when_the_run_is_planned_and_the_trainer_refuses_it(digits, tmp_path):
    from bench.data.splits import Normalizer
    from bench.train.loop import HParams, train_trial
    from bench.train.precision import resolve_speed

    model = ViewNet(digits.input_shape, digits.num_classes)
    with pytest.raises(ValueError, match="resolved precision"):
        train_trial(model, digits.split(0.2, 0), Normalizer(digits), HParams(epochs=1), tmp_path / "b.pt", 10)
    hp = resolve_speed(HParams(epochs=1), model, digits.input_shape, torch.device("cpu"))
    assert (hp.precision, hp.channels_last) == ("fp32", False)  # a .view after a convolution: no NHWC
    result = train_trial(model, digits.split(0.2, 0), Normalizer(digits), hp, tmp_path / "b.pt", 10)
    assert result.status == "completed"


# --- sweep files -------------------------------------------------------------------------------------------


def test_config_file_sets_options_and_the_command_line_overrides_it_option_by_option(invoke, tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(
        'plugin = "cnn_dropout"\nlr = [0.001, 0.003]\nepochs = 5\noptimizer = "adam"\n'
        'where = { kernel_size = [3], feature_maps = ["32-64"], dropout = [0.0] }\n'
        "no-benchmark = true\n"
    )
    # --where replaces the file's filter for dropout only: the file's kernel size and maps stay (not every variant
    # with dropout 0.2)
    result = invoke("run", "--config", config, "--epochs", "1", "--where", "dropout=0.2", "-q")
    assert result.exit_code == 0, result.output
    rows = invoke.json("report")
    assert sorted(r["hparams"]["lr"] for r in rows) == [0.001, 0.003]
    assert {r["hparams"]["epochs"] for r in rows} == {1} and all(r["onnx"] is None for r in rows)
    assert [(r["variant"]["kernel_size"], r["variant"]["feature_maps"], r["variant"]["dropout"]) for r in rows] == [
        (3, [32, 64], 0.2)
    ] * 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("learning_rate = 0.1", "unknown key 'learning_rate'"),
        ('lr = "fast"', "key 'lr': expected a number (or a list of them), not the text 'fast'"),
        ("epochs = 0", "key 'epochs': Invalid value for '--epochs': 0 (an integer >= 1)"),
        ("batch_size = [32, 0]", "key 'batch_size'"),
        ('epochs = [1, "x"]', "key 'epochs'"),
        ("no-benchmark = 3", "key 'no-benchmark': expected true or false"),
        ("where = 3", "key 'where': expected a table"),
        ("lr = ", "is not valid TOML"),
    ],
)
def test_config_file_errors_name_the_key_and_the_file(invoke, tmp_path, content, message):
    config = tmp_path / "bad.toml"
    config.write_text(f'plugin = "cnn_dropout"\n{content}\n')
    result = invoke("run", "--config", config)
    assert result.exit_code == 2 and message in result.output and "bad.toml" in result.output
    assert "Traceback" not in result.output


def test_the_lab_config_parses_and_asks_for_cifar10(invoke, tmp_path):
    result = invoke("run", "--config", ROOT / "configs" / "rob313.toml", "--data-dir", tmp_path)
    assert result.exit_code == 1 and "cifar10: files not found" in result.output


# --- the hook -----------------------------------------------------------------------------------------------


def test_hook_register_datasets(invoke):
    """The documented dataset plugin: registered, listed, and trained on."""
    section = (ROOT / "docs" / "plugins.md").read_text().split("## register_datasets(register)", 1)[1]
    code = re.search(r"```python\n(.+?)```", section, flags=re.S).group(1)
    module = types.ModuleType("noise_plugin")
    exec(code, module.__dict__)
    plugins.register_in_process(module, name="noise_plugin")
    try:
        listed = {d["name"]: d for d in invoke.json("datasets")}
        assert listed["noise"]["plugin"] == "noise_plugin" and listed["noise"]["input_shape"] == [3, 16, 16]
        result = invoke("run", "--arch", "cnn_baseline", "--dataset", "noise", "--epochs", "1", "--no-benchmark", "-q")
        assert result.exit_code == 0, result.output
        (row,) = invoke.json("report")
        assert row["status"] == "completed" and row["split"]["test"] == 50
    finally:
        plugins.unregister_in_process("noise_plugin")


def test_limit_train_is_a_seeded_stratified_subset_and_the_test_part_stays_whole(invoke, store_path):
    full = load_dataset("digits")
    data = load_dataset("digits", limit_train=100)
    again = load_dataset("digits", limit_train=100)
    assert len(data.train) == 100 and torch.equal(data.train.labels, again.train.labels)
    assert torch.equal(data.test.labels, full.test.labels) and data.mean == full.mean
    counts = torch.bincount(data.train.labels, minlength=10)
    assert counts.min() >= 8 and counts.max() <= 12  # each class keeps its share (about 10 of 100)
    result = invoke(
        "run",
        "--arch",
        "cnn_baseline",
        "--limit-train",
        "100",
        "--epochs",
        "1",
        "--no-benchmark",
    )
    assert result.exit_code == 0, result.output
    (row,) = invoke.json("report")
    assert row["split"]["train"] + row["split"]["val"] == 100
    # the run's subset: the one it pinned (the trial named, as one epoch on 90 images may leave it at chance)
    assert invoke("export", "latest", "t001", "--exporter", "torchscript").exit_code == 0
    assert invoke.json("report")[0]["onnx"]["status"] == "ok"


def test_parallel_decoding_gives_the_images_of_one_process_in_order_and_names_a_broken_file(
    photo_folder, tmp_path, monkeypatch
):
    from bench.data import folders as datasets

    monkeypatch.setattr(datasets, "PARALLEL_FROM", 1)  # 80 photos, in chunks over two worker processes
    paths = sorted(photo_folder.rglob("*.jpg"))
    positions = list(reversed(range(len(paths))))  # each image written where it is asked to go

    def decoded(workers, name):
        datasets.open_array(tmp_path / name, (len(paths), 3, 16, 20))
        gray = datasets.decode_images(paths, 20, 16, tmp_path / name, positions, workers=workers)
        return gray, np.load(tmp_path / name)

    (gray_one, one), (gray_two, two) = decoded(1, "one.npy"), decoded(2, "two.npy")
    assert not gray_one and not gray_two and np.array_equal(one, two)
    assert one[-1].any() and one[0].any()  # every position written
    from PIL import Image

    with Image.open(paths[0]) as im:
        assert np.array_equal(
            one[-1], np.asarray(im.convert("RGB").resize((20, 16), Image.BILINEAR)).transpose(2, 0, 1)
        )
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    datasets.open_array(tmp_path / "bad.npy", (len(paths) + 1, 3, 16, 20))
    with pytest.raises(BenchError, match=f"cannot read image {re.escape(str(bad))}"):
        datasets.decode_images([*paths, bad], 20, 16, tmp_path / "bad.npy", workers=2)
