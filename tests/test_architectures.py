"""Every registered variant builds for every input shape the datasets produce, and trains."""

import pytest
import torch
from torch import nn

from bench.core.errors import PluginError, UsageError
from bench.models.registry import Registry, format_variant
from bench.models.stats import count_parameters
from bench.plugins.manager import get_registry

# The model zoos have their own tests (tests/test_zoo.py): their models are large and many (timm has over a
# thousand), and the imagenet stems, as published, shrink an 8x8 image to nothing.
ARCHS = [a for a in get_registry() if a.plugin not in ("torchvision", "timm")]


def _one_rate(variants: list[dict]) -> list[dict]:
    """A dropout rate changes no shape and no layer: the architecture's first nonzero rate stands for the others
    (cnn_dropout: 72 of its 120 variants)."""
    rates = [v["dropout"] for v in variants if v.get("dropout")]
    return [v for v in variants if not v.get("dropout") or v["dropout"] == rates[0]]


VARIANTS = [(a.name, v) for a in ARCHS for v in _one_rate(a.all_variants())]


def _covering(arch) -> list[dict]:
    """The default variants, then as few others as give every value of every parameter at least once."""
    chosen = list(arch.variants("default"))
    seen = {(k, format_variant({k: v})) for variant in chosen for k, v in variant.items()}
    for variant in arch.all_variants():
        pairs = {(k, format_variant({k: v})) for k, v in variant.items()}
        if not pairs <= seen and variant not in chosen:
            chosen.append(variant)
            seen |= pairs
    return chosen


# 8x8 is the hard shape (three pooling stages shrink it to nothing unless the model guards it): every variant.
# 3x32x32 (three channels, CIFAR's size): the default variants and every value of every parameter.
SHAPED = [((1, 8, 8), a, v) for a, v in VARIANTS] + [((3, 32, 32), a.name, v) for a in ARCHS for v in _covering(a)]


@pytest.mark.parametrize(
    ("shape", "arch", "variant"),
    SHAPED,
    ids=[f"{'x'.join(map(str, s))}-{a}[{format_variant(v)}]" for s, a, v in SHAPED],
)
def test_every_variant_builds_runs_forward_and_backward(shape, arch, variant):
    torch.manual_seed(0)
    model = get_registry().create(arch, shape, 10, **variant)
    x = torch.randn(2, *shape)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]  # not what a variant fixes (a whitening stem)
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_lab_models_have_the_lab_parameter_counts():
    reg = get_registry()
    # From the ROB313 reference: baseline 296k, VGG-like winner 2.21M on 3x32x32 CIFAR-10.
    assert count_parameters(reg.create("cnn_baseline", (3, 32, 32), 10)) == 296_130
    assert count_parameters(reg.create("cnn_vgg", (3, 32, 32), 10)) == 2_211_338


def test_builtins_register_through_entry_points_with_their_plugin_name():
    reg = get_registry()
    assert {a.name: a.plugin for a in reg if a.plugin.startswith("cnn_")} == {
        "cnn_baseline": "cnn_baseline",
        "cnn_dropout": "cnn_dropout",
        "cnn_vgg": "cnn_vgg",
    }


def test_cnn_dropout_default_set_is_small_and_full_space_is_selectable():
    arch = get_registry().get("cnn_dropout")
    assert len(arch.variants("default")) == 4
    assert len(arch.variants("all")) == 120  # no repeats: "no dropout" counted once
    k5 = arch.variants("all", where={"kernel_size": ["5"], "feature_maps": ["32-64"]})
    assert len(k5) == 20 and all(v["kernel_size"] == 5 and v["feature_maps"] == (32, 64) for v in k5)


def test_where_rejects_unknown_parameter_and_value():
    arch = get_registry().get("cnn_dropout")
    with pytest.raises(UsageError, match="no parameter 'kernel'.*kernel_size"):
        arch.variants("all", where={"kernel": ["3"]})
    with pytest.raises(UsageError, match="'4' is not a value of cnn_dropout.kernel_size"):
        arch.variants("all", where={"kernel_size": ["4"]})


def test_where_across_architectures_applies_to_those_with_the_parameter_and_says_so():
    """`--arch resnet --arch fast_cnn --where depth=8`: resnet's depth-8 variant and fast_cnn's own, not resnet
    alone; an architecture with the parameter but none of the values is left out, and both are said."""
    from bench.options.config import RunConfig
    from bench.sweep.plan import plan_run

    notes = []
    specs = plan_run(RunConfig(arch=["resnet", "fast_cnn"], where={"depth": ["8"]}), notes)
    assert {s.architecture.name for s in specs} == {"resnet", "fast_cnn"}
    assert all(s.variant["depth"] == 8 for s in specs if s.architecture.name == "resnet")
    assert "--where depth=8 does not apply to fast_cnn, which has no parameter depth" in notes
    notes = []
    specs = plan_run(RunConfig(arch=["cnn_dropout", "cnn_baseline"], where={"kernel_size": ["5"]}), notes)
    assert {s.architecture.name for s in specs} == {"cnn_dropout"}  # cnn_baseline's kernel is 3 only
    assert "--where kernel_size=5 leaves out cnn_baseline: it has none of those values" in notes
    notes = []
    specs = plan_run(RunConfig(arch=["cnn_dropout", "resnet"], where={"depth": ["8"], "kernel_size": ["5"]}), notes)
    assert "--where depth=8,kernel_size=5 does not apply to resnet, which has no parameter kernel_size" in notes
    assert {s.architecture.name for s in specs} == {"cnn_dropout", "resnet"}


