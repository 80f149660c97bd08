"""How a plugin tests itself: through cnnbench's own registry, as cnnbench will load it."""

import pytest
import torch

import bench


def test_the_plugin_is_found_through_its_entry_point():
    info = bench.get_plugins().plugin("mobilenet")
    assert info.error is None and info.architectures == ["mobilenet_ds"]


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_every_variant_trains_one_step_on_any_input(shape):
    arch = bench.get_plugins().registry.get("mobilenet_ds")
    for variant in arch.variants("all"):
        model = arch.build(shape, 10, variant)
        out = model(torch.randn(4, *shape))
        assert out.shape == (4, 10) and torch.isfinite(out).all()
        out.sum().backward()
