"""Reading a store: runs (by id, unique prefix or the latest), trials, histories, exports, variants, measurements."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bench.core.errors import BenchError, UsageError, unknown
from bench.store.schema import JSON_COLUMNS


class Reads:
    """The reading part of bench.store.Store."""

    @staticmethod
    def _decode(row: sqlite3.Row | None) -> dict | None:
        if row is None:
            return None
        out = dict(row)
        for key in JSON_COLUMNS & out.keys():
            if out[key] is not None:
                out[key] = json.loads(out[key])
        return out

    def runs(self) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM runs ORDER BY created_at, rowid").fetchall()
        return [self._decode(r) for r in rows]

    def run(self, run_id: str | None = None) -> dict:
        """The run ``run_id`` (its name, bench run --name, or a unique prefix of its id will do), or the latest one."""
        if run_id is None:
            row = self.conn.execute("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise BenchError(f"store {self.path} has no runs yet (start one with `bench run`)")
            return self._decode(row)
        rows = self.conn.execute(
            "SELECT * FROM runs WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY id",
            (run_id, run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
        ).fetchall()
        exact = [r for r in rows if r["id"] == run_id]
        if exact:
            return self._decode(exact[0])
        named = self.conn.execute("SELECT * FROM runs WHERE name = ?", (run_id,)).fetchone()
        if named is not None:
            return self._decode(named)
        if len(rows) == 1:
            return self._decode(rows[0])
        if len(rows) > 1:
            raise UsageError(f"run '{run_id}' is ambiguous: {', '.join(r['id'] for r in rows)}")
        runs = list(reversed(self.runs()))
        raise unknown("run", run_id, [r["name"] for r in runs if r["name"]] + [r["id"] for r in runs])

    # A trial with ``noisy_epochs``: how many of its epochs' times are marked noisy (bench.core.noise).
    TRIAL = (
        "SELECT t.*, (SELECT count(*) FROM epochs e WHERE e.trial_id = t.id AND e.noisy = 1) AS noisy_epochs"
        " FROM trials t"
    )

    def trials(self, run_id: str) -> list[dict]:
        rows = self.conn.execute(f"{self.TRIAL} WHERE run_id = ? ORDER BY idx", (run_id,)).fetchall()
        return [self._decode(r) for r in rows]

    def trial(self, trial_id: int) -> dict:
        return self._decode(self.conn.execute(f"{self.TRIAL} WHERE t.id = ?", (trial_id,)).fetchone())

    def history(self, trial_id: int) -> list[dict]:
        rows = self.conn.execute(
            "SELECT epoch, train_loss, train_acc, val_loss, val_acc, time_s, lr, elapsed_s, load_before, load_after,"
            " others_cpu, noisy FROM epochs WHERE trial_id = ? ORDER BY epoch",
            (trial_id,),
        ).fetchall()
        return [{**dict(r), "noisy": None if r["noisy"] is None else bool(r["noisy"])} for r in rows]

    def export_of(self, trial_id: int) -> dict | None:
        return self._decode(self.conn.execute("SELECT * FROM exports WHERE trial_id = ?", (trial_id,)).fetchone())

    def latency_of(self, trial_id: int) -> list[dict]:
        """Every measurement of the trial, every repetition of it (bench.results.deployed.representative keeps one)."""
        rows = self.conn.execute(
            "SELECT * FROM latency WHERE trial_id = ?"
            " ORDER BY provider NOT IN ('CPUExecutionProvider', 'cpu'), precision != 'fp32', precision, batch_size,"
            " engine, repeat",
            (trial_id,),
        ).fetchall()
        return [{**d, "noisy": None if d["noisy"] is None else bool(d["noisy"])} for d in map(self._decode, rows)]

    def serving_of(self, trial_id: int) -> list[dict]:
        """The trial's serving scenarios (bench.runtime.scenarios), every configuration and repetition."""
        rows = self.conn.execute(
            "SELECT * FROM serving WHERE trial_id = ?"
            " ORDER BY scenario, provider NOT IN ('CPUExecutionProvider', 'cpu'), engine, precision != 'fp32',"
            " precision, setup, repeat",
            (trial_id,),
        ).fetchall()
        return [self._decode(r) for r in rows]

    def evaluations_of(self, trial_id: int) -> list[dict]:
        rows = self.conn.execute(
            "SELECT * FROM evaluations WHERE trial_id = ? ORDER BY engine, precision", (trial_id,)
        ).fetchall()
        return [self._decode(r) for r in rows]

    def artifact_path(self, relative: str | None) -> Path | None:
        return self.root / relative if relative else None

    def checkpoint_path(self, trial: dict) -> Path | None:
        return self.root / trial["checkpoint"] if trial.get("checkpoint") else None

    def variants_of(self, trial_id: int) -> list[dict]:
        rows = self.conn.execute(
            "SELECT * FROM variants WHERE trial_id = ? ORDER BY precision = 'fp16', precision", (trial_id,)
        ).fetchall()
        return [self._decode(r) for r in rows]
