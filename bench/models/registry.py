"""The architecture registry: what plugins registered, their variant spaces, and model construction."""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bench.core.errors import PluginError, UsageError, WhereError, check_registration, unknown


def format_value(value) -> str:
    """How a variant value is written on the command line and in tables: (32, 64) -> '32-64'."""
    if isinstance(value, tuple | list):
        return "-".join(format_value(v) for v in value)
    return str(value)


def where_text(value) -> str:
    """A variant value as --where compares it: written as on the command line ((32, 64), [32, 64] and '32-64' alike),
    true/false in any case (TOML writes them lower-case) as Python's."""
    text = format_value(value)
    return text.capitalize() if text.lower() in ("true", "false") else text


def format_variant(params: dict) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in params.items())


def _expand(space: list[dict[str, list]]) -> list[dict]:
    """The union, in order and without repeats, of the products of each grid."""
    seen, out = set(), []
    for grid in space:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            params = dict(zip(keys, values, strict=True))
            key = tuple(sorted((k, format_value(v)) for k, v in params.items()))
            if key not in seen:
                seen.add(key)
                out.append(params)
    return out


def _in_space(space: list[dict[str, list]], params: dict) -> bool:
    """Whether ``params`` is one of the variants of ``space``, without listing them (a model zoo's space holds
    thousands)."""
    given = {k: format_value(v) for k, v in params.items()}
    return any(
        set(grid) == set(given) and all(given[k] in {format_value(v) for v in grid[k]} for k in grid) for grid in space
    )


@dataclass(frozen=True)
class Architecture:
    """One architecture family registered by a plugin."""

    name: str
    factory: Callable
    space: list[dict[str, list]]
    description: str
    plugin: str
    defaults: dict = field(default_factory=dict)
    default_variants: list[dict] | None = None

    @property
    def parameters(self) -> list[str]:
        keys: list[str] = []
        for grid in self.space:
            keys += [k for k in grid if k not in keys]
        return keys

    def values(self, key: str) -> list:
        out: list = []
        for grid in self.space:
            out += [v for v in grid.get(key, []) if v not in out]
        return out

    def all_variants(self) -> list[dict]:
        return _expand(self.space)

    def variants(self, which: str = "default", where: dict[str, list[str]] | None = None) -> list[dict]:
        """The variants to run: ``which`` is 'default' or 'all'; ``where`` keeps those whose parameter
        (written as on the command line) is one of the given values: of the default variants, or of the whole
        space when no default variant has them."""
        if which not in ("default", "all"):
            raise UsageError(f"--variants must be 'default' or 'all', not '{which}'")
        defaults = which == "default" and bool(self.default_variants)
        base = self.default_variants if defaults else self.all_variants()
        chosen = self._where([self.normalize(v) for v in base], where)
        if not chosen and where and defaults:
            # none of the default variants has the values asked for: take them from the whole space (a model zoo's
            # defaults are a few of its models; --where model=NAME names any other)
            chosen = self._where([self.normalize(v) for v in self.all_variants()], where)
        return chosen

    def _where(self, base: list[dict], where: dict[str, list[str]] | None) -> list[dict]:
        for key, wanted in (where or {}).items():
            if key not in self.parameters:
                raise WhereError(
                    f"architecture '{self.name}' has no parameter '{key}' (parameters: {', '.join(self.parameters)})"
                )
            known = {where_text(v) for v in self.values(key)}
            wanted = [where_text(w) for w in wanted]
            bad = [w for w in wanted if w not in known]
            if bad:
                values = [format_value(v) for v in self.values(key)]
                if len(values) > 20:  # a model zoo: the nearest names, not a thousand
                    from bench.core.errors import closest

                    raise WhereError(
                        f"'{bad[0]}' is not a value of {self.name}.{key}; nearest: "
                        f"{', '.join(closest(bad[0], values)[:5])} ({len(values)} values)"
                    )
                raise WhereError(f"'{bad[0]}' is not a value of {self.name}.{key} (values: {', '.join(values)})")
            base = [v for v in base if key in v and where_text(v[key]) in wanted]
        return base

    def normalize(self, params: dict) -> dict:
        """Complete ``params`` from the first default variant and turn JSON lists back into the tuples
        the space uses, so a variant read back from the store equals the one that was run."""
        # the first variant of the space, as all_variants() lists it, without listing them
        first = self.default_variants[0] if self.default_variants else {k: v[0] for k, v in self.space[0].items()}
        out = {}
        for key in self.parameters:
            value = params.get(key, first.get(key))
            if isinstance(value, list) and any(isinstance(v, tuple) for v in self.values(key)):
                value = tuple(value)
            if key in params or key in first:
                out[key] = value
        extra = set(params) - set(self.parameters)
        if extra:
            raise UsageError(
                f"architecture '{self.name}' has no parameter '{sorted(extra)[0]}' "
                f"(parameters: {', '.join(self.parameters)})"
            )
        return out

    def build(self, input_shape: tuple[int, int, int], num_classes: int, params: dict | None = None):
        """Build the model for a (C, H, W) input and ``num_classes`` classes."""
        return self.factory(tuple(input_shape), num_classes, **self.normalize(params or {}))


