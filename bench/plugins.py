"""Plugin discovery: built-in and third-party plugins alike come through the entry-point group
``cnnbench``. Nothing is loaded at import time; ``get_plugins()`` loads once and caches."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import pluggy

from bench import hookspecs
from bench.architectures import Registry
from bench.data import Dataset, check_dataset
from bench.datasets import CACHE_DIR, DatasetRegistry, Request
from bench.engines import EngineRegistry
from bench.errors import BenchError, UsageError, unknown

GROUP = "cnnbench"
BUILTIN_DIST = "cnnbench"
ALLOW_ENV = "BENCH_LOAD_PLUGINS"


@dataclass
class PluginInfo:
    name: str
    version: str | None = None
    distribution: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    error: str | None = None
    architecture_errors: dict[str, str] = field(default_factory=dict)  # filled by smoke_check()

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "architectures": self.architectures,
            "datasets": self.datasets,
            "engines": self.engines,
            "error": self.error,
            "architecture_errors": self.architecture_errors,
        }


@dataclass
class Plugins:
    manager: pluggy.PluginManager
    registry: Registry
    info: dict[str, PluginInfo]
    datasets: DatasetRegistry
    engines: EngineRegistry = field(default_factory=EngineRegistry)

    def plugin(self, name: str) -> PluginInfo:
        """The plugin called ``name``; an unknown name is a usage error listing the closest ones."""
        if name not in self.info:
            raise unknown("plugin", name, self.info)
        return self.info[name]


_cached: Plugins | None = None
_in_process: list[tuple[str, object]] = []


def _error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


def _allowed() -> set[str] | None:
    raw = os.environ.get(ALLOW_ENV)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def load() -> Plugins:
    """Load every plugin, then let each register its architectures. A plugin that fails to import,
    raises in its hook or registers a bad or duplicate name is recorded with its error; the rest work."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    info: dict[str, PluginInfo] = {}
    allowed = _allowed()

    eps = sorted(entry_points(group=GROUP), key=lambda ep: ep.dist is None or ep.dist.name != BUILTIN_DIST)
    for ep in eps:
        dist = ep.dist.name if ep.dist else None
        builtin = dist == BUILTIN_DIST
        if not builtin and allowed is not None and ep.name not in allowed:
            continue
        if ep.name in info:
            continue  # the same entry point seen twice (e.g. an editable install and a copy)
        entry = info[ep.name] = PluginInfo(ep.name, ep.dist.version if ep.dist else None, dist, builtin)
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            entry.error = _error_line(exc)
    for name, obj in _in_process:
        info[name] = PluginInfo(name)
        try:
            pm.register(obj, name=name)
        except Exception as exc:
            info[name].error = _error_line(exc)

    # A misspelled hook (register_architecture, ...) would otherwise be silently ignored.
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            info[name].error = f"{exc} (known hooks: {', '.join(_hook_names(pm))})"
            pm.unregister(exc.plugin)

    registry, datasets, engines = Registry(), DatasetRegistry(), EngineRegistry()
    for name, entry in info.items():
        plugin = pm.get_plugin(name)
        if plugin is None:
            continue
        entry.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        before, before_data, before_engines = set(registry.names()), set(datasets.entries), set(engines.entries)
        try:
            if hasattr(plugin, "register_architectures"):
                plugin.register_architectures(register=registry.register_callback(name))
            if hasattr(plugin, "register_datasets"):
                plugin.register_datasets(register=datasets.register_callback(name))
            if hasattr(plugin, "register_engines"):
                plugin.register_engines(register=engines.register_callback(name))
        except Exception as exc:
            entry.error = _error_line(exc)
            registry.drop_plugin(name)  # all or nothing: no half-registered plugin
            datasets.drop_plugin(name)
            engines.drop_plugin(name)
        entry.architectures = [n for n in registry.names() if n not in before]
        entry.datasets = [n for n in datasets.entries if n not in before_data]
        entry.engines = [n for n in engines.entries if n not in before_engines]
    return Plugins(pm, registry, info, datasets, engines)


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
                    f"fails on its first forward pass ({shape_text}): {_error_line(exc)}"
                )
                break


def _hook_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(n for n in dir(pm.hook) if n.startswith("register_"))


