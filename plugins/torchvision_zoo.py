"""The classification families of torchvision.models, built untrained for any input: the references people cite
(ResNet, MobileNet, EfficientNet, ShuffleNet, RegNet, SqueezeNet, ConvNeXt) beside the lab's own nets. Each model
is one architecture, `tv_<model>`, with two variant axes:

- `model`: its torchvision name (one value per architecture, so `--where model=resnet18,mobilenet_v3_small`
  picks models across the plugin);
- `stem`: `imagenet`, the first layers as published (a strided first convolution and, in some families, a
  max-pool: a 32x32 image is 8x8 after them), or `small`, the usual CIFAR adaptation: the first convolution 3x3
  with stride 1 and no max-pool before the second convolution. Both are done generically, on the first
  convolution and first max-pool of the model, for every family.

- `weights`: `random` (the default), or `imagenet`: torchvision's published weights (its `DEFAULT`), read from torch
  hub's checkpoint folder where they already are on this machine (nothing is downloaded: a missing file is one line
  saying how to fetch it once). What fits is loaded; the classifier for another class count, and a first
  convolution the `small` stem replaces, keep their initialization; one-channel images get the first convolution's
  weights summed over its three colour channels.

The first convolution always takes the dataset's channel count (one-channel images work); the classifier has the
dataset's class count (`num_classes` of torchvision's builder)."""

from __future__ import annotations

import torch
from torch import nn

import bench

# torchvision name -> recipe. SGD with Nesterov momentum and a cosine schedule for the convolutional families;
# AdamW with a warm-up (one cycle: 30% of the steps) for ConvNeXt, as published.
MODELS = {
    "resnet18": "sgd",
    "resnet34": "sgd",
    "resnet50": "sgd",
    "mobilenet_v2": "sgd",
    "mobilenet_v3_small": "sgd",
    "mobilenet_v3_large": "sgd",
    "efficientnet_b0": "sgd",
    "shufflenet_v2_x1_0": "sgd",
    "regnet_y_400mf": "sgd",
    "squeezenet1_1": "sgd",
    "convnext_tiny": "adamw",
}
RECIPES = {
    "sgd": {
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "batch_size": 128,
        "schedule": "cosine",
    },
    "adamw": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "batch_size": 128, "schedule": "onecycle"},
}
STEMS = ["small", "imagenet"]
WEIGHTS = ["random", "imagenet"]


def _first(model: nn.Module, kind: type) -> tuple[str, nn.Module] | None:
    return next(((name, m) for name, m in model.named_modules() if isinstance(m, kind)), None)


def adapt_stem(model: nn.Module, in_channels: int, stem: str) -> nn.Module:
    """Give ``model``'s first convolution ``in_channels`` inputs; with ``stem='small'`` make it 3x3 stride 1 and
    drop a max-pool that comes before the second convolution."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}, not {stem!r}")
    name, conv = _first(model, nn.Conv2d)
    if conv.groups != 1:
        raise ValueError(f"the first convolution of {type(model).__name__} is grouped: its stem cannot be adapted")
    if stem == "imagenet" and in_channels in (conv.in_channels, 1):  # as published: its weights kept (summed to gray)
        if in_channels != conv.in_channels:
            gray = nn.Conv2d(
                1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
            )
            with torch.no_grad():
                gray.weight.copy_(conv.weight.sum(1, keepdim=True))
                if conv.bias is not None:
                    gray.bias.copy_(conv.bias)
            model.set_submodule(name, gray)
        return model
    geometry = (
        dict(kernel_size=3, stride=1, padding=1)
        if stem == "small"
        else dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding)
    )
    model.set_submodule(name, nn.Conv2d(in_channels, conv.out_channels, bias=conv.bias is not None, **geometry))
    if stem == "small":
        order = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.MaxPool2d)]
        convs = [i for i, (_, m) in enumerate(order) if isinstance(m, nn.Conv2d)]
        early = [n for n, m in order[: convs[1] if len(convs) > 1 else len(order)] if isinstance(m, nn.MaxPool2d)]
        for pool in early:
            model.set_submodule(pool, nn.Identity())
    return model


def published_weights(model: str) -> dict:
    """torchvision's DEFAULT weights of ``model`` from torch hub's checkpoint folder, never downloaded."""
    import os

    import torch
    import torchvision

    url = torchvision.models.get_model_weights(model).DEFAULT.url
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if not os.path.isfile(path):
        raise bench.BenchError(
            f"torchvision's weights of {model} are not on this machine ({path}); cnnbench does not download: fetch "
            f"them once online (torchvision.models.get_model('{model}', weights='DEFAULT')), or use weights=random"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def build(input_shape, num_classes, model="resnet18", stem="small", weights="random"):
    import torchvision

    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    net = torchvision.models.get_model(model, weights=None, num_classes=num_classes)
    if weights == "imagenet":
        own = net.state_dict()
        state = {k: v for k, v in published_weights(model).items() if k in own and own[k].shape == v.shape}
        net.load_state_dict(state, strict=False)  # the classifier of another class count keeps its initialization
    return adapt_stem(net, input_shape[0], stem)


@bench.hookimpl
def register_architectures(register):
    for model, recipe in MODELS.items():
        register(
            f"tv_{model}",
            build,
            variants={"model": [model], "stem": STEMS, "weights": WEIGHTS},
            default_variants=[{"model": model, "stem": "small", "weights": "random"}],
            description=f"torchvision.models {model}; stem small (3x3 stride 1, no early max-pool) or imagenet (as "
            "published); weights random or imagenet (torchvision's, from the local torch hub cache only).",
            defaults=RECIPES[recipe],
        )
