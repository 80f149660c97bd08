"""How much to trust a timed figure: what the rest of the machine did while it was measured, and how spread its samples
are. Every latency measurement and every training epoch records this beside its figure.

A figure is *noisy* when, during it, other processes wanted more of the CPUs than this one left free (``contention``:
the cores other processes used on average, plus this process's threads, over the machine's cores, above
CONTENTION_LIMIT), or, for latency, when its samples spread beyond SPREAD_LIMIT (p99 over p50). The thresholds and how
they were chosen are stated in every report's method section (NOISE_METHOD)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

# A quiet 2-core machine measured p99/p50 of 1.2 to 2.5 for the lab's nets at batch 1 and 64 (benchmarks/RESULTS.md,
# "Under load"); beside two 2-thread torch jobs the collapse gave 30 to 500 (README's issue 26). 5 lies between.
SPREAD_LIMIT = 5.0
# Other processes using a quarter of a core more than this process's threads left free: its threads were
# descheduled for a measurable share of the time.
CONTENTION_LIMIT = 1.25
# /proc/stat counts in 10 ms ticks: shorter windows are not judged on what others did (their spread still is).
MIN_WINDOW_S = 0.25
NOISE_METHOD = (
    f"a figure is marked noisy when other processes wanted more CPU than it left free (their average cores in use "
    f"plus its own threads above {CONTENTION_LIMIT:g}x the machine's cores, from /proc/stat and the process's own "
    f"CPU time over the measurement) or, for latency, when its samples spread (p99/p50 above {SPREAD_LIMIT:g}; a "
    "quiet machine measured 1.2-2.5); the 1-minute load average before and after is recorded beside it"
)


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine in clock ticks since boot, from /proc/stat (None elsewhere). Steal
    time (a hypervisor running other guests) counts as busy: this process could not have it either."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    return total - idle, total


def _own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Window:
    """What the machine did while one figure was measured."""

    load_before: float | None = None  # 1-minute load average
    load_after: float | None = None
    others_cpu: float | None = None  # cores other processes used, on average
    contention: float | None = None  # (others_cpu + this process's threads) / cores

    def noisy(self, spread: float | None = None) -> bool:
        return bool(
            (self.contention is not None and self.contention > CONTENTION_LIMIT)
            or (spread is not None and spread > SPREAD_LIMIT)
        )

    def as_dict(self) -> dict:
        return {"load_before": self.load_before, "load_after": self.load_after, "others_cpu": self.others_cpu}


class Watch:
    """Measures a Window around a block: ``with Watch(threads) as w: ...``, then ``w.window``."""

    def __init__(self, threads: int):
        self.threads = max(1, threads)
        self.window = Window()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self) -> Watch:
        self.window.load_before = _load()
        self._machine, self._own, self._wall = _machine_ticks(), _own_seconds(), time.monotonic()
        return self

    def stop(self) -> Window:
        self.window.load_after = _load()
        machine, own, wall = _machine_ticks(), _own_seconds(), time.monotonic() - self._wall
        if machine is not None and self._machine is not None and wall >= MIN_WINDOW_S:
            busy_ticks, total_ticks = machine[0] - self._machine[0], machine[1] - self._machine[1]
            cores = os.cpu_count() or 1
            if total_ticks > 0:
                tick = wall * cores / total_ticks  # seconds of one core per tick, measured over the window
                others = max(0.0, busy_ticks * tick - (own - self._own)) / wall
                self.window.others_cpu = round(others, 3)
                self.window.contention = round((others + self.threads) / cores, 3)
        return self.window


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def spread(p50: float | None, p99: float | None) -> float | None:
    """p99 over p50: 1 for perfectly even samples."""
    return None if not p50 or p99 is None else p99 / p50
