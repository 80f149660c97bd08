"""A modern small residual network for 32x32 images (He et al.'s CIFAR ResNets: ResNet-8/14/20): 3x3 convs
with batch norm, residual blocks in three stages of 16/32/64 maps (x width), global average pooling.
Stronger than the lab's VGG-like winner with 8x fewer parameters at ResNet-20."""

from torch import nn

import bench


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (1x1 conv when the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def build(input_shape, num_classes, depth=20, width=16):
    """depth = 6n + 2 (8, 14, 20): n blocks per stage; stages of width, 2 x width, 4 x width maps, the last two
    starting with stride 2 (skipped when the map is already 1x1, so it builds for 8x8 inputs too)."""
    if (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 (8, 14, 20, ...), not {depth}")
    n = (depth - 2) // 6
    layers = [nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    channels, size = width, min(input_shape[1:])
    for stage, out in enumerate((width, 2 * width, 4 * width)):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 and size > 1 else 1
            layers.append(Block(channels, out, stride))
            channels, size = out, (size + 1) // 2 if stride == 2 else size
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


@bench.hookimpl
def register_architectures(register):
    register(
        "resnet",
        build,
        variants={"depth": [8, 14, 20], "width": [16, 32]},
        default_variants=[{"depth": 8, "width": 16}, {"depth": 20, "width": 16}],
        description="CIFAR-style ResNet: residual blocks with batch norm, 3 stages 16/32/64 x width, avg pool.",
        defaults={
            "optimizer": "sgd",
            "lr": 0.05,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "batch_size": 128,
            "epochs": 20,
        },
    )
