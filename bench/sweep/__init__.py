"""Sweeps, from Python as from the command line. The CLI (`bench run`) is a thin layer over these; a notebook calls
them directly:

    import bench
    result = bench.run(bench.RunConfig(plugin=["cnn_dropout"], epochs=[5]))
    result.trials[0]["test_acc"]

`run` and `resume` live in bench.sweep.runner; the stages below them in bench.sweep.plan (what to train),
bench.sweep.trial (one trial's lifecycle), bench.sweep.local and bench.sweep.ray (the executors)."""

from __future__ import annotations

from bench.options.config import AXES, RunConfig

# Imported on first use, so that `bench --help` and config files need no torch.
_LAZY = {
    "run": "bench.sweep.runner",
    "resume": "bench.sweep.runner",
    "trials": "bench.sweep.runner",
    "RunResult": "bench.sweep.result",
    "RunListener": "bench.sweep.listener",
    "TrialSpec": "bench.sweep.plan",
    "plan_run": "bench.sweep.plan",
    "SweepOutcome": "bench.sweep.local",
}
__all__ = ["AXES", "RunConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bench.sweep' has no attribute {name!r}")
