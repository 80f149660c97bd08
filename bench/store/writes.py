"""Writing to a store: runs and their plans, trials as they start and end, exports, variants and measurements. Every
write is one transaction."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import time
from pathlib import Path

from bench.core.errors import UsageError
from bench.core.formats import trial_label
from bench.core.status import Precision, RunStatus, TrialStatus
from bench.store.opening import safe_component
from bench.store.ownership import now

RUN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")


def check_run_name(name: str) -> None:
    """A run's name (--name) is a word a command line takes as it is and no run id can start with: a letter, then up
    to 63 letters, digits, '.', '_' or '-'; never 'latest'."""
    if not RUN_NAME.fullmatch(name) or name == "latest":
        raise UsageError(
            f"--name {name!r}: a run's name starts with a letter and has up to 64 letters, digits, '.', '_' or '-'"
            + (" ('latest' names the latest run)" if name == "latest" else "")
        )


def _num(x):
    """SQLite has no NaN: a non-finite figure is stored as NULL."""
    return x if x is None or math.isfinite(x) else None


class Writes:
    """The writing part of bench.store.Store."""

    def create_run(
        self,
        *,
        command: str,
        dataset: str,
        input_shape,
        classes,
        split: dict,
        seed: int,
        config: dict,
        environment: dict,
        trials: list[dict] = (),
        data: dict | None = None,
        name: str | None = None,
    ) -> str:
        """Record a run and its whole plan (``trials``: dicts of idx, architecture, plugin, variant, hparams, every
        trial pending) in one transaction: a stop at any moment leaves both or neither, never a run without its
        trials. This process becomes the run's owner (see claim);
        ``owning(run_id, claimed=True)`` or ``release`` gives it up."""
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        with self._tx() as conn:
            if name is not None:
                check_run_name(name)
                taken = conn.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()
                if taken:
                    raise UsageError(f"run {taken['id']} is already named '{name}': choose another --name")
            conn.execute(
                "INSERT INTO runs (id, created_at, status, command, dataset, input_shape, classes, split, seed,"
                " config, environment, data, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    now(),
                    RunStatus.RUNNING,
                    command,
                    dataset,
                    json.dumps(list(input_shape)),
                    json.dumps(classes),
                    json.dumps(split),
                    seed,
                    json.dumps(config),
                    json.dumps(environment),
                    None if data is None else json.dumps(data),
                    name,
                ),
            )
            self._insert_trials(conn, run_id, trials)
            self._set_owner(conn, run_id)
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, now(), run_id))

    def record_deploy_time(self, run_id: str, seconds: float, trials: int) -> None:
        """Add a deployment of ``trials`` winners that took ``seconds`` to the run's (what `--dry-run` estimates
        from)."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET deploy_s = COALESCE(deploy_s, 0) + ?, deployed_trials = COALESCE(deployed_trials, 0)"
                " + ? WHERE id = ?",
                (seconds, trials, run_id),
            )

    def run_dir(self, run_id: str) -> Path:
        return self.root / safe_component(run_id)

    def trial_dir(self, run_id: str, idx: int) -> Path:
        return self.run_dir(run_id) / trial_label(idx)

    def add_trial(self, run_id: str, trial: dict) -> int:
        """Record one more pending trial of ``run_id`` (a search that chooses its trials as it goes); its id."""
        with self._tx() as conn:
            self._insert_trials(conn, run_id, [trial])
            row = conn.execute("SELECT id FROM trials WHERE run_id = ? AND idx = ?", (run_id, trial["idx"])).fetchone()
        return row[0]

    @staticmethod
    def _insert_trials(conn, run_id: str, trials) -> None:
        conn.executemany(
            "INSERT INTO trials (run_id, idx, architecture, plugin, variant, hparams, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    t["idx"],
                    t["architecture"],
                    t["plugin"],
                    json.dumps(t["variant"]),
                    json.dumps(t["hparams"]),
                    TrialStatus.PENDING,
                )
                for t in trials
            ],
        )

    def record_hparams(self, trial_id: int, hparams: dict) -> None:
        """Replace a pending trial's recorded hyperparameters (a plan resolved again: bench.sweep.local.pending)."""
        with self._tx() as conn:
            conn.execute("UPDATE trials SET hparams = ? WHERE id = ?", (json.dumps(hparams), trial_id))

    def start_trial(self, trial_id: int, split: dict, keep_files: bool = False) -> None:
        """Mark a trial running, forgetting what an interrupted attempt left: its figures, history and (unless
        ``keep_files``: its saved training state is to be continued) its files."""
        row = self.conn.execute("SELECT run_id, idx FROM trials WHERE id = ?", (trial_id,)).fetchone()
        if not keep_files:
            shutil.rmtree(self.trial_dir(row["run_id"], row["idx"]), ignore_errors=True)
        with self._tx() as conn:
            conn.execute(
                "UPDATE trials SET status = ?, note = NULL, split = ?, started_at = ?, finished_at = NULL,"
                " best_epoch = NULL, epochs_run = NULL, checkpoint = NULL, checkpoint_sha256 = NULL WHERE id = ?",
                (TrialStatus.RUNNING, json.dumps(split), now(), trial_id),
            )
            conn.execute("DELETE FROM epochs WHERE trial_id = ?", (trial_id,))

    def reopen_run(self, run_id: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE runs SET status = ?, finished_at = NULL WHERE id = ?", (RunStatus.RUNNING, run_id))

    def interrupt_running(self, run_id: str, note: str) -> None:
        """Trials left 'running' by an executor that stopped: interrupted, to be run again on resume."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE trials SET status = ?, note = ?, finished_at = ? WHERE run_id = ? AND status = ?",
                (TrialStatus.INTERRUPTED, note, now(), run_id, TrialStatus.RUNNING),
            )

    def finish_trial(
        self,
        trial_id: int,
        *,
        status: str,
        note: str | None = None,
        params: int | None = None,
        flops: int | None = None,
        result=None,
        checkpoint: Path | None = None,
        duration_s: float | None = None,
    ) -> None:
        """Record how a trial ended, with its figures and history, in one transaction."""
        r = result
        history = r.history if r is not None else []
        ckpt = None
        if checkpoint is not None and r is not None and r.checkpoint_sha256:
            ckpt = os.path.relpath(checkpoint, self.root)
        with self._tx() as conn:
            conn.execute(
                "UPDATE trials SET status = ?, note = ?, params = ?, flops = ?, epochs_run = ?, best_epoch = ?,"
                " train_loss = ?, train_acc = ?, val_loss = ?, val_acc = ?, test_loss = ?, test_acc = ?,"
                " confusion = ?, checkpoint = ?, checkpoint_sha256 = ?, finished_at = ?, duration_s = ?"
                " WHERE id = ?",
                (
                    status,
                    note,
                    params,
                    flops,
                    len(history) if r is not None else None,
                    r.best_epoch if r else None,
                    _num(r.train_loss) if r else None,
                    r.train_acc if r else None,
                    _num(r.val_loss) if r else None,
                    r.val_acc if r else None,
                    _num(r.test_loss) if r else None,
                    r.test_acc if r else None,
                    json.dumps(r.confusion) if r and r.confusion is not None else None,
                    ckpt,
                    r.checkpoint_sha256 if ckpt else None,
                    now(),
                    duration_s,
                    trial_id,
                ),
            )
            conn.execute("DELETE FROM epochs WHERE trial_id = ?", (trial_id,))
            conn.executemany(
                "INSERT INTO epochs (trial_id, epoch, train_loss, train_acc, val_loss, val_acc, time_s, lr, elapsed_s,"
                " load_before, load_after, others_cpu, noisy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        trial_id,
                        e.epoch,
                        _num(e.train_loss),
                        e.train_acc,
                        _num(e.val_loss),
                        e.val_acc,
                        e.time_s,
                        e.lr,
                        e.elapsed_s,
                        getattr(e, "load_before", None),
                        getattr(e, "load_after", None),
                        getattr(e, "others_cpu", None),
                        None if getattr(e, "noisy", None) is None else int(e.noisy),
                    )
                    for e in history
                ],
            )

    def record_export(self, trial_id: int, row: dict) -> None:
        """Replace the trial's export record with ``row`` (column -> value; path relative or absolute), in one
        transaction. Figures belong to the file they were measured on: unless the new file has the old one's bytes
        (sha256), the int8 and fp16 variants made from it, every latency measurement, serving figure and evaluation
        go with it. Callers keep a verified export rather than record a failed one over it
        (bench.deploy.steps.export_trial)."""
        row = {**row, "trial_id": trial_id, "exported_at": now(), "max_abs_diff": _num(row.get("max_abs_diff"))}
        if row.get("path"):
            row["path"] = os.path.relpath(row["path"], self.root)
        with self._tx() as conn:
            old = conn.execute("SELECT sha256 FROM exports WHERE trial_id = ?", (trial_id,)).fetchone()
            if old is None or old[0] is None or old[0] != row.get("sha256"):
                for table in ("variants", "latency", "evaluations", "serving"):
                    conn.execute(f"DELETE FROM {table} WHERE trial_id = ?", (trial_id,))
            conn.execute(
                f"INSERT OR REPLACE INTO exports ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )

    def record_latencies(self, trial_id: int, rows: list[dict]) -> None:
        """Replace the trial's measurements of the same (precision, engine, provider, batch size), every repetition
        of them, by ``rows``, in one transaction. A row without a precision is of the fp32 model, without a repeat
        the first repetition."""
        stamp = now()
        rows = [
            {
                "precision": Precision.FP32,
                "repeat": 1,
                **row,
                "trial_id": trial_id,
                "measured_at": stamp,
                "noisy": None if row.get("noisy") is None else int(row["noisy"]),
                "samples": json.dumps(row.get("samples")),
                "method": json.dumps(row.get("method")),
            }
            for row in rows
        ]
        keys = {(r["precision"], r["engine"], r["provider"], r["batch_size"]) for r in rows}
        with self._tx() as conn:
            conn.executemany(
                "DELETE FROM latency WHERE trial_id = ? AND precision = ? AND engine = ? AND provider = ?"
                " AND batch_size = ?",
                [(trial_id, *key) for key in keys],
            )
            for row in rows:
                conn.execute(
                    f"INSERT INTO latency ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
                )

    def record_serving(self, trial_id: int, rows: list[dict]) -> None:
        """Replace every serving figure of the trial's (engine, provider, precision) in ``rows`` (all their scenarios,
        configurations and repetitions: figures measured together, under one bound) by ``rows``, in one
        transaction."""
        stamp = now()
        rows = [
            {
                "setup": "",
                "repeat": 1,
                **row,
                "trial_id": trial_id,
                "measured_at": stamp,
                "result": json.dumps(row.get("result")),
                "method": json.dumps(row.get("method")),
            }
            for row in rows
        ]
        keys = {(r["engine"], r["provider"], r["precision"]) for r in rows}
        with self._tx() as conn:
            conn.executemany(
                "DELETE FROM serving WHERE trial_id = ? AND engine = ? AND provider = ? AND precision = ?",
                [(trial_id, *key) for key in keys],
            )
            for row in rows:
                conn.execute(
                    f"INSERT INTO serving ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
                )

    def record_evaluations(self, trial_id: int, rows: list[dict]) -> None:
        """Replace the test accuracies of the trial's (engine, precision) pairs in ``rows``, in one transaction."""
        stamp = now()
        with self._tx() as conn:
            for row in rows:
                row = {**row, "trial_id": trial_id, "evaluated_at": stamp, "method": json.dumps(row.get("method"))}
                conn.execute(
                    f"INSERT OR REPLACE INTO evaluations ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()),
                )

    def record_variant(self, trial_id: int, row: dict) -> None:
        """Replace the trial's variant of ``row['precision']`` and its measurements, in one transaction: a variant
        made again is benchmarked again."""
        row = {**row, "trial_id": trial_id, "created_at": now(), "method": json.dumps(row.get("method"))}
        if row.get("path"):
            row["path"] = os.path.relpath(row["path"], self.root)
        with self._tx() as conn:
            conn.execute("DELETE FROM latency WHERE trial_id = ? AND precision = ?", (trial_id, row["precision"]))
            conn.execute("DELETE FROM serving WHERE trial_id = ? AND precision = ?", (trial_id, row["precision"]))
            conn.execute(
                "DELETE FROM evaluations WHERE trial_id = ? AND precision = ? AND engine = 'onnxruntime'",
                (trial_id, row["precision"]),
            )
            conn.execute(
                f"INSERT OR REPLACE INTO variants ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
