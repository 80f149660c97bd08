"""The results store: one SQLite file with runs, trials and per-epoch history.

Every write is a transaction; a trial's results and history are committed together the moment it ends,
so an interrupted sweep keeps every finished trial. Checkpoints and other artifacts live beside the
database, under ``<store dir>/<run id>/t<NNN>/``; paths are stored relative to the store's folder."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import sqlite3
import threading
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

from bench.errors import BenchError, DiskFull, UsageError, unknown

STORE_ENV = "BENCH_STORE"
DEFAULT_STORE = Path("runs") / "bench.db"
APPLICATION_ID = 0x434E4E42  # "CNNB": marks the file as a cnnbench database
SCHEMA_VERSION = 5
HEARTBEAT_S = 20.0  # how often an owner renews its claim on a run
LEASE_S = 120.0  # an owner on another host whose claim is older than this is gone

SCHEMA = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,          -- ISO 8601, UTC
    finished_at TEXT,
    status TEXT NOT NULL,              -- running | completed | interrupted | failed
    command TEXT NOT NULL,             -- the command line, as typed
    dataset TEXT NOT NULL,
    input_shape TEXT NOT NULL,         -- JSON [C, H, W]
    classes TEXT NOT NULL,             -- JSON list of class names
    split TEXT NOT NULL,               -- JSON {"train": n, "val": n, "test": n}
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,              -- JSON: every option the sweep was run with
    environment TEXT NOT NULL          -- JSON: versions, CPU, GPU, threads, device
);
CREATE TABLE trials (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    idx INTEGER NOT NULL,              -- 1-based position in the run's plan
    architecture TEXT NOT NULL,
    plugin TEXT NOT NULL,
    variant TEXT NOT NULL,             -- JSON: the architecture's parameters
    hparams TEXT NOT NULL,             -- JSON: batch_size, lr, epochs, optimizer, momentum, weight_decay,
                                       --   seed, val_ratio, select
    split TEXT,                        -- JSON {"train": n, "val": n, "test": n}
    status TEXT NOT NULL,              -- pending | running | completed | early_stopped | pruned | diverged
                                       --   | failed | interrupted
    note TEXT,                         -- why a trial diverged or failed
    params INTEGER,                    -- trainable parameters
    epochs_run INTEGER,
    best_epoch INTEGER,
    train_loss REAL, train_acc REAL,   -- of the best checkpoint, in eval mode
    val_loss REAL, val_acc REAL,
    test_loss REAL, test_acc REAL,
    confusion TEXT,                    -- JSON test confusion matrix, rows = true class
    checkpoint TEXT,                   -- path relative to the store's folder
    checkpoint_sha256 TEXT,
    started_at TEXT,
    finished_at TEXT,
    duration_s REAL,                   -- wall time of the trial: build, training, final evaluation
    UNIQUE (run_id, idx)
);
CREATE TABLE epochs (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL,
    time_s REAL,
    PRIMARY KEY (trial_id, epoch)
);
CREATE INDEX trials_run ON trials(run_id);
"""

