"""The command line of the benchmarks that measure one stored trial (int8.py, tta.py): which store, run and trial,
and how long to time."""

from __future__ import annotations

import argparse
from contextlib import contextmanager

from bench.deploy.trials import select_trials
from bench.store import Store


def trial_parser(doc: str, runs: int, min_time: float) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--run", required=True, help="a run id, a unique prefix, or latest")
    parser.add_argument("--trial", default=None, help="trial number (default: the run's first winner)")
    parser.add_argument("--runs", type=int, default=runs, help="timed runs, at least")
    parser.add_argument("--min-time", type=float, default=min_time, help="seconds of timed runs, at least")
    return parser


@contextmanager
def stored_trial(args: argparse.Namespace):
    """(store, run, trial) for the options of trial_parser; the store is opened read-only."""
    with Store(args.store, readonly=True) as store:
        run = store.run(None if args.run == "latest" else args.run)
        trial = select_trials(store, run, (args.trial,) if args.trial else (), 1)[0]
        yield store, run, trial
