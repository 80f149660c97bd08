"""cnnbench's built-in datasets, registered through the same hook as a dataset plugin's: digits (bundled
with scikit-learn), mnist, fashion-mnist, cifar10 (torchvision's file formats) and imagefolder:PATH."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

import bench
from bench import (
    IMAGE_SUFFIXES,
    BenchError,
    Dataset,
    Request,
    Split,
    cached,
    check_image_folder,
    decode_folder,
    find_files,
    image_files,
    native_size,
    read_cifar_batch,
    read_idx,
    tensors,
)

DEFAULT_DATA_DIR = Path("data")  # torchvision's habit: ./data/MNIST/raw, ./data/cifar-10-batches-py
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # apt install dataset-fashion-mnist
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _fixed_test_order(n: int, share: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions of the training and of the test images of a test split chosen once (seed 0), for datasets
    without an official one: runs with any seed are measured on the same images."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    n_test = round(share * n)
    return order[n_test:], order[:n_test]


def _fixed_test_split(images: torch.Tensor, labels: torch.Tensor) -> tuple[Split, Split]:
    train, test = _fixed_test_order(len(labels))
    return Split(images[train], labels[train]), Split(images[test], labels[test])


def load_digits(request: Request) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, pixel values 0..16), read without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise BenchError("the digits dataset comes with scikit-learn: pip install scikit-learn")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    images, labels = tensors(table[:, :64].astype(np.uint8).reshape(-1, 1, 8, 8), table[:, 64].astype(np.int64))
    train, test = _fixed_test_split(images, labels)
    return Dataset("digits", [str(i) for i in range(10)], 1 / 16, (0.3053,), (0.3760,), train, test)


def _load_idx(request: Request, name: str, folders: list[Path], classes, mean, std, torchvision_class) -> Dataset:
    how = "pass --data-dir DIR (the folder with those files, or torchvision's root), or --download" + (
        " (or: apt install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
    )
    if request.download:
        _download(torchvision_class, request.data_dir or DEFAULT_DATA_DIR, name)
    paths = find_files(name, IDX_FILES, folders, how)

    def build():
        train_x, train_y, test_x, test_y = (read_idx(p, 3 if "images" in p.name else 1) for p in paths)
        for images, labels, lp in ((train_x, train_y, paths[1]), (test_x, test_y, paths[3])):
            if len(images) != len(labels):
                raise BenchError(f"{lp}: {len(labels)} labels for {len(images)} images")
            if labels.size and labels.max() >= len(classes):
                raise BenchError(f"{lp}: label {int(labels.max())} out of range (expected 0..{len(classes) - 1})")
        return {"train_x": train_x[:, None], "train_y": train_y, "test_x": test_x[:, None], "test_y": test_y}

    arrays = cached(paths, {"name": name, "format": 2}, build)
    return Dataset(
        name,
        list(classes),
        1 / 255,
        mean,
        std,
        Split(*tensors(arrays["train_x"], arrays["train_y"])),
        Split(*tensors(arrays["test_x"], arrays["test_y"])),
    )


def _download(torchvision_class: str, root: Path, name: str) -> None:
    import torchvision.datasets as tvd

    try:
        for train in (True, False):
            getattr(tvd, torchvision_class)(str(root), train=train, download=True)
    except Exception as exc:
        raise BenchError(
            f"{name}: download failed ({exc.__class__.__name__}: {' '.join(str(exc).split())[:200]})"
        ) from exc


def load_mnist(request: Request) -> Dataset:
    root = request.data_dir or DEFAULT_DATA_DIR
    return _load_idx(
        request,
        "mnist",
        [root, root / "MNIST" / "raw", root / "mnist"],
        [str(i) for i in range(10)],
        (0.1307,),
        (0.3081,),
        "MNIST",
    )


def load_fashion_mnist(request: Request) -> Dataset:
    root = request.data_dir or DEFAULT_DATA_DIR
    folders = [root, root / "FashionMNIST" / "raw", root / "fashion-mnist"]
    if request.data_dir is None:
        folders.append(DEBIAN_FASHION)
    return _load_idx(request, "fashion-mnist", folders, FASHION_CLASSES, (0.2860,), (0.3530,), "FashionMNIST")


def load_cifar10(request: Request) -> Dataset:
    root = request.data_dir or DEFAULT_DATA_DIR
    if request.download:
        _download("CIFAR10", root, "cifar10")
    how = "pass --data-dir DIR (torchvision's root, holding cifar-10-batches-py), or --download"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    try:
        paths = find_files("cifar10", names, [root / "cifar-10-batches-py", root], how)
    except BenchError:
        try:
            paths = find_files("cifar10", [f"{n}.bin" for n in names], [root / "cifar-10-batches-bin", root], how)
        except BenchError:
            raise BenchError(
                f"cifar10: files not found: expected {', '.join(names)} in {root / 'cifar-10-batches-py'} "
                f"(or the .bin batches in {root / 'cifar-10-batches-bin'}); {how}"
            ) from None

    def build():
        batches = [read_cifar_batch(p) for p in paths]
        for (_, labels), p in zip(batches, paths, strict=True):
            if labels.size and (labels.min() < 0 or labels.max() > 9):
                raise BenchError(f"{p}: label {int(labels.max())} out of range (expected 0..9)")
        train = batches[:5]
        return {
            "train_x": np.concatenate([b[0] for b in train]),
            "train_y": np.concatenate([b[1] for b in train]),
            "test_x": batches[5][0],
            "test_y": batches[5][1],
        }

    arrays = cached(paths, {"name": "cifar10", "format": 2}, build)
    return Dataset(
        "cifar10",
        CIFAR10_CLASSES,
        1 / 255,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        Split(*tensors(arrays["train_x"], arrays["train_y"])),
        Split(*tensors(arrays["test_x"], arrays["test_y"])),
    )


def load_image_folder(request: Request) -> Dataset:
    """imagefolder:PATH. With PATH/train and PATH/test (each one subfolder per class), those are the splits;
    otherwise a fixed 20% of PATH is the test set. Mean and std are measured on the training images."""
    root = Path(request.argument).expanduser()
    parts = [root / "train", root / "test"] if (root / "train").is_dir() and (root / "test").is_dir() else [root]
    # The cache key covers the images only: not the cache files written beside them, nor anything hidden.
    sources = sorted(
        p
        for part in parts
        if part.is_dir()
        for p in part.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(x.startswith(".") for x in p.relative_to(root).parts)
        and p.is_file()  # a broken link is skipped (and counted) by image_files
    )

    def build(folder: Path):  # decoded in the order of the splits: each split is one file, read as it lies
        listed = [image_files(part) for part in parts]
        for part, (_, _, classes) in zip(parts[1:], listed[1:], strict=True):
            if classes != listed[0][2]:
                raise BenchError(f"{part}: class folders {classes} differ from those of {parts[0]}")
        if len(parts) == 2:
            split = {"train": listed[0][:2], "test": listed[1][:2]}
        else:
            files, labels, _ = listed[0]
            split = {}
            for name, order in zip(("train", "test"), _fixed_test_order(len(files)), strict=True):
                split[name] = ([files[i] for i in order.tolist()], labels[order.numpy()])
        decode_folder(folder, split, size)
        pixels = np.load(folder / "train_x.npy", mmap_mode="r")  # measured once, as the cache is made
        mean, std = Split(*tensors(pixels, np.zeros(len(pixels)))).channel_stats(1 / 255)
        return {"classes": np.array(listed[0][2]), "train_mean_std": np.array([mean, std])}

    check_image_folder(root)
    if request.image_size:
        size = (request.image_size, request.image_size)
        resize = (
            f"bilinear (Pillow, Image.Resampling.BILINEAR) from any size to {request.image_size}x{request.image_size}"
        )
    else:  # their own size (a folder of mixed sizes: the most common one)
        size, resize = native_size(sources)
    arrays = cached(
        sources, {"name": "imagefolder", "root": str(root.resolve()), "size": list(size), "format": 5}, build
    )
    classes = [str(c) for c in arrays["classes"]]
    train = Split(*tensors(arrays["train_x"], arrays["train_y"]))
    test = Split(*tensors(arrays["test_x"], arrays["test_y"]))
    means, stds = arrays["train_mean_std"].tolist()  # of the training part (with train/ and test/) or the 80%
    mean = tuple(round(m, 4) for m in means)
    std = tuple(round(max(s, 1e-3), 4) for s in stds)
    return Dataset(f"imagefolder:{request.argument}", classes, 1 / 255, mean, std, train, test, resize)


@bench.hookimpl
def register_datasets(register):
    register(
        "digits",
        load_digits,
        "scikit-learn's bundled 8x8 handwritten digits: 1438 train+val / 359 test, 10 classes, no download",
        (1, 8, 8),
        10,
    )
    register(
        "mnist",
        load_mnist,
        "handwritten digits 28x28, 60k / 10k (torchvision's MNIST files; --download)",
        (1, 28, 28),
        10,
    )
    register(
        "fashion-mnist",
        load_fashion_mnist,
        "Zalando's clothing images 28x28, 60k / 10k, 10 classes (Debian "
        "package dataset-fashion-mnist, or torchvision's FashionMNIST files)",
        (1, 28, 28),
        10,
    )
    register(
        "cifar10",
        load_cifar10,
        "CIFAR-10, 32x32 colour images, 50k / 10k, 10 classes (torchvision's cifar-10-batches-py; --download)",
        (3, 32, 32),
        10,
    )
    register(
        "imagefolder",
        load_image_folder,
        "your images: PATH/<class>/*.jpg|png|..., at their own size or --image-size; PATH/train + PATH/test "
        "if present, else a fixed 20% test split",
        takes_argument=True,
    )
