"""Sweeps, from Python as from the command line. The CLI (`bench run`) is a thin layer over these; a notebook calls
them directly:

    import bench
    result = bench.run(bench.RunConfig(plugin=["cnn_dropout"], epochs=[5]))
    result.trials[0]["test_acc"]

    runner.py    bench.run, bench.resume, bench.trials
    result.py    RunResult, what they return
    plan.py      what to train: architectures x variants x the grid, or a sample of it
    search.py    TPE: each next trial chosen from the results so far (Optuna)
    estimate.py  --dry-run: the plan, its FLOPs and its time from this machine's earlier runs
    execute.py   a recorded run's execution: train, rank, deploy the winners
    trial.py     one trial's lifecycle, the same under every executor
    local.py     the local executor: trial after trial in this process
    ray.py       the Ray Tune executor
    listener.py  RunListener: what a run tells its caller"""

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
