import json
import os

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import bench
from bench.cli import cli
from bench.plugins import manager as plugins
from bench.plugins.datasets import load_dataset


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


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test gets its own store and dataset cache, and loads only cnnbench's own plugins (plus those a
    test installs or allows itself): nothing from the user's runs/, ~/.cache or site-packages leaks in."""
    home = tmp_path_factory.mktemp("bench-home")
    monkeypatch.setenv("BENCH_STORE", str(home / "runs" / "bench.db"))
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))  # shared: read-only data
    monkeypatch.setenv("BENCH_LOAD_PLUGINS", "")
    # The commands, pip builds and Ray workers that tests start import torch afresh: let them keep the bytecode
    # they compile (Python's default), or every one of them compiles torch's sources again (3-4 s each).
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    plugins.reset()
    yield
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
