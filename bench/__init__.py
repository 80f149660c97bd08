"""cnnbench: a plugin-based benchmark suite for CNN image classifiers."""

from importlib.metadata import PackageNotFoundError, version

from bench.hookspecs import hookimpl

try:
    __version__ = version("cnnbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__", "hookimpl"]
