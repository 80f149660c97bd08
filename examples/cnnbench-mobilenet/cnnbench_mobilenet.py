"""cnnbench plugin: MobileNet-style CNNs made of depthwise-separable convolutions."""

from torch import nn

import bench


def separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 (one filter per channel) then pointwise 1x1: ~8x fewer multiply-adds than a full 3x3."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def build(input_shape, num_classes, width=1.0, blocks=4):
    """A stem conv, then ``blocks`` separable blocks doubling the channels at each stride-2 block. Downsampling
    stops at 2x2, so the same family builds for 8x8 digits and 32x32 CIFAR images."""
    c = max(8, int(32 * width))
    layers = [nn.Conv2d(input_shape[0], c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
    size = min(input_shape[1:])
    for i in range(blocks):
        stride = 2 if i % 2 == 1 and size > 2 else 1
        out = c * 2 if stride == 2 else c
        layers.append(separable(c, out, stride))
        c, size = out, (size + 1) // 2 if stride == 2 else size
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


@bench.hookimpl
def register_architectures(register):
    register(
        "mobilenet_ds",
        build,
        variants={"width": [0.5, 1.0], "blocks": [4, 6]},
        default_variants=[{"width": 0.5, "blocks": 4}, {"width": 1.0, "blocks": 4}],
        description="MobileNet-style: depthwise-separable conv blocks, batch norm, global average pooling.",
        defaults={"optimizer": "adam", "lr": 0.003, "batch_size": 64, "epochs": 10},
    )
