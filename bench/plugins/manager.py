"""Plugin discovery: built-in and third-party plugins alike come through the entry-point group ``cnnbench``, and
each registers its architectures, datasets and engines through its hooks (bench.plugins.hookspecs). Nothing is
loaded at import time; ``get_plugins()`` loads once and caches."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from bench.core.errors import unknown
from bench.data.registry import DatasetRegistry
from bench.models.registry import Registry
from bench.plugins import hookspecs
from bench.runtime.engines import EngineRegistry

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


def error_line(exc: BaseException) -> str:
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
            entry.error = error_line(exc)
    for name, obj in _in_process:
        info[name] = PluginInfo(name)
        try:
            pm.register(obj, name=name)
        except Exception as exc:
            info[name].error = error_line(exc)

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
            entry.error = error_line(exc)
            registry.drop_plugin(name)  # all or nothing: no half-registered plugin
            datasets.drop_plugin(name)
            engines.drop_plugin(name)
        entry.architectures = [n for n in registry.names() if n not in before]
        entry.datasets = [n for n in datasets.entries if n not in before_data]
        entry.engines = [n for n in engines.entries if n not in before_engines]
    return Plugins(pm, registry, info, datasets, engines)


def _hook_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(n for n in dir(pm.hook) if n.startswith("register_"))


def get_plugins() -> Plugins:
    global _cached
    if _cached is None:
        _cached = load()
    return _cached


def get_registry() -> Registry:
    return get_plugins().registry


def loaded() -> Plugins | None:
    """The plugins loaded now, or None until get_plugins() loads them: whoever changed what loads (an in-process plugin,
    an installed one, the allow-list) can tell whether they were loaded again since."""
    return _cached


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