def test_stored_variant_reads_back_equal():
    arch = get_registry().get("cnn_dropout")
    v = arch.variants()[3]
    import json

    assert arch.normalize(json.loads(json.dumps(v))) == v


def _factory(shape, classes, **_):
    return nn.Linear(1, classes)


def test_duplicate_name_is_an_error_naming_both_plugins():
    reg = Registry()
    reg.register_callback("first")("dup", _factory, variants={"a": [1]})
    with pytest.raises(PluginError, match="'dup' is registered twice: by plugin 'first' and by plugin 'second'"):
        reg.register_callback("second")("dup", _factory, variants={"a": [1]})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad Name"}, "invalid architecture name"),
        ({"factory": 3}, "not callable"),
        ({"variants": {"a": 1}}, "must be a list"),
        ({"variants": {"a": []}}, "is empty"),
        ({"defaults": {"learning_rate": 1}}, "unknown default hyperparameter 'learning_rate'"),
        ({"default_variants": [{"a": 9}]}, "not in its variant space"),
    ],
)
def test_bad_registrations_name_the_plugin(kwargs, message):
    args = {"name": "x", "factory": _factory, "variants": {"a": [1, 2]}, **kwargs}
    with pytest.raises(PluginError, match=message) as info:
        Registry().register_callback("someplugin")(**args)
    assert "someplugin" in str(info.value)


def test_unknown_architecture_lists_closest_first():
    with pytest.raises(UsageError, match="did you mean cnn_vgg\\?"):
        get_registry().get("cnn_vgh")


def test_flip_tta_is_mirror_invariant_in_eval_and_training_is_unchanged():
    reg = get_registry()
    torch.manual_seed(0)
    plain = reg.create("fast_cnn", (3, 32, 32), 10, tta=False)
    torch.manual_seed(0)
    tta = reg.create("fast_cnn", (3, 32, 32), 10, tta=True)
    x = torch.randn(4, 3, 32, 32)
    tta.train(), plain.train()
    assert torch.allclose(tta(x), plain(x))  # the same network, trained the same way
    tta.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(tta(x), tta(x.flip(3)), atol=1e-5)  # an image and its mirror: the same logits
        assert torch.allclose(tta(x), (plain(x) + plain(x.flip(3))) / 2, atol=1e-5)


def test_translate_tta_averages_six_views_and_exports_with_them(tmp_path):
    """tta=translate (airbench's): half the flip average of the image, a quarter each of those of the image
    shifted one pixel up-left and down-right with reflection; the ONNX file computes the same."""
    import onnxruntime as ort

    from bench.deploy.export import to_onnx

    torch.manual_seed(0)
    tta = get_registry().create("fast_cnn", (3, 32, 32), 10, widths=(8, 8, 8), stem=8, tta="translate").eval()
    plain = tta.net
    x = torch.randn(3, 3, 32, 32)

    def views(image):
        return (plain(image) + plain(image.flip(3))) / 2

    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    with torch.no_grad():
        expected = views(x) / 2 + views(padded[:, :, :32, :32]) / 4 + views(padded[:, :, 2:, 2:]) / 4
        scale = expected.abs().max()  # an untrained net's logits are small: differences relative to them
        assert (tta(x) - expected).abs().max() < 1e-4 * scale
        assert (tta(x) - views(x)).abs().max() > 1e-2 * scale  # the shifted views count
    proto, used = to_onnx(tta, (3, 32, 32), {})
    assert "after" not in used  # the dynamo exporter took it
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert abs(got - expected.numpy()).max() < 1e-4 * scale.item()


@pytest.mark.parametrize(("shape", "sizes"), [((3, 32, 32), [15, 7, 3]), ((1, 8, 8), [3, 1, 1])])
def test_fast_cnn_airbench_geometry_pools_down_but_never_to_nothing(shape, sizes):
    net = get_registry().create("fast_cnn", shape, 10, geometry="airbench")
    seen = []
    for layer in net.modules():
        if isinstance(layer, torch.nn.MaxPool2d):
            layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
    assert net(torch.zeros(2, *shape)).shape == (2, 10) and seen == sizes


@pytest.mark.parametrize("channels", [1, 3])
def test_a_patch_whitening_stem_decorrelates_the_patches_it_was_fitted_to(channels):
    from bench.models.layers import PatchWhitening

    torch.manual_seed(0)
    mixing = torch.randn(channels * 4, channels * 4)  # correlated 2x2 patches of very different scales
    images = torch.nn.functional.fold((mixing @ torch.randn(256, channels * 4, 49)).float(), (14, 14), 2, stride=2)
    stem = PatchWhitening(channels, 2, eps=0)
    stem.init_from_data(images)
    with torch.no_grad():
        maps = stem(images)[:, : channels * 4]  # the first half; the second is its negative
    covariance = torch.cov(maps.permute(1, 0, 2, 3).reshape(channels * 4, -1))
    assert torch.allclose(covariance, torch.eye(channels * 4), atol=0.15)
    assert not stem.weight.requires_grad and stem.bias.requires_grad
