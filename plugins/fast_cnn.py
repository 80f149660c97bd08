"""A fast-training CNN for 32x32 images, after airbench (Keller Jordan, 2024: CIFAR-10 to 94% in seconds on a
GPU): a 3x3 stem, then three groups of [conv3x3 - max-pool - BN - GELU - conv3x3 - BN - GELU], global max
pooling and one linear layer. Pooling right after each group's first convolution keeps most of the work on
small maps. airbench's flip test-time augmentation is the variant tta=True, its six views (flip x one-pixel
shifts) tta="translate" (inside the model, so exported and measured with it). The variant tricks="airbench"
adds airbench's initialization and optimization devices: its patch-whitening stem, fitted to the training images
through the trainer's init_from_data protocol, identity initialization, fixed batch-norm scales with fast
biases, scaled logits. Its lookahead is the trainer's (--lookahead), since it changes the optimization of any
model."""

import torch
from torch import nn

import bench

BIAS_LR_SCALE = 64  # airbench: batch-norm biases train at 64x the learning rate, their scales not at all


def norm(channels: int, tricks: str) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    if tricks == "airbench":
        bn.weight.requires_grad_(False)
        bn.bias.lr_scale = BIAS_LR_SCALE
    return bn


def conv(in_channels: int, out_channels: int, tricks: str) -> nn.Conv2d:
    layer = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    if tricks == "airbench":  # identity for the first in_channels maps: an implicit residual path at the start
        with torch.no_grad():
            nn.init.dirac_(layer.weight[: min(in_channels, out_channels)])
    return layer


def group(in_channels: int, out_channels: int, ceil_mode: bool = True, tricks: str = "none") -> list[nn.Module]:
    return [
        conv(in_channels, out_channels, tricks),
        nn.MaxPool2d(2, ceil_mode=ceil_mode),
        norm(out_channels, tricks),
        nn.GELU(),
        conv(out_channels, out_channels, tricks),
        norm(out_channels, tricks),
        nn.GELU(),
    ]


def build(input_shape, num_classes, widths=(64, 128, 256), stem=32, geometry="padded", tta=False, tricks="none"):
    """``geometry``: ``padded`` (a 3x3 stem with padding, pooling rounding up: 32 -> 16 -> 8 -> 4 on CIFAR) or
    ``airbench`` (airbench's: a 2x2 stem without padding, pooling rounding down: 31 -> 15 -> 7 -> 3, about 25%
    fewer FLOPs in the later groups). ``tta``: evaluate (and export) the average of the logits of the image and
    its mirror image (True: airbench's flip test-time augmentation, two passes), or airbench's six views
    ("translate": flip x the image shifted one pixel up-left and down-right, six passes); training is unchanged.
    ``tricks``: ``none``, or ``airbench`` (its ablations, cifar10-zoo: each saves epochs): the stem is a 2x2
    patch-whitening convolution fitted to the training images and then fixed (2 x 4 x channels maps, 24 for
    RGB, in place of ``stem``; no batch norm after it), every 3x3 convolution starts as an identity on its
    first maps (dirac), batch-norm scales stay at 1 while their biases train at 64x the learning rate, and the
    logits are scaled by 1/9."""
    airbench = geometry == "airbench"
    if tricks == "airbench":
        stem_conv = bench.PatchWhitening(input_shape[0], 2)
        layers, stem = [stem_conv, nn.GELU()], stem_conv.out_channels
    else:
        stem_conv = (
            nn.Conv2d(input_shape[0], stem, 2, bias=False)
            if airbench
            else nn.Conv2d(input_shape[0], stem, 3, padding=1, bias=False)
        )
        layers = [stem_conv, nn.BatchNorm2d(stem), nn.GELU()]
    channels, size = stem, min(input_shape[1:]) - (airbench or tricks == "airbench")
    for width in widths:
        ceil_mode = not airbench or size < 2  # never pool a map away (8x8 digits: 7 -> 3 -> 1 -> 1)
        layers += group(channels, width, ceil_mode, tricks)
        size = -(-size // 2) if ceil_mode else size // 2
        channels = width
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes, bias=False)]
    if tricks == "airbench":
        layers.append(bench.Scale(1 / 9))
    net = nn.Sequential(*layers)
    if tta == "translate":
        return bench.FlipTranslateAverage(net)
    return bench.FlipAverage(net) if tta else net


@bench.hookimpl
def register_architectures(register):
    register(
        "fast_cnn",
        build,
        variants={
            "widths": [(64, 128, 256), (64, 192, 256), (64, 256, 256), (32, 64, 128)],
            "stem": [32, 24],
            "geometry": ["padded", "airbench"],
            "tta": [False, True, "translate"],
            "tricks": ["none", "airbench"],
        },
        default_variants=[{"widths": (64, 128, 256), "stem": 32, "geometry": "padded", "tta": False, "tricks": "none"}],
        description="Fast-training CNN after airbench: 3 x [conv-pool-BN-GELU-conv-BN-GELU] 64/128/256, max pool.",
        # configs/cifar10-fast.toml trains airbench's net with its devices (widths 64-192-256: airbench's second
        # group narrowed, geometry airbench, tta, tricks airbench) and airbench's recipe at batch 512, 12 epochs:
        # about 1,000 training images/s on a 2-core AMD EPYC in bf16, the VGG-like net 800 (README). These
        # defaults are the DAWNBench recipe (Page's ResNet-9) that the plain variants were measured with: Nesterov
        # SGD, one cycle up to 0.4, weight decay 5e-4, label smoothing 0.2, batch 512.
        defaults={
            "optimizer": "sgd",
            "lr": 0.4,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 5e-4,
            "batch_size": 512,
            "epochs": 14,
            "schedule": "onecycle",
            "warmup_epochs": 3,
            "label_smoothing": 0.2,
        },
    )
