"""The family the ROB313 lab explored: kernel size, feature-map progression, convs per block,
fully connected head, and the number and rate of dropout layers."""

from torch import nn

import bench

AXES = {
    "kernel_size": [3, 5, 7],
    "feature_maps": [(32, 64), (32, 64, 128)],
    "convs_per_block": [1, 2],
    "head": [(64,), (256, 64)],
}


def build(
    input_shape,
    num_classes,
    kernel_size=3,
    feature_maps=(32, 64),
    convs_per_block=1,
    head=(64,),
    dropout=0.0,
    dropout_layers=0,
):
    layers, channels = [], input_shape[0]
    for maps in feature_maps:
        layers += bench.conv_stage(channels, maps, kernel_size, convs_per_block)
        channels = maps
    features = nn.Sequential(*layers)
    head = tuple(head)
    # One dropout goes before the last linear layer; a second one before the first (on the conv features).
    dropout_at = {len(head), 0} if dropout_layers >= 2 else {len(head)} if dropout_layers == 1 else set()
    classifier = bench.mlp_head(bench.flat_features(features, input_shape), head, num_classes, dropout, dropout_at)
    return nn.Sequential(features, nn.Flatten(), classifier)


@bench.hookimpl
def register_architectures(register):
    register(
        "cnn_dropout",
        build,
        # Two grids, so that "no dropout" appears once rather than once per dropout count.
        variants=[
            {**AXES, "dropout": [0.0], "dropout_layers": [0]},
            {**AXES, "dropout": [0.2, 0.5], "dropout_layers": [1, 2]},
        ],
        default_variants=[
            {
                "kernel_size": 3,
                "feature_maps": (32, 64),
                "convs_per_block": 1,
                "head": (64,),
                "dropout": 0.0,
                "dropout_layers": 0,
            },
            {
                "kernel_size": 3,
                "feature_maps": (32, 64),
                "convs_per_block": 1,
                "head": (64,),
                "dropout": 0.2,
                "dropout_layers": 1,
            },
            {
                "kernel_size": 5,
                "feature_maps": (32, 64),
                "convs_per_block": 1,
                "head": (64,),
                "dropout": 0.2,
                "dropout_layers": 1,
            },
            {
                "kernel_size": 3,
                "feature_maps": (32, 64, 128),
                "convs_per_block": 2,
                "head": (256, 64),
                "dropout": 0.2,
                "dropout_layers": 1,
            },
        ],
        description="Lab CNNs with dropout: kernel 3/5/7, maps 32-64(-128), 1-2 convs per block, "
        "FC head 64 or 256-64, 0-2 dropout layers at rate 0.2/0.5.",
        defaults={"optimizer": "adam", "lr": 0.001, "batch_size": 32, "epochs": 15},
    )