# MIGRATIONS[n] takes a store from schema n + 1 to n + 2; a store is only extended, never emptied (a table whose
# key changes is copied into its new form, every row kept).
# Statements are split on semicolons: keep them out of the comments.
MIGRATIONS = [
    """
ALTER TABLE trials ADD COLUMN flops INTEGER;  -- forward FLOPs per image, by torch's flop counter
CREATE TABLE exports (
    trial_id INTEGER PRIMARY KEY REFERENCES trials(id),
    status TEXT NOT NULL,              -- ok | export_failed | parity_failed
    note TEXT,                         -- why it failed
    path TEXT,                         -- model.onnx, relative to the store's folder
    sha256 TEXT,
    size_bytes INTEGER,
    exporter TEXT,                     -- e.g. "torch.onnx dynamo (torch 2.14.1)"
    opset INTEGER,
    tolerance REAL,                    -- allowed max |logit difference| against PyTorch
    parity_images INTEGER,             -- real test images compared
    max_abs_diff REAL,
    top1_agreement REAL,               -- share of those images with the same top-1 class
    torch_test_acc REAL,               -- the checkpoint's test accuracy in PyTorch
    onnx_test_acc REAL,                -- the same test set through onnxruntime (CPU)
    flops INTEGER,                     -- forward FLOPs per image (torch's flop counter)
    exported_at TEXT
);
CREATE TABLE latency (
    id INTEGER PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    engine TEXT NOT NULL,              -- onnxruntime | torch
    provider TEXT NOT NULL,            -- CPUExecutionProvider, CUDAExecutionProvider, cpu, cuda
    batch_size INTEGER NOT NULL,
    status TEXT NOT NULL,              -- ok | unavailable | failed
    note TEXT,                         -- why a provider was unavailable
    session_ms REAL,                   -- session creation (onnxruntime) / model transfer (torch)
    first_ms REAL,                     -- the first inference, apart from the steady state
    warmup INTEGER,
    n INTEGER,                         -- timed runs
    total_s REAL,
    p50_ms REAL, p90_ms REAL, p99_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL,
    throughput REAL,                   -- images per second: batch_size / mean latency
    samples TEXT,                      -- JSON: every timed run, in ms, in order
    method TEXT,                       -- JSON: percentile method, threads, graph optimization, io binding...
    measured_at TEXT,
    UNIQUE (trial_id, engine, provider, batch_size)
);
""",
    """
ALTER TABLE epochs ADD COLUMN lr REAL;         -- learning rate of the epoch's first step
ALTER TABLE epochs ADD COLUMN elapsed_s REAL;  -- training seconds up to the end of this epoch (no validation)
""",
    """
CREATE TABLE owners (                  -- the one live process running a run (bench run, bench run --resume)
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    process_start TEXT NOT NULL,       -- the kernel's start time of pid (Linux), so a reused pid is not the owner
    since TEXT NOT NULL,
    heartbeat REAL NOT NULL            -- Unix time, renewed while the owner runs
);
""",
    """
CREATE TABLE variants (                -- int8 and fp16 models made from a trial's verified fp32 ONNX export
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    precision TEXT NOT NULL,           -- int8 | fp16
    status TEXT NOT NULL,              -- ok | flagged (lost more accuracy than allowed, kept) | failed
    note TEXT,                         -- why it failed or was flagged, or what it fell back to
    path TEXT,                         -- model-<precision>.onnx, relative to the store's folder
    sha256 TEXT,
    size_bytes INTEGER,
    test_acc REAL,                     -- the whole test set through onnxruntime (CPU)
    fp32_test_acc REAL,                -- the fp32 export's, measured the same way
    top1_agreement REAL,               -- share of the test images whose top-1 class matches the fp32 model's
    max_accuracy_drop REAL,            -- the allowed loss in points, against which status was judged
    method TEXT,                       -- JSON: tool, format, calibration, operators left in float
    created_at TEXT,
    PRIMARY KEY (trial_id, precision)
);
CREATE TABLE latency_v5 (
    id INTEGER PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    precision TEXT NOT NULL DEFAULT 'fp32',  -- of the model measured: fp32 (the export, or PyTorch), int8, fp16
    engine TEXT NOT NULL,
    provider TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    status TEXT NOT NULL,
    note TEXT,
    session_ms REAL,
    first_ms REAL,
    warmup INTEGER,
    n INTEGER,
    total_s REAL,
    p50_ms REAL, p90_ms REAL, p99_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL,
    throughput REAL,
    samples TEXT,
    method TEXT,
    measured_at TEXT,
    UNIQUE (trial_id, precision, engine, provider, batch_size)
);
INSERT INTO latency_v5 (id, trial_id, engine, provider, batch_size, status, note, session_ms, first_ms,
    warmup, n, total_s, p50_ms, p90_ms, p99_ms, mean_ms, std_ms, min_ms, max_ms, throughput, samples, method,
    measured_at)
SELECT id, trial_id, engine, provider, batch_size, status, note, session_ms, first_ms, warmup, n, total_s, p50_ms,
    p90_ms, p99_ms, mean_ms, std_ms, min_ms, max_ms, throughput, samples, method, measured_at
FROM latency;
DROP TABLE latency;
ALTER TABLE latency_v5 RENAME TO latency;
""",
]

