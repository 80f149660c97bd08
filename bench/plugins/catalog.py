"""What the installed plugins offer, checked: `catalog` (architectures with their variants, parameter counts and
FLOPs: `bench list`) and `smoke_check` (every third-party architecture built and run once: `bench plugins`)."""

from __future__ import annotations

from bench.models.stats import count_flops, count_parameters
from bench.plugins.dataset_loading import dataset_info, load_dataset
from bench.plugins.manager import Plugins, error_line, get_registry

SMOKE_SHAPES = ((1, 8, 8), (3, 32, 32))


def smoke_check(plugins: Plugins) -> None:
    """Build every installed plugin's architectures' first variant for the smallest and a CIFAR-sized input and
    run one forward pass; a failure is recorded against the plugin that registered it. cnnbench's built-in
    plugins are not built here: its test suite builds and trains every one of them (tests/test_architectures.py),
    and the model zoos' 1,300 architectures would take seconds at every `bench plugins`."""
    import torch

    for arch in plugins.registry:
        if plugins.info[arch.plugin].builtin:
            continue
        params = arch.variants()[0] if arch.variants() else {}
        for shape in SMOKE_SHAPES:
            try:
                torch.manual_seed(0)
                model = arch.build(shape, 10, params).eval()
                with torch.no_grad():
                    out = model(torch.zeros(2, *shape))
                if tuple(out.shape) != (2, 10):
                    raise ValueError(f"output shape {tuple(out.shape)}, expected (2, 10) logits")
                if not torch.isfinite(out).all():
                    raise ValueError("output is not finite")
            except Exception as exc:
                shape_text = "x".join(map(str, shape))
                plugins.info[arch.plugin].architecture_errors[arch.name] = (
                    f"fails on its first forward pass ({shape_text}): {error_line(exc)}"
                )
                break


def catalog(pattern: str = "*", variants: str = "default", dataset: str = "digits") -> dict:
    """Architectures whose name matches ``pattern`` (or of the plugin named ``pattern``), with their variants,
    parameter counts and forward FLOPs per image for ``dataset``'s shape (`bench list --json`)."""
    info = dataset_info(dataset)
    shape, classes = info.input_shape, info.num_classes
    if shape is None or classes is None:  # known only once loaded (e.g. an image folder)
        loaded = load_dataset(dataset)
        shape, classes = loaded.input_shape, loaded.num_classes
    out = []
    registry = get_registry()
    for arch in registry.list(pattern) or registry.by_plugin(pattern):
        rows = []
        for v in arch.variants(variants):
            try:
                model = arch.build(shape, classes, v)
                rows.append({"variant": v, "params": count_parameters(model), "flops": count_flops(model, shape)})
            except Exception as exc:  # shown in the listing, as `bench plugins` does
                rows.append({"variant": v, "params": None, "flops": None, "error": f"{exc.__class__.__name__}: {exc}"})
        out.append(
            {
                "name": arch.name,
                "plugin": arch.plugin,
                "description": arch.description,
                "parameters": {k: arch.values(k) for k in arch.parameters},
                "defaults": arch.defaults,
                "variants_default": len(arch.variants("default")),
                "variants_all": len(arch.all_variants()),
                "variants": rows,
            }
        )
    return {"dataset": dataset, "input_shape": list(shape), "num_classes": classes, "architectures": out}
