import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import bench
from bench.cli import cli
from bench.plugins import manager as plugins
from bench.plugins.dataset_loading import load_dataset


class TinyPlugin:
    """A test-only plugin: a small CNN that trains in a fraction of a second on digits."""

    @staticmethod
    def build(input_shape, num_classes, width=8):
        return nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(width * 4, num_classes),
        )

    @bench.hookimpl
    def register_architectures(self, register):
        register(
            "tiny_cnn",
            self.build,
            variants={"width": [8, 16]},
            description="A tiny test CNN.",
            defaults={"optimizer": "adam", "lr": 0.01, "batch_size": 64, "epochs": 3},
        )


@pytest.fixture
def tiny_plugin():
    plugins.register_in_process(TinyPlugin(), name="tiny")
    yield "tiny"
    plugins.unregister_in_process("tiny")


# The deploy stage at its cheapest, for tests about something else (training, records, reports, the CLI, the API):
# the TorchScript exporter (about 0.04 s a small model, against 0.7 s for the dynamo exporter, the default, whose own
# tests are tests/test_onnx.py, test_quantize.py and test_architectures.py), ONNX Runtime alone, no variants, batch 1,
# three timed runs. The one definition: FAST_DEPLOY for bench.run / RunConfig, FAST_DEPLOY_ARGS for the command line.
FAST_DEPLOY = {
    "exporter": "torchscript",
    "engines": ["onnxruntime"],
    "quantize": [],
    "batch_sizes": [1],
    "warmup": 1,
    "min_runs": 3,
    "min_time": 0.0,
    "graph_optimization": "all",
}


def _flag(name: str, value) -> tuple[str, str]:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"--{name.replace('_', '-')}", text or "none"  # an empty list: --quantize none


def fast_deploy_args(command: str = "run") -> tuple[str, ...]:
    """FAST_DEPLOY as the options of `bench COMMAND` (export takes the exporter only, benchmark no --quantize)."""
    params = {p.name for p in cli.commands[command].params}
    return tuple(arg for name, value in FAST_DEPLOY.items() if name in params for arg in _flag(name, value))


FAST_DEPLOY_ARGS = fast_deploy_args("run")


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "runs" / "bench.db"


STORE_COMMANDS = ("run", "report", "runs", "export", "benchmark", "quantize", "compare", "mlflow")


class Invoker:
    def __init__(self, store_path):
        self.store_path = store_path

    def __call__(self, *args, store=True):
        args = [str(a) for a in args]
        if store and args and args[0] in STORE_COMMANDS:
            args += ["--store", str(self.store_path)]
        result = CliRunner().invoke(cli, args)
        # A user error must never surface as a Python traceback.
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Traceback" not in result.output
        return result

    def json(self, *args, store=True):
        result = self(*args, "--json", store=store)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def invoke(store_path):
    return Invoker(store_path)


@pytest.fixture
def tiny_run(invoke, tiny_plugin, store_path):
    """A finished run of the tiny test CNN on digits (2 epochs, not exported)."""
    result = invoke("run", "--plugin", tiny_plugin, "--where", "width=8", "--epochs", "2", "--no-benchmark")
    assert result.exit_code == 0, result.output
    return invoke


_ISOLATION = pytest.MonkeyPatch()
_SUITE = "CNNBENCH_SUITE_FOLDER"  # the session's own folder, made by the process that starts the workers
_made: list[str] = []


def pytest_configure(config):
    """Once per test process, before collection and before any fixture of any scope: the dataset cache, the store and
    the plugin set are the suite's own (cnnbench's plugins, plus those a test installs or allows itself), never the
    user's ~/.cache, runs/ or site-packages. The cache is one for the whole session, its workers included (they start
    with this process's environment): decoded data and the bf16 probe's measurement of this machine are made once,
    under the cache's own file locks."""
    import tempfile

    if _SUITE not in os.environ:  # the process that starts the workers (or runs the tests itself)
        _made.append(tempfile.mkdtemp(prefix="cnnbench-suite-"))
        _ISOLATION.setenv(_SUITE, _made[0])
    folder = Path(os.environ[_SUITE])
    _ISOLATION.setenv("BENCH_CACHE", str(folder / "bench-cache"))
    _ISOLATION.setenv("BENCH_STORE", str(folder / "runs" / "bench.db"))  # each test gets its own: _isolated
    _ISOLATION.setenv("BENCH_LOAD_PLUGINS", "")
    # The commands, pip builds and Ray workers that tests start import torch afresh: let them keep the bytecode they
    # compile (Python's default), or every one of them compiles torch's sources again (3-4 s each).
    _ISOLATION.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    plugins.reset()


def pytest_unconfigure(config):
    _ISOLATION.undo()
    plugins.reset()
    if _made:
        import shutil

        shutil.rmtree(_made[0], ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test gets its own store. The plugins are loaded once per process (with the suite's environment,
    pytest_configure) and kept from test to test; a test that loaded them again (it registered, installed or allowed
    one) leaves them to be loaded afresh for the next."""
    monkeypatch.setenv("BENCH_STORE", str(tmp_path_factory.mktemp("bench-home") / "runs" / "bench.db"))
    before = plugins.loaded()
    yield
    if plugins.loaded() is not before:
        plugins.reset()


if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2 (the default, pyproject.toml): one torch thread per worker, so two workers share two cores
    # instead of four threads fighting for them.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fixed_threads():
    # Results are reproducible for a fixed number of threads; tests change it, so restore it.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