def get_plugins() -> Plugins:
    global _cached
    if _cached is None:
        _cached = load()
    return _cached


def get_registry() -> Registry:
    return get_plugins().registry


def reset() -> None:
    """Forget the loaded plugins; the next ``get_plugins()`` loads them again."""
    global _cached
    _cached = None


def register_in_process(obj, name: str) -> None:
    """Add a plugin object without an entry point (tests, notebooks); it joins at the next load."""
    _in_process.append((name, obj))
    reset()


def unregister_in_process(name: str) -> None:
    _in_process[:] = [(n, o) for n, o in _in_process if n != name]
    reset()


# --- datasets, through the plugins that register them ----------------------------------------------------


def dataset_info(spec: str):
    """The registered dataset for ``name`` or ``name:argument`` (see `bench datasets`)."""
    return get_plugins().datasets.entry(spec)[0]


def load_dataset(
    spec: str,
    data_dir=None,
    download: bool = False,
    image_size: int | None = None,
    mean=None,
    std=None,
    limit_train: int | None = None,
    cache_dir=None,
) -> Dataset:
    """Load ``name`` or ``name:argument`` through its plugin. ``mean`` and ``std`` replace the dataset's own
    normalization (one value per channel, or one for all); ``limit_train`` keeps that many training images
    (Dataset.limited); the normalization stays the whole dataset's."""
    from dataclasses import replace

    from bench.options import invalid

    entry, argument = get_plugins().datasets.entry(spec)
    request = Request(entry.name, argument, Path(data_dir) if data_dir else None, download, image_size)
    token = CACHE_DIR.set(Path(cache_dir).expanduser() if cache_dir else None)
    try:
        data = entry.load(request)
    finally:
        CACHE_DIR.reset(token)
    channels = data.input_shape[0]
    if image_size is not None and data.resize is None and tuple(data.input_shape[1:]) != (image_size, image_size):
        raise UsageError(  # a dataset that does not resize would silently ignore it
            f"--image-size {image_size}: '{spec}' does not resize its images ({data.input_shape[1]}x"
            f"{data.input_shape[2]}); --image-size is for image folders"
        )
    for option, values in (("mean", mean), ("std", std)):
        if values:
            given = ",".join(map(str, values))
            values = tuple(values) * channels if len(values) == 1 else tuple(values)
            if len(values) != channels:
                need = "one value" if channels == 1 else f"one value, or {channels} (one per channel)"
                raise invalid(option, given, f"{need} for '{spec}', whose images have {channels} channel(s)")
            if option == "std" and min(values) <= 0:
                raise UsageError("--std values must be > 0")
            data = replace(data, **{option: values})
    if limit_train is not None:
        data = data.limited(limit_train)
    check_dataset(data)
    return data


def load_run_dataset(run: dict) -> Dataset:
    """The dataset a stored run trained on, loaded with the options it recorded: refused (BenchError) when it is no
    longer the data the run recorded (its images, labels, sizes or normalization changed), since every figure of
    the run would otherwise be measured on other images than it claims."""
    from bench.options import RunConfig

    data = load_dataset(run["dataset"], **RunConfig.from_record(run["config"]).data_options())
    recorded = run.get("data")
    if recorded:  # runs recorded before store schema 8 did not pin their data
        now = data.record()
        if now["fingerprint"] != recorded["fingerprint"]:
            changes = [
                f"{k} {recorded[k]} -> {now[k]}"
                for k in ("train", "test", "mean", "std", "pixel_scale")
                if now.get(k) != recorded.get(k)
            ]
            raise BenchError(
                f"the data of run {run['id']} ({run['dataset']}) changed since the run recorded it"
                f" ({', '.join(changes) or 'same sizes, other images'}): its checkpoints, exports and figures belong"
                " to the recorded data; restore it, or start a new run on the new data"
            )
    return data


def catalog(pattern: str = "*", variants: str = "default", dataset: str = "digits") -> dict:
    """Architectures whose name matches ``pattern`` (or of the plugin named ``pattern``), with their variants,
    parameter counts and forward FLOPs per image for ``dataset``'s shape (`bench list --json`)."""
    from bench.modelstats import count_flops, count_parameters

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
