"""Any model of timm (PyTorch Image Models, Ross Wightman) as architecture `timm`: `--where model=NAME[,NAME...]`
takes any name of `timm.list_models()`; without it a curated default set runs (`bench list timm`). Built with
`timm.create_model(NAME, pretrained=..., num_classes=<the dataset's>, in_chans=<the dataset's>)`.

Weights (`--where weights=random|pretrained`): random by default. `pretrained` loads the weights timm would download,
but only from what is already on this machine (timm's and the Hugging Face cache, offline): a missing file is one
clear error, never a download or a hang. timm is an optional extra: `pip install 'cnnbench[timm]'`; without it this
plugin registers nothing and says so in `bench plugins`."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

import bench

INSTALL = "timm is not installed: pip install 'cnnbench[timm]' (or pip install timm)"
# Small, quick ones from the families people compare against: residual, depthwise, efficient, attention-free mixers.
DEFAULTS = ["resnet10t", "mobilenetv3_small_050", "efficientnet_b0", "ghostnet_100", "regnetx_002"]


class TimmMissing(ImportError):
    pass


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise TimmMissing(INSTALL) from exc
    return timm


def local_weights(timm, model: str) -> str | None:
    """The file of ``model``'s pretrained weights if it is already on this machine (the Hugging Face cache, or
    torch hub's checkpoint folder for weights timm fetches by URL), else None. Nothing is downloaded."""
    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for name in filter(None, (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")):
            found = try_to_load_from_cache(cfg.hf_hub_id, name)
            if isinstance(found, str):
                return found
    if cfg.url:
        import torch

        found = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if found.is_file():
            return str(found)
    return None


def build(input_shape, num_classes, model="resnet10t", weights="random"):
    timm = _timm()
    if weights == "random":
        return timm.create_model(model, pretrained=False, num_classes=num_classes, in_chans=input_shape[0])
    path = local_weights(timm, model)
    if path is None:
        raise RuntimeError(
            f"no pretrained weights for timm model {model!r} on this machine; cnnbench does not "
            "download: fetch them once (timm.create_model(NAME, pretrained=True) online), or use "
            "weights=random"
        )
    return timm.create_model(
        model, pretrained=True, pretrained_cfg_overlay={"file": path}, num_classes=num_classes, in_chans=input_shape[0]
    )


def model_names() -> list[str]:
    """timm.list_models(), kept in cnnbench's cache per timm version: importing timm to list them takes a second or
    two, which every start of cnnbench would pay for a plugin most runs do not use."""
    try:
        if importlib.util.find_spec("timm") is None:  # not installed (or not importable here)
            raise TimmMissing(INSTALL)
        key = {"name": "timm-models", "timm": version("timm")}
    except (PackageNotFoundError, ValueError):
        raise TimmMissing(INSTALL) from None
    arrays = bench.cached([], key, lambda: {"names": np.array(_timm().list_models())})
    return [str(name) for name in arrays["names"]]


@bench.hookimpl
def register_architectures(register):
    names = model_names()  # without timm, the plugin is listed with INSTALL as its error
    register(
        "timm",
        build,
        variants={"model": names, "weights": ["random", "pretrained"]},
        default_variants=[{"model": m, "weights": "random"} for m in DEFAULTS if m in names],
        description=f"Any timm model ({len(names)} names): --where model=NAME[,NAME...]; weights random or "
        "pretrained (from the local cache only).",
        defaults={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "batch_size": 128, "schedule": "cosine"},
    )