JSON_COLUMNS = {
    "input_shape",
    "classes",
    "split",
    "config",
    "environment",
    "variant",
    "hparams",
    "confusion",
    "samples",
    "method",
}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def safe_component(name: str) -> str:
    """``name`` if it can be one path component under a folder of ours (no separators, no '..')."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise BenchError(f"refusing {name!r} as a file name: it could point outside the runs or reports folder")
    return name


def default_path() -> Path:
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def _num(x):
    """SQLite has no NaN: a non-finite figure is stored as NULL."""
    return x if x is None or math.isfinite(x) else None


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


class Store:
    def __init__(self, path: str | Path | None = None, create: bool = True, readonly: bool = False):
        """Open (``create``: or create) the store at ``path``. ``readonly``: for commands that only read; they also
        work where nothing may be written (a read-only folder or file system, another user's results)."""
        if str(path if path is not None else default_path()).endswith(("/", os.sep)):
            raise UsageError(f"store {path or default_path()} names a folder; give the path of a database file, "
                             "e.g. runs/bench.db")  # fmt: skip
        self.path = Path(path) if path is not None else default_path()
        self.root = self.path.parent
        if self.path.is_dir():
            raise UsageError(f"store {self.path} is a directory; give the path of a database file")
        if not self.path.exists() and (readonly or not create):
            raise BenchError(f"no store at {self.path} (run `bench run` first, or pass --store)")
        try:
            if readonly:
                self.db = self._connect_readonly()
            else:
                self.root.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            if "not a database" in str(exc):
                raise BenchError(f"{self.path} is not a cnnbench store ({exc})") from exc
            raise BenchError(f"cannot open store {self.path}: {exc}") from exc
        self.db.row_factory = sqlite3.Row
        try:
            if readonly and not self._check_readonly():  # written by an earlier cnnbench: upgrade it first
                self.db.close()
                self.db = sqlite3.connect(self.path, timeout=30)
                self.db.row_factory = sqlite3.Row
                readonly = False
            if not readonly:
                self._prepare()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if "not a database" in str(exc):
                raise BenchError(f"{self.path} is not a cnnbench store ({exc})") from exc
            raise BenchError(f"cannot open store {self.path}: {exc}") from exc

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection; where SQLite cannot even create its shared-memory file beside the store (a
        read-only folder), an immutable one: no locks, so read only what no process is writing."""
        uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}"
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
            return sqlite3.connect(f"{uri}?immutable=1", uri=True)

    def _header(self) -> tuple[int, int, int]:
        """(application id, schema version, number of tables), read in one statement: one snapshot. Read one
        by one, a process could see the tables of a store that another process was creating at that moment
        but not yet its application id, and call it another SQLite database."""
        return self.db.execute(
            "SELECT a.application_id, v.user_version, (SELECT count(*) FROM sqlite_master)"
            " FROM pragma_application_id() AS a, pragma_user_version() AS v"
        ).fetchone()

    def _check_readonly(self) -> bool:
        """Whether this store can be read as it is (False: its schema needs an upgrade)."""
        app_id, version, _ = self._header()
        if app_id != APPLICATION_ID:
            raise BenchError(f"{self.path} is not a cnnbench store (it is another SQLite database)")
        if version > SCHEMA_VERSION:
            raise BenchError(f"store {self.path} was written by a newer cnnbench (schema {version}, this one reads "
                             f"{SCHEMA_VERSION}): upgrade cnnbench")  # fmt: skip
        return version == SCHEMA_VERSION

    def _prepare(self) -> None:
        app_id, version, tables = self._header()
        if tables == 0 and app_id == 0:
            self._apply(SCHEMA + "".join(MIGRATIONS), SCHEMA_VERSION, new=True)
            app_id, version, tables = self._header()  # ours, or what a process that created it meanwhile wrote
        if app_id != APPLICATION_ID:
            raise BenchError(f"{self.path} is not a cnnbench store (it is another SQLite database)")
        if version > SCHEMA_VERSION:
            raise BenchError(
                f"store {self.path} was written by a newer cnnbench (schema {version}, this one reads "
                f"{SCHEMA_VERSION}): upgrade cnnbench"
            )
        if version < SCHEMA_VERSION:
            self._apply("".join(MIGRATIONS[version - 1 :]), SCHEMA_VERSION, from_version=version)
        # WAL: readers (bench report) never block the writer, and a crash leaves the file consistent. The mode
        # is kept in the file: only the first opening sets it. SQLite answers a switch that meets another
        # connection with "database is locked" at once, without waiting, so wait here (processes opening a
        # new store at the same moment).
        deadline = time.monotonic() + 30
        while self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                self.db.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")

    def _apply(self, script: str, version: int, new: bool = False, from_version: int | None = None) -> None:
        """Run ``script`` and set the schema version in one transaction (executescript would commit
        statement by statement); unless another process, opening the same store at the same moment, created
        (``new``) or migrated it first: the check and the change happen under one write lock."""
        statements = [s for s in script.split(";") if s.strip()]
        try:
            self.db.execute("BEGIN IMMEDIATE")
            done = (
                self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
                if new
                else self.db.execute("PRAGMA user_version").fetchone()[0] != from_version
            )
            if done:
                self.db.execute("ROLLBACK")
                return
            for statement in statements:
                self.db.execute(statement)
            if new:
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.db.execute(f"PRAGMA user_version = {version}")
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise BenchError(f"cannot prepare store {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _tx(self):
        try:
            with self.db:
                yield self.db
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL or exc.sqlite_errorname.startswith("SQLITE_IOERR_WRITE"):
                # SQLite reports a write past the disk's or the file size limit's end as "disk I/O error"
                raise DiskFull(f"no room to write store {self.path} ({exc}); what was recorded before is intact: "
                               "free some space and resume") from exc  # fmt: skip
            raise BenchError(f"cannot write to store {self.path}: {exc}") from exc

    # --- writing ------------------------------------------------------------------------------------

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
    ) -> str:
        """Record a run and its whole plan (``trials``: see plan_trials) in one transaction: a stop at any moment
        leaves both or neither, never a run without its trials. This process becomes the run's owner (see claim);
        ``owning(run_id, claimed=True)`` or ``release`` gives it up."""
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (id, created_at, status, command, dataset, input_shape, classes, split, seed,"
                " config, environment) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    now(),
                    command,
                    dataset,
                    json.dumps(list(input_shape)),
                    json.dumps(classes),
                    json.dumps(split),
                    seed,
                    json.dumps(config),
                    json.dumps(environment),
                ),
            )
            self._insert_trials(db, run_id, trials)
            self._set_owner(db, run_id)
        return run_id

    # --- ownership: one live process runs a run -----------------------------------------------------------

    @staticmethod
    def _set_owner(db, run_id: str) -> None:
        pid, host, started = _this_process()
        db.execute("INSERT OR REPLACE INTO owners (run_id, pid, host, process_start, since, heartbeat)"
                   " VALUES (?, ?, ?, ?, ?, ?)", (run_id, pid, host, started, now(), time.time()))  # fmt: skip

    def owner(self, run_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM owners WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def claim(self, run_id: str) -> None:
        """Make this process the owner of ``run_id``, unless another live process is: then say which. An owner
        that is gone (killed, crashed, its machine lost) is taken over."""
        pid, host, _ = _this_process()
        try:
            self.db.execute("BEGIN IMMEDIATE")  # read and write the owner under one lock
            try:
                owner = self.owner(run_id)
                if owner and (owner["pid"], owner["host"]) != (pid, host) and owner_alive(owner):
                    raise BenchError(
                        f"run {run_id} is being run by process {owner['pid']} on {owner['host']} (since "
                        f"{owner['since']}): wait for it to end, or stop it and resume again"
                    )
                self._set_owner(self.db, run_id)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise BenchError(f"cannot write to store {self.path}: {exc}") from exc

    def release(self, run_id: str) -> None:
        pid, host, _ = _this_process()
        with self._tx() as db:
            db.execute("DELETE FROM owners WHERE run_id = ? AND pid = ? AND host = ?", (run_id, pid, host))

    @contextmanager
    def owning(self, run_id: str, claimed: bool = False):
        """Own ``run_id`` for the block (``claimed``: create_run already made this process its owner), renewing
        the claim from a background thread, and give it up at the end."""
        if not claimed:
            self.claim(run_id)
        pid, host, _ = _this_process()
        stop = threading.Event()

        def heartbeat():
            db = sqlite3.connect(self.path, timeout=30)
            try:
                while not stop.wait(HEARTBEAT_S):
                    with contextlib.suppress(sqlite3.Error), db:
                        db.execute("UPDATE owners SET heartbeat = ? WHERE run_id = ? AND pid = ? AND host = ?",
                                   (time.time(), run_id, pid, host))  # fmt: skip
            finally:
                db.close()

        thread = threading.Thread(target=heartbeat, name="cnnbench-owner", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            with contextlib.suppress(BenchError, sqlite3.Error):
                self.release(run_id)

    def finish_run(self, run_id: str, status: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, now(), run_id))

    def trial_dir(self, run_id: str, idx: int) -> Path:
        return self.root / safe_component(run_id) / f"t{int(idx):03d}"

    def plan_trials(self, run_id: str, trials: list[dict]) -> None:
        """Record the whole plan as pending trials, so that an interrupted run knows what is missing.
        Each dict has idx, architecture, plugin, variant, hparams."""
        with self._tx() as db:
            self._insert_trials(db, run_id, trials)

    @staticmethod
    def _insert_trials(db, run_id: str, trials) -> None:
        db.executemany(
            "INSERT INTO trials (run_id, idx, architecture, plugin, variant, hparams, status)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending')",
            [(run_id, t["idx"], t["architecture"], t["plugin"], json.dumps(t["variant"]), json.dumps(t["hparams"]))
             for t in trials],
        )  # fmt: skip

    def start_trial(self, trial_id: int, split: dict, keep_files: bool = False) -> None:
        """Mark a trial running, forgetting what an interrupted attempt left: its figures, history and (unless
        ``keep_files``: its saved training state is to be continued) its files."""
        row = self.db.execute("SELECT run_id, idx FROM trials WHERE id = ?", (trial_id,)).fetchone()
        if not keep_files:
            shutil.rmtree(self.trial_dir(row["run_id"], row["idx"]), ignore_errors=True)
        with self._tx() as db:
            db.execute(
                "UPDATE trials SET status = 'running', note = NULL, split = ?, started_at = ?, finished_at = NULL,"
                " best_epoch = NULL, epochs_run = NULL, checkpoint = NULL, checkpoint_sha256 = NULL WHERE id = ?",
                (json.dumps(split), now(), trial_id),
            )
            db.execute("DELETE FROM epochs WHERE trial_id = ?", (trial_id,))

    def reopen_run(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?", (run_id,))

    def interrupt_running(self, run_id: str, note: str) -> None:
        """Trials left 'running' by an executor that stopped: interrupted, to be run again on resume."""
        with self._tx() as db:
            db.execute(
                "UPDATE trials SET status = 'interrupted', note = ?, finished_at = ?"
                " WHERE run_id = ? AND status = 'running'",
                (note, now(), run_id),
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
        with self._tx() as db:
            db.execute(
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
            if r is not None and getattr(r, "precision", None):  # what 'auto' became, if the trainer chose
                db.execute(
                    "UPDATE trials SET hparams = json_set(hparams, '$.precision', ?, '$.channels_last', json(?))"
                    " WHERE id = ?",
                    (r.precision, json.dumps(bool(r.channels_last)), trial_id),
                )
            db.execute("DELETE FROM epochs WHERE trial_id = ?", (trial_id,))
            db.executemany(
                "INSERT INTO epochs (trial_id, epoch, train_loss, train_acc, val_loss, val_acc, time_s, lr, elapsed_s)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(trial_id, e.epoch, _num(e.train_loss), e.train_acc, _num(e.val_loss), e.val_acc, e.time_s, e.lr,
                  e.elapsed_s) for e in history],
            )  # fmt: skip

    def record_export(self, trial_id: int, row: dict) -> None:
        """Replace the trial's export record with ``row`` (column -> value; path relative or absolute). The int8 and
        fp16 variants made from the previous export go with it, in the same transaction: they would describe
        another file."""
        row = {**row, "trial_id": trial_id, "exported_at": now(), "max_abs_diff": _num(row.get("max_abs_diff"))}
        if row.get("path"):
            row["path"] = os.path.relpath(row["path"], self.root)
        with self._tx() as db:
            db.execute("DELETE FROM variants WHERE trial_id = ?", (trial_id,))
            db.execute("DELETE FROM latency WHERE trial_id = ? AND precision != 'fp32'", (trial_id,))
            db.execute(f"INSERT OR REPLACE INTO exports ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       list(row.values()))  # fmt: skip

    def record_latencies(self, trial_id: int, rows: list[dict]) -> None:
        """Replace the trial's measurements for the same (precision, engine, provider, batch size), all in one
        transaction. A row without a precision is of the fp32 model."""
        stamp = now()
        self._replace("latency", *[{"precision": "fp32", **row, "trial_id": trial_id, "measured_at": stamp,
                                     "samples": json.dumps(row.get("samples")), "method": json.dumps(row.get("method"))}
                                    for row in rows])  # fmt: skip

    def record_variant(self, trial_id: int, row: dict) -> None:
        """Replace the trial's variant of ``row['precision']`` and its measurements, in one transaction: a variant
        made again is benchmarked again."""
        row = {**row, "trial_id": trial_id, "created_at": now(), "method": json.dumps(row.get("method"))}
        if row.get("path"):
            row["path"] = os.path.relpath(row["path"], self.root)
        with self._tx() as db:
            db.execute("DELETE FROM latency WHERE trial_id = ? AND precision = ?", (trial_id, row["precision"]))
            db.execute(f"INSERT OR REPLACE INTO variants ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       list(row.values()))  # fmt: skip

    def variants_of(self, trial_id: int) -> list[dict]:
        rows = self.db.execute(
            "SELECT * FROM variants WHERE trial_id = ? ORDER BY precision = 'fp16', precision", (trial_id,)
        ).fetchall()
        return [self._decode(r) for r in rows]

    def _replace(self, table: str, *rows: dict) -> None:
        with self._tx() as db:
            for row in rows:
                db.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                           list(row.values()))  # fmt: skip

    # --- reading ------------------------------------------------------------------------------------

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
        rows = self.db.execute("SELECT * FROM runs ORDER BY created_at, rowid").fetchall()
        return [self._decode(r) for r in rows]

    def run(self, run_id: str | None = None) -> dict:
        """The run ``run_id`` (a unique prefix will do), or the latest one."""
        if run_id is None:
            row = self.db.execute("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise BenchError(f"store {self.path} has no runs yet (start one with `bench run`)")
            return self._decode(row)
        rows = self.db.execute(
            "SELECT * FROM runs WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY id",
            (run_id, run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
        ).fetchall()
        exact = [r for r in rows if r["id"] == run_id]
        if exact:
            return self._decode(exact[0])
        if len(rows) == 1:
            return self._decode(rows[0])
        if len(rows) > 1:
            raise UsageError(f"run '{run_id}' is ambiguous: {', '.join(r['id'] for r in rows)}")
        ids = [r["id"] for r in reversed(self.runs())]
        raise unknown("run", run_id, ids)

    def trials(self, run_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM trials WHERE run_id = ? ORDER BY idx", (run_id,)).fetchall()
        return [self._decode(r) for r in rows]

    def trial(self, trial_id: int) -> dict:
        return self._decode(self.db.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone())

    def history(self, trial_id: int) -> list[dict]:
        rows = self.db.execute(
            "SELECT epoch, train_loss, train_acc, val_loss, val_acc, time_s, lr, elapsed_s FROM epochs"
            " WHERE trial_id = ? ORDER BY epoch",
            (trial_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def export_of(self, trial_id: int) -> dict | None:
        return self._decode(self.db.execute("SELECT * FROM exports WHERE trial_id = ?", (trial_id,)).fetchone())

    def latency_of(self, trial_id: int) -> list[dict]:
        rows = self.db.execute(
            "SELECT * FROM latency WHERE trial_id = ?"
            " ORDER BY provider NOT IN ('CPUExecutionProvider', 'cpu'), precision != 'fp32', precision, batch_size,"
            " engine",
            (trial_id,),
        ).fetchall()
        return [self._decode(r) for r in rows]

    def artifact_path(self, relative: str | None) -> Path | None:
        return self.root / relative if relative else None

    def checkpoint_path(self, trial: dict) -> Path | None:
        return self.root / trial["checkpoint"] if trial.get("checkpoint") else None
