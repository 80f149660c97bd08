"""The dataset registry: what dataset plugins registered (`register_datasets`), and the request a loader receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.errors import UsageError, check_registration, unknown


@dataclass(frozen=True)
class Request:
    """What the user asked for: ``bench run --dataset NAME[:ARGUMENT] --data-dir DIR --download ...``."""

    name: str
    argument: str | None = None
    data_dir: Path | None = None
    download: bool = False
    image_size: int | None = None  # for image folders: resize to image_size x image_size (None: their own size)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.argument}" if self.argument else self.name


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    load: Callable[[Request], object]
    description: str
    plugin: str
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    takes_argument: bool = False

    def as_dict(self) -> dict:
        """As `bench datasets --json` lists it."""
        return {
            "name": self.name + (":ARGUMENT" if self.takes_argument else ""),
            "plugin": self.plugin,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "num_classes": self.num_classes,
            "description": self.description,
        }


@dataclass
class DatasetRegistry:
    entries: dict[str, DatasetEntry] = field(default_factory=dict)

    def register_callback(self, plugin: str) -> Callable:
        def register(name, load, description="", input_shape=None, num_classes=None, takes_argument=False):
            check_registration("dataset", name, plugin, self.entries, load)
            shape = tuple(input_shape) if input_shape is not None else None
            self.entries[name] = DatasetEntry(
                name, load, " ".join(str(description).split()), plugin, shape, num_classes, bool(takes_argument)
            )

        return register

    def drop_plugin(self, plugin: str) -> None:
        for name in [n for n, e in self.entries.items() if e.plugin == plugin]:
            del self.entries[name]

    def entry(self, spec: str) -> tuple[DatasetEntry, str | None]:
        """The entry for ``name`` or ``name:argument``."""
        name, sep, argument = spec.partition(":")
        if name not in self.entries:
            raise unknown("dataset", name, self.entries)
        entry = self.entries[name]
        if entry.takes_argument and not argument:
            raise UsageError(f"dataset '{name}' needs an argument: --dataset {name}:ARGUMENT")
        if sep and not entry.takes_argument:
            raise UsageError(f"dataset '{name}' takes no argument (got '{spec}')")
        return entry, argument or None
