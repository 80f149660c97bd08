"""The ROB313 lab's starting CNN: one 3x3 conv with 18 maps, ReLU, max-pool, FC 64, FC classes."""

from torch import nn

import bench


def build(input_shape, num_classes, filters=18, kernel_size=3, hidden=64):
    features = nn.Sequential(*bench.conv_stage(input_shape[0], filters, kernel_size))
    head = bench.mlp_head(bench.flat_features(features, input_shape), (hidden,), num_classes)
    return nn.Sequential(features, nn.Flatten(), head)


@bench.hookimpl
def register_architectures(register):
    register(
        "cnn_baseline",
        build,
        variants={"filters": [18], "kernel_size": [3], "hidden": [64]},
        description="The lab's baseline: conv 18 3x3 + ReLU + max-pool, FC 64, FC classes (296k params on 3x32x32).",
        defaults={"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 64, "epochs": 20},
    )
