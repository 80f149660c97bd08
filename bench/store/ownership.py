"""One live process runs a run: its owner, recorded in the store, renewing its claim from a background thread; an owner
that is gone (killed, crashed, its machine lost) is taken over."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from bench.core.errors import BenchError

HEARTBEAT_S = 20.0  # how often an owner renews its claim on a run
LEASE_S = 120.0  # an owner on another host whose claim is older than this is gone


# The runs that an `owning` block of this process holds now, by (store file, run id): a second thread of the same
# process (a notebook resuming a run that bench.run is training) is refused like a second process.
_HELD: set[tuple[str, str]] = set()
_HELD_LOCK = threading.Lock()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _process_start(pid: int) -> str:
    """When process ``pid`` started, in clock ticks since boot (Linux; "" elsewhere)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _this_process() -> tuple[int, str, str]:
    pid = os.getpid()
    return pid, socket.gethostname(), _process_start(pid)


def owner_alive(owner: dict) -> bool:
    """Whether the process that claimed a run still runs: on this host, asked of the kernel (a pid reused by
    another process does not count); on another host, judged by the age of its heartbeat."""
    if owner["host"] != socket.gethostname():
        return time.time() - owner["heartbeat"] < LEASE_S
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    started = _process_start(owner["pid"])
    return not (started and owner["process_start"] and started != owner["process_start"])


class Ownership:
    """The ownership part of bench.store.Store (``self.conn``, ``self.path``, ``self._tx``)."""

    @staticmethod
    def _set_owner(conn, run_id: str) -> None:
        pid, host, started = _this_process()
        conn.execute(
            "INSERT OR REPLACE INTO owners (run_id, pid, host, process_start, since, heartbeat)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, pid, host, started, now(), time.time()),
        )

    def owner(self, run_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM owners WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def claim(self, run_id: str) -> None:
        """Make this process the owner of ``run_id``, unless another live process is: then say which. An owner
        that is gone (killed, crashed, its machine lost) is taken over."""
        pid, host, _ = _this_process()
        try:
            self.conn.execute("BEGIN IMMEDIATE")  # read and write the owner under one lock
            try:
                owner = self.owner(run_id)
                if (os.path.realpath(self.path), run_id) in _HELD:
                    raise BenchError(
                        f"run {run_id} is being run by this process (another thread, since "
                        f"{owner['since'] if owner else 'now'}): wait for it to end"
                    )
                if owner and (owner["pid"], owner["host"]) != (pid, host) and owner_alive(owner):
                    raise BenchError(
                        f"run {run_id} is being run by process {owner['pid']} on {owner['host']} (since "
                        f"{owner['since']}): wait for it to end, or stop it and resume again"
                    )
                self._set_owner(self.conn, run_id)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise BenchError(f"cannot write to store {self.path}: {exc}") from exc

    def release(self, run_id: str) -> None:
        pid, host, _ = _this_process()
        with self._tx() as conn:
            conn.execute("DELETE FROM owners WHERE run_id = ? AND pid = ? AND host = ?", (run_id, pid, host))

    @contextmanager
    def owning(self, run_id: str, claimed: bool = False):
        """Own ``run_id`` for the block (``claimed``: create_run already made this process its owner), renewing
        the claim from a background thread, and give it up at the end."""
        key = (os.path.realpath(self.path), run_id)
        with _HELD_LOCK:
            if not claimed:
                self.claim(run_id)
            _HELD.add(key)
        pid, host, _ = _this_process()
        stop = threading.Event()

        def heartbeat():
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                while not stop.wait(HEARTBEAT_S):
                    with contextlib.suppress(sqlite3.Error), conn:
                        conn.execute(
                            "UPDATE owners SET heartbeat = ? WHERE run_id = ? AND pid = ? AND host = ?",
                            (time.time(), run_id, pid, host),
                        )
            finally:
                conn.close()

        thread = threading.Thread(target=heartbeat, name="cnnbench-owner", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            with contextlib.suppress(BenchError, sqlite3.Error):
                self.release(run_id)
            with _HELD_LOCK:
                _HELD.discard(key)
