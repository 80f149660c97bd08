"""Datasets through the plugins that register them: a dataset's registration (`dataset_info`), loaded with the run's
options (`load_dataset`), and a stored run's data, refused when it is no longer what the run recorded
(`load_run_dataset`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench.core.errors import BenchError, UsageError
from bench.data.cache import CACHE_DIR
from bench.data.registry import Request
from bench.data.splits import Dataset, check_dataset
from bench.options.option import invalid
from bench.plugins.manager import get_plugins


def dataset_info(spec: str):
    """The registered dataset for ``name`` or ``name:argument`` (see `bench datasets`)."""
    return get_plugins().datasets.entry(spec)[0]


def load_dataset(
    spec: str,
    data_dir=None,
    download: bool = False,
    image_size: int | None = None,
    mean=None,
    std=None,
    limit_train: int | None = None,
    cache_dir=None,
) -> Dataset:
    """Load ``name`` or ``name:argument`` through its plugin. ``mean`` and ``std`` replace the dataset's own
    normalization (one value per channel, or one for all); ``limit_train`` keeps that many training images
    (Dataset.limited); the normalization stays the whole dataset's."""
    entry, argument = get_plugins().datasets.entry(spec)
    request = Request(entry.name, argument, Path(data_dir) if data_dir else None, download, image_size)
    token = CACHE_DIR.set(Path(cache_dir).expanduser() if cache_dir else None)
    try:
        data = entry.load(request)
    finally:
        CACHE_DIR.reset(token)
    channels = data.input_shape[0]
    if image_size is not None and data.resize is None and tuple(data.input_shape[1:]) != (image_size, image_size):
        raise UsageError(  # a dataset that does not resize would silently ignore it
            f"--image-size {image_size}: '{spec}' does not resize its images ({data.input_shape[1]}x"
            f"{data.input_shape[2]}); --image-size is for image folders"
        )
    for option, values in (("mean", mean), ("std", std)):
        if values:
            given = ",".join(map(str, values))
            values = tuple(values) * channels if len(values) == 1 else tuple(values)
            if len(values) != channels:
                need = "one value" if channels == 1 else f"one value, or {channels} (one per channel)"
                raise invalid(option, given, f"{need} for '{spec}', whose images have {channels} channel(s)")
            if option == "std" and min(values) <= 0:
                raise UsageError("--std values must be > 0")
            data = replace(data, **{option: values})
    if limit_train is not None:
        data = data.limited(limit_train)
    check_dataset(data)
    return data


def load_run_dataset(run: dict) -> Dataset:
    """The dataset a stored run trained on, loaded with the options it recorded: refused (BenchError) when it is no
    longer the data the run recorded (its images, labels, sizes or normalization changed), since every figure of
    the run would otherwise be measured on other images than it claims."""
    from bench.options.config import RunConfig

    data = load_dataset(run["dataset"], **RunConfig.from_record(run["config"]).data_options())
    recorded = run.get("data")
    if recorded:  # runs recorded before store schema 8 did not pin their data
        now = data.record()
        if now["fingerprint"] != recorded["fingerprint"]:
            changes = [
                f"{k} {recorded[k]} -> {now[k]}"
                for k in ("train", "test", "mean", "std", "pixel_scale")
                if now.get(k) != recorded.get(k)
            ]
            raise BenchError(
                f"the data of run {run['id']} ({run['dataset']}) changed since the run recorded it"
                f" ({', '.join(changes) or 'same sizes, other images'}): its checkpoints, exports and figures belong"
                " to the recorded data; restore it, or start a new run on the new data"
            )
    return data
