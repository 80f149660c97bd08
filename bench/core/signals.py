"""Stopping cleanly: SIGTERM (a scheduler's kill, `kill PID`) is handled as Ctrl-C, so that every stop takes the
same path (trials marked interrupted, the run resumable, exit status 130)."""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill, `kill PID`) stops the sweep as Ctrl-C does: cleanly, trial marked."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
