"""How long torch's idle OpenMP threads spin before they sleep.

libgomp's default spin (300,000 iterations) suits a quiet machine and ruins a shared one: a thread that finished its
share of an operation spins at the barrier while the thread it waits for has been descheduled by another process's
work. Beside two 2-thread torch jobs the default sweep took 7.6x-8.0x as long as alone (its fair share: 3x) and a
forward pass's p99 went from 0.48 to 73 ms; with a 1,000-iteration spin, 2.7x, for 16% more time on a quiet machine
with sub-millisecond steps (benchmarks/RESULTS.md, "Under load", where the settings were measured). OpenMP reads
these variables once, when torch loads it: cnnbench sets them when `bench` or `import bench` comes first, never over
a value the user set, and records what held (``described()``, in every run's environment)."""

from __future__ import annotations

import os
import sys

# GOMP_SPINCOUNT: libgomp (torch's pip wheels); KMP_BLOCKTIME: Intel OpenMP (some conda builds), in ms.
DEFAULT = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
_source = None


def apply_default() -> str:
    """Set cnnbench's spin (DEFAULT) unless the user chose one or torch has already loaded OpenMP; say which held."""
    global _source
    if _source is None:
        if all(os.environ.get(k) == v for k, v in DEFAULT.items()) and not os.environ.get("OMP_WAIT_POLICY"):
            _source = "cnnbench's default"  # set by a cnnbench process that started this one
        elif any(os.environ.get(name) for name in WAIT_VARIABLES):
            _source = "set by the user"
        elif "torch" in sys.modules:
            _source = "OpenMP's defaults (torch was imported before cnnbench)"
        else:
            os.environ.update(DEFAULT)
            _source = "cnnbench's default"
    return _source


def described() -> dict:
    """The OpenMP wait settings of this process and where they came from, for a run's recorded environment."""
    return {"source": apply_default(), **{name: os.environ.get(name) for name in WAIT_VARIABLES}}
