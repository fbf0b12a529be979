"""Where the ledger lives: SQLite in the run directory (default) or PostgreSQL.

Both stores hold the same four tables::

    meta         key → value: format, origin, public key (note verifier key), created
    events       idx (leaf index), kind, leaf_hash (SHA-256(0x00 || data)), data (canonical JSON)
    blobs        hash ("sha256:<hex>"), size, data (NULL once redacted), redacted (time + reason)
    checkpoints  id (signing order), size, note (the signed C2SP checkpoint, bytes)

A store is one connection and is not thread-safe; :class:`~trustgrpo.ledger.Ledger` serialises
its use. Writes happen inside :meth:`Store.transaction`, which holds the store's own write lock
(SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE``), so
several processes (the trainer, the review server) can append to one ledger: each one catches
up on the others' events inside the lock before it numbers its own.

Durability: SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is on disk when it
returns); PostgreSQL commits are durable with its default ``synchronous_commit``.
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trustgrpo.errors import LedgerError, UserError

FORMAT = "trustgrpo-ledger/1"
"""The ``format`` value in ``meta``; bump when the tables or the leaf layout change."""

EventRow = tuple[int, str, bytes, bytes]
"""``(idx, kind, leaf_hash, data)``."""
BlobRow = tuple[str, int, "bytes | None", "str | None"]
"""``(hash, size, data or None when redacted, redaction note or None)``."""
CheckpointRow = tuple[int, int, bytes]
"""``(id, size, note)``."""


class Store(abc.ABC):
    """One connection to a ledger's tables."""

    location: str
    """Where it is, for messages (a path, or a URL without password plus schema)."""

    @abc.abstractmethod
    def exists(self) -> bool:
        """True when the ledger's tables exist."""

    @abc.abstractmethod
    def create(self) -> None:
        """Create the tables if missing (idempotent, safe against concurrent creators)."""

    @abc.abstractmethod
    def meta(self) -> dict[str, str]:
        """The ``meta`` table."""

    @abc.abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction holding the store's exclusive write lock."""

    @abc.abstractmethod
    def set_meta_if_absent(self, items: dict[str, str]) -> None:
        """Insert meta keys that are not there yet (inside a transaction)."""

    @abc.abstractmethod
    def size(self) -> int:
        """``max(idx) + 1`` (0 when empty)."""

    @abc.abstractmethod
    def insert_events(self, rows: list[EventRow]) -> None:
        """Insert event rows (inside a transaction)."""

    @abc.abstractmethod
    def insert_blobs(self, rows: list[tuple[str, bytes]]) -> None:
        """Insert ``(hash, data)`` rows, ignoring hashes already present (inside a
        transaction)."""

    @abc.abstractmethod
    def insert_checkpoint(self, size: int, note: bytes) -> None:
        """Insert a signed checkpoint (inside a transaction)."""

    @abc.abstractmethod
    def iter_events(
        self, start: int = 0, stop: int | None = None, kind: str | None = None
    ) -> Iterator[EventRow]:
        """Event rows with ``start <= idx < stop`` (of one ``kind`` when given) in index order,
        streamed."""

    @abc.abstractmethod
    def get_event(self, idx: int) -> EventRow | None:
        """One event row, or None."""

    @abc.abstractmethod
    def checkpoints(self) -> list[CheckpointRow]:
        """Every checkpoint row in signing order."""

    @abc.abstractmethod
    def latest_checkpoint(self) -> CheckpointRow | None:
        """The last signed checkpoint row, or None."""

    @abc.abstractmethod
    def get_blob(self, h: str) -> BlobRow | None:
        """One blob row, or None when the hash is unknown."""

    @abc.abstractmethod
    def iter_blobs(self) -> Iterator[BlobRow]:
        """Every blob row, streamed."""

    @abc.abstractmethod
    def redact_blob(self, h: str, note: str) -> bool:
        """Erase a blob's content, keep its hash; False when already redacted."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""


def open_store(run_dir: Path, url: str | None, *, create: bool) -> Store:
    """The store of a run: SQLite ``run_dir/ledger.db`` when ``url`` is None, else PostgreSQL.

    With ``create=False`` a missing ledger is a :class:`UserError` (an auditor pointed at the
    wrong place), and nothing is created.
    """
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise UserError(f"ledger url: expected postgresql://..., found {url!r}")
        from trustgrpo.ledger.store_postgres import PostgresStore

        store: Store = PostgresStore(url, default_schema=run_dir.name)
    else:
        path = run_dir / "ledger.db"
        if not create and not path.is_file():
            raise UserError(f"no ledger in {run_dir}: expected {path}")
        store = SQLiteStore(path)
    if create:
        store.create()
    elif not store.exists():
        store.close()
        raise UserError(f"no ledger at {store.location}")
    return store


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    idx INTEGER PRIMARY KEY, kind TEXT NOT NULL, leaf_hash BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB, redacted TEXT);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY, size INTEGER NOT NULL, note BLOB NOT NULL);
"""


_CHUNK = 1024
"""Rows per multi-row INSERT (4,096 parameters, far below SQLite's limit of 32,766)."""


