"""cnnbench: a plugin-based benchmark suite for CNN image classifiers.

`import bench` is the one thing plugins and notebooks import: every name below is public, and what plugins may rely
on (docs/plugins.md documents each); the modules under bench/ may move between releases. Names are imported on first
use, so `import bench` stays light (no torch) for plugins that only register, and for the CLI.
tests/test_structure.py keeps plugins/ and examples/ to these names."""

from bench.core import threads as _threads

_threads.apply_default()  # before torch loads OpenMP: its idle threads must not spin long on a shared machine

from bench.core.version import __version__  # noqa: E402
from bench.plugins.hookspecs import hookimpl  # noqa: E402

_PUBLIC = {
    # The Python API: run a sweep, resume one, read a run's trials (docs/runs.md), classify images with its shipped
    # model (docs/report.md).
    "run": "bench.sweep.runner",
    "resume": "bench.sweep.runner",
    "trials": "bench.sweep.runner",
    "predict": "bench.deploy.predict",
    "RunConfig": "bench.options.config",
    "RunResult": "bench.sweep.result",
    "RunListener": "bench.sweep.listener",
    # Every plugin: errors that reach the user as one line; what is installed, and a plugin added without installing
    # it (a plugin's own tests, notebooks).
    "BenchError": "bench.core.errors",
    "get_plugins": "bench.plugins.manager",
    "register_in_process": "bench.plugins.manager",
    "unregister_in_process": "bench.plugins.manager",
    # Architecture plugins: layers the built-in architectures are made of.
    "conv_stage": "bench.models.layers",
    "flat_features": "bench.models.layers",
    "mlp_head": "bench.models.layers",
    "FlipAverage": "bench.models.layers",
    "FlipTranslateAverage": "bench.models.layers",
    "PatchWhitening": "bench.models.layers",
    "Scale": "bench.models.layers",
    # Dataset plugins: what a loader returns and receives, the decode cache, the readers of standard formats.
    "Dataset": "bench.data.splits",
    "Split": "bench.data.splits",
    "Request": "bench.data.registry",
    "cached": "bench.data.cache",
    "open_array": "bench.data.cache",
    "tensors": "bench.data.cache",
    "find_files": "bench.data.readers",
    "read_idx": "bench.data.readers",
    "read_cifar_batch": "bench.data.readers",
    "IMAGE_SUFFIXES": "bench.data.folders",
    "check_image_folder": "bench.data.folders",
    "decode_folder": "bench.data.folders",
    "image_files": "bench.data.folders",
    "native_size": "bench.data.folders",
    "load_dataset": "bench.plugins.dataset_loading",
    "dataset_info": "bench.plugins.dataset_loading",
    # Engine plugins: the model an engine receives, how to refuse one, the protocol's probe, quiet tools, and
    # onnxruntime sessions on the provider asked for (or the reason it cannot run).
    "EngineModel": "bench.runtime.engines",
    "Unavailable": "bench.runtime.engines",
    "probe": "bench.runtime.protocol",
    "AUTO_LEVELS": "bench.runtime.protocol",
    "silenced": "bench.core.quiet",
    "ort_session": "bench.runtime.onnxrt",
    "ProviderUnavailable": "bench.runtime.onnxrt",
    "cuda_unavailable_reason": "bench.runtime.onnxrt",
    "tensorrt_unavailable_reason": "bench.runtime.onnxrt",
}
__all__ = ["__version__", "hookimpl", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PUBLIC])
