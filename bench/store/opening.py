"""Opening a store: creating it, upgrading an older one, read-only and immutable modes, transactions."""

from __future__ import annotations

import os
import re
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

from bench.core.errors import BenchError, DiskFull, UsageError
from bench.store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA, SCHEMA_VERSION

STORE_ENV = "BENCH_STORE"
DEFAULT_STORE = Path("runs") / "bench.db"


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_path() -> Path:
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def safe_component(name: str) -> str:
    """``name`` if it can be one path component under a folder of ours (no separators, no '..')."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise BenchError(f"refusing {name!r} as a file name: it could point outside the runs or reports folder")
    return name


class StoreFile:
    """The SQLite file of a store (``self.conn``), opened, created or upgraded as its mode allows."""

    def __init__(self, path: str | Path | None = None, create: bool = True, readonly: bool = False):
        """Open (``create``: or create) the store at ``path``. ``readonly``: for commands that only read; they also
        work where nothing may be written (a read-only folder or file system, another user's results)."""
        if str(path if path is not None else default_path()).endswith(("/", os.sep)):
            raise UsageError(
                f"store {path or default_path()} names a folder; give the path of a database file, e.g. runs/bench.db"
            )
        self.path = Path(path) if path is not None else default_path()
        self.root = self.path.parent
        if self.path.is_dir():
            raise UsageError(f"store {self.path} is a directory; give the path of a database file")
        if not self.path.exists() and (readonly or not create):
            raise BenchError(f"no store at {self.path} (run `bench run` first, or pass --store)")
        try:
            if readonly:
                self.conn = self._connect_readonly()
            else:
                self.root.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            if "not a database" in str(exc):
                raise BenchError(f"{self.path} is not a cnnbench store ({exc})") from exc
            raise BenchError(f"cannot open store {self.path}: {exc}") from exc
        self.conn.row_factory = sqlite3.Row
        try:
            if readonly and not self._check_readonly():  # written by an earlier cnnbench: upgrade it first
                self.conn.close()
                self.conn = sqlite3.connect(self.path, timeout=30)
                self.conn.row_factory = sqlite3.Row
                readonly = False
            if not readonly:
                self._prepare()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            if "not a database" in str(exc):
                raise BenchError(f"{self.path} is not a cnnbench store ({exc})") from exc
            raise BenchError(f"cannot open store {self.path}: {exc}") from exc

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection; where SQLite cannot even create its shared-memory file beside the store (a
        read-only folder), an immutable one: no locks, so read only what no process is writing."""
        uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}"
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            return sqlite3.connect(f"{uri}?immutable=1", uri=True)

    def _header(self) -> tuple[int, int, int]:
        """(application id, schema version, number of tables), read in one statement: one snapshot. Read one
        by one, a process could see the tables of a store that another process was creating at that moment
        but not yet its application id, and call it another SQLite database."""
        return self.conn.execute(
            "SELECT a.application_id, v.user_version, (SELECT count(*) FROM sqlite_master)"
            " FROM pragma_application_id() AS a, pragma_user_version() AS v"
        ).fetchone()

    def _check_readonly(self) -> bool:
        """Whether this store can be read as it is (False: its schema needs an upgrade)."""
        app_id, version, _ = self._header()
        if app_id != APPLICATION_ID:
            raise BenchError(f"{self.path} is not a cnnbench store (it is another SQLite database)")
        if version > SCHEMA_VERSION:
            raise BenchError(
                f"store {self.path} was written by a newer cnnbench (schema {version}, this one reads "
                f"{SCHEMA_VERSION}): upgrade cnnbench"
            )
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
        while self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")

    def _apply(self, script: str, version: int, new: bool = False, from_version: int | None = None) -> None:
        """Run ``script`` and set the schema version in one transaction (executescript would commit
        statement by statement); unless another process, opening the same store at the same moment, created
        (``new``) or migrated it first: the check and the change happen under one write lock."""
        statements = [s for s in script.split(";") if s.strip()]
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            done = (
                self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
                if new
                else self.conn.execute("PRAGMA user_version").fetchone()[0] != from_version
            )
            if done:
                self.conn.execute("ROLLBACK")
                return
            for statement in statements:
                self.conn.execute(statement)
            if new:
                self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version = {version}")
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise BenchError(f"cannot prepare store {self.path}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _tx(self):
        try:
            with self.conn:
                yield self.conn
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL or exc.sqlite_errorname.startswith("SQLITE_IOERR_WRITE"):
                # SQLite reports a write past the disk's or the file size limit's end as "disk I/O error"
                raise DiskFull(
                    f"no room to write store {self.path} ({exc}); what was recorded before is intact: "
                    "free some space and resume"
                ) from exc
            raise BenchError(f"cannot write to store {self.path}: {exc}") from exc