def _event_range(
    mark: str, start: int, stop: int | None, kind: str | None
) -> tuple[str, tuple[Any, ...]]:
    """``WHERE ... ORDER BY idx`` and its parameters for :meth:`Store.iter_events`."""
    where = [f"idx >= {mark}"]
    args: list[Any] = [start]
    if stop is not None:
        where.append(f"idx < {mark}")
        args.append(stop)
    if kind is not None:
        where.append(f"kind = {mark}")
        args.append(kind)
    return "WHERE " + " AND ".join(where) + " ORDER BY idx", tuple(args)


class SQLiteStore(Store):
    """The ledger in one SQLite file (WAL mode, ``synchronous=FULL``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        try:
            self._db = sqlite3.connect(
                path, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: blob index inserts are random
            self._db.execute("PRAGMA wal_autocheckpoint=16384")  # pages; fewer, larger copies
        except sqlite3.Error as e:
            raise LedgerError(f"cannot open ledger {path}: {e}") from None

    def exists(self) -> bool:
        names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        return {"meta", "events", "blobs", "checkpoints"} <= names

    def create(self) -> None:
        with self.transaction():
            for stmt in _SQLITE_SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta"))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise LedgerError(f"{self.location}: cannot take the write lock: {e}") from None
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise LedgerError(f"{self.location}: commit failed: {e}") from None

    def set_meta_if_absent(self, items: dict[str, str]) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", list(items.items())
        )

    def size(self) -> int:
        (n,) = self._db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM events").fetchone()
        return int(n)

    def _insert_many(self, head: str, width: int, rows: list[Any]) -> None:
        """``head VALUES (?,..),(?,..),...``: one statement per chunk of rows, so that SQLite
        works (and releases the GIL) in one step rather than once per row."""
        for i in range(0, len(rows), _CHUNK):
            chunk = rows[i : i + _CHUNK]
            values = ",".join(["(" + ",".join("?" * width) + ")"] * len(chunk))
            self._db.execute(f"{head} VALUES {values}", [x for row in chunk for x in row])

    def insert_events(self, rows: list[EventRow]) -> None:
        self._insert_many("INSERT INTO events (idx, kind, leaf_hash, data)", 4, rows)

    def insert_blobs(self, rows: list[tuple[str, bytes]]) -> None:
        self._insert_many(
            "INSERT OR IGNORE INTO blobs (hash, size, data)", 3, [(h, len(d), d) for h, d in rows]
        )

    def insert_checkpoint(self, size: int, note: bytes) -> None:
        self._db.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, note))

    def iter_events(
        self, start: int = 0, stop: int | None = None, kind: str | None = None
    ) -> Iterator[EventRow]:
        sql, args = _event_range("?", start, stop, kind)
        cur = self._db.execute(f"SELECT idx, kind, leaf_hash, data FROM events {sql}", args)
        while rows := cur.fetchmany(4096):
            yield from rows

    def get_event(self, idx: int) -> EventRow | None:
        row: EventRow | None = self._db.execute(
            "SELECT idx, kind, leaf_hash, data FROM events WHERE idx = ?", (idx,)
        ).fetchone()
        return row

    def checkpoints(self) -> list[CheckpointRow]:
        return list(self._db.execute("SELECT id, size, note FROM checkpoints ORDER BY id"))

    def latest_checkpoint(self) -> CheckpointRow | None:
        row: CheckpointRow | None = self._db.execute(
            "SELECT id, size, note FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return row

    def get_blob(self, h: str) -> BlobRow | None:
        row: BlobRow | None = self._db.execute(
            "SELECT hash, size, data, redacted FROM blobs WHERE hash = ?", (h,)
        ).fetchone()
        return row

    def iter_blobs(self) -> Iterator[BlobRow]:
        cur = self._db.execute("SELECT hash, size, data, redacted FROM blobs")
        while rows := cur.fetchmany(4096):
            yield from rows

    def blob_rows(self) -> int:
        """About how many blob rows there are (the largest row id: no scan)."""
        (n,) = self._db.execute("SELECT COALESCE(MAX(rowid), 0) FROM blobs").fetchone()
        return int(n)

    def iter_blob_part(self, k: int, n: int, rows: int) -> Iterator[BlobRow]:
        """The ``k``-th of ``n`` disjoint parts of the blob rows (row id ranges, for
        ``rows`` = :meth:`blob_rows` taken once); the last part runs to the end."""
        where = []
        if k > 0:
            where.append(f"rowid > {rows * k // n}")
        if k < n - 1:
            where.append(f"rowid <= {rows * (k + 1) // n}")
        sql = "SELECT hash, size, data, redacted FROM blobs"
        cur = self._db.execute(sql + (" WHERE " + " AND ".join(where) if where else ""))
        while batch := cur.fetchmany(4096):
            yield from batch

    def redact_blob(self, h: str, note: str) -> bool:
        self._db.execute("PRAGMA secure_delete=ON")  # overwrite the freed content with zeros
        with self.transaction():
            cur = self._db.execute(
                "UPDATE blobs SET data = NULL, redacted = ? WHERE hash = ? AND data IS NOT NULL",
                (note, h),
            )
            changed = cur.rowcount > 0
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # and drop old page copies
        return changed

    def close(self) -> None:
        self._db.close()
