"""Architectures: what plugins registered (the registry, variant spaces, model construction), the layers built-in
architectures are made of, and a model's parameters, FLOPs and activations.

    registry.py  Architecture, Registry: register_architectures' entries and their variants
    layers.py    conv stages, heads, test-time augmentation, airbench's whitening stem
    stats.py     parameters, forward FLOPs, activation bytes"""
