"""cnnbench: a plugin-based benchmark suite for CNN image classifiers."""

from importlib.metadata import PackageNotFoundError, version

from bench.hookspecs import hookimpl

try:
    __version__ = version("cnnbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# The Python API (bench.sweep), imported on first use: `import bench` stays light for plugins and the CLI.
_API = ("run", "resume", "trials", "RunConfig", "RunResult", "Progress")
__all__ = ["__version__", "hookimpl", *_API]


def __getattr__(name: str):
    if name in _API:
        import bench.sweep

        return getattr(bench.sweep, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