def _check_space(plugin: str, name: str, variants) -> list[dict[str, list]]:
    grids = [variants] if isinstance(variants, dict) else variants
    if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) for g in grids):
        raise PluginError(
            f"plugin '{plugin}' registered '{name}' with variants that are not a dict "
            "(parameter -> list of values) or a list of such dicts"
        )
    out = []
    for grid in grids:
        clean = {}
        for key, values in grid.items():
            if isinstance(values, str | bytes) or not isinstance(values, Iterable):
                raise PluginError(f"plugin '{plugin}': '{name}' variants['{key}'] must be a list of values")
            values = [tuple(v) if isinstance(v, list) else v for v in values]
            if not values:
                raise PluginError(f"plugin '{plugin}': '{name}' variants['{key}'] is empty")
            clean[key] = values
        out.append(clean)
    return out


def _check_defaults(plugin: str, name: str, defaults) -> dict:
    """A plugin's training defaults for architecture ``name``, each checked as its option checks the command line
    (bench.options): the options declared plugin_default only, each value valid. A bad one is the plugin's error,
    one line naming it."""
    from bench.options.config import PLUGIN_DEFAULTS, option_of

    if defaults is not None and not isinstance(defaults, dict):
        raise PluginError(f"plugin '{plugin}': '{name}' has defaults {defaults!r}, not a dict of hyperparameters")
    out = {}
    for key, value in (defaults or {}).items():
        if key not in PLUGIN_DEFAULTS:
            raise PluginError(
                f"plugin '{plugin}': '{name}' has unknown default hyperparameter '{key}' "
                f"(known: {', '.join(sorted(PLUGIN_DEFAULTS))})"
            )
        option = option_of(key)
        try:
            out[key] = option.value(key, value)
        except UsageError:
            raise PluginError(
                f"plugin '{plugin}': '{name}' has default {key}={value!r}, which is not {option.requirement()}"
            ) from None
    return out


class Registry:
    """Architectures by name, filled by the plugins' ``register_architectures`` hooks."""

    def __init__(self):
        self._archs: dict[str, Architecture] = {}

    def register_callback(self, plugin: str) -> Callable:
        """The ``register`` passed to one plugin's hook: it stamps each entry with that plugin."""

        def register(name, factory, variants=None, description="", defaults=None, default_variants=None):
            check_registration("architecture", name, plugin, self._archs, factory)
            space = _check_space(plugin, name, variants if variants is not None else {})
            defaults = _check_defaults(plugin, name, defaults)
            arch = Architecture(
                name=name,
                factory=factory,
                space=space,
                description=" ".join(str(description).split()),
                plugin=plugin,
                defaults=defaults,
            )
            if default_variants is not None:
                chosen = []
                for params in default_variants:
                    params = arch.normalize(params)
                    if not _in_space(space, params):
                        raise PluginError(
                            f"plugin '{plugin}': default variant {format_variant(params)} of '{name}' "
                            "is not in its variant space"
                        )
                    chosen.append(params)
                object.__setattr__(arch, "default_variants", chosen)
            self._archs[name] = arch

        return register

    def __contains__(self, name: str) -> bool:
        return name in self._archs

    def __iter__(self):
        return iter(self._archs.values())

    def __len__(self) -> int:
        return len(self._archs)

    def names(self) -> list[str]:
        return list(self._archs)

    def get(self, name: str) -> Architecture:
        if name not in self._archs:
            raise unknown("architecture", name, self._archs)
        return self._archs[name]

    def list(self, pattern: str = "*") -> list[Architecture]:
        """Architectures whose name matches the shell-style ``pattern``."""
        return [a for a in self._archs.values() if fnmatch.fnmatchcase(a.name, pattern)]

    def drop_plugin(self, plugin: str) -> None:
        for name in [a.name for a in self._archs.values() if a.plugin == plugin]:
            del self._archs[name]

    def by_plugin(self, plugin: str) -> list[Architecture]:
        return [a for a in self._archs.values() if a.plugin == plugin]

    def create(self, name: str, input_shape=(3, 32, 32), num_classes: int = 10, **params):
        """Build ``name`` with ``params`` (missing ones from its first default variant)."""
        return self.get(name).build(input_shape, num_classes, params)
