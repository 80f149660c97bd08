"""cnnbench: a plugin-based benchmark suite for CNN image classifiers."""

from bench import threads as _threads

_threads.apply_default()  # before torch loads OpenMP: its idle threads must not spin long on a shared machine

from bench.hookspecs import hookimpl  # noqa: E402
from bench.version import __version__  # noqa: E402

# The Python API (bench.sweep), imported on first use: `import bench` stays light for plugins and the CLI.
_API = ("run", "resume", "trials", "RunConfig", "RunResult", "RunListener")
__all__ = ["__version__", "hookimpl", *_API]


def __getattr__(name: str):
    if name in _API:
        import bench.sweep

        return getattr(bench.sweep, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
