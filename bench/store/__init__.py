"""The results store: one SQLite file with runs, trials and per-epoch history, exports, variants and measurements.

Every write is a transaction; a trial's results and history are committed together the moment it ends, so an
interrupted sweep keeps every finished trial. Checkpoints and other artifacts live beside the database, under
``<store dir>/<run id>/t<NNN>/``; paths are stored relative to the store's folder.

    schema.py     the tables and their migrations
    opening.py    opening modes, transactions
    ownership.py  one live process per run
    writes.py     what the pipeline records
    reads.py      what it reads back"""

from __future__ import annotations

from bench.store.opening import DEFAULT_STORE, STORE_ENV, StoreFile, default_path, safe_component
from bench.store.ownership import HEARTBEAT_S, LEASE_S, Ownership, now, owner_alive
from bench.store.reads import Reads
from bench.store.schema import APPLICATION_ID, SCHEMA_VERSION
from bench.store.writes import Writes

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_STORE",
    "HEARTBEAT_S",
    "LEASE_S",
    "SCHEMA_VERSION",
    "STORE_ENV",
    "Store",
    "default_path",
    "now",
    "owner_alive",
    "safe_component",
]


class Store(Writes, Reads, Ownership, StoreFile):
    """A results store (see the module): ``Store(path)`` opens or creates it, ``Store(path, create=False)`` only
    opens, ``Store(path, readonly=True)`` reads where nothing may be written."""
