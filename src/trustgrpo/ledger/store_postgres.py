"""The ledger in PostgreSQL (the ``[postgres]`` extra; psycopg is imported only here).

``ledger.url = "postgresql://user@host:5432/db"``. Each ledger lives in its own schema: by
default ``trustgrpo_<run directory name>``; a ``schema`` query parameter picks another one
(``postgresql://...?schema=team_a_run7``) and is removed before connecting. A schema that holds
another run's ledger is refused when the ledger is opened (its key does not match).

Appends take ``LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE``, which conflicts with itself
(one writer at a time) but not with readers. Events are written with ``COPY ... (FORMAT
BINARY)``; reads stream through a server-side cursor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from trustgrpo.errors import LedgerError
from trustgrpo.ledger.store import BlobRow, CheckpointRow, EventRow, Store, _event_range

_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (idx BIGINT PRIMARY KEY, kind TEXT NOT NULL, "
    "leaf_hash BYTEA NOT NULL, data BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, size BIGINT NOT NULL, "
    "data BYTEA, redacted TEXT)",
    "CREATE TABLE IF NOT EXISTS checkpoints (id BIGSERIAL PRIMARY KEY, size BIGINT NOT NULL, "
    "note BYTEA NOT NULL)",
)


def split_url(url: str, default_schema: str) -> tuple[str, str]:
    """``(connection url without 'schema', schema)``; the default is derived from a name."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), "")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    if not schema:
        schema = "trustgrpo_" + re.sub(r"[^a-z0-9_]", "_", default_schema.lower())
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        raise LedgerError(f"ledger schema: expected an SQL identifier, found {schema!r}")
    return urlunsplit(parts._replace(query=rest)), schema[:63]


def _redacted_location(url: str, schema: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = netloc[-1]
    user = netloc[0].split(":", 1)[0] + "@" if len(netloc) == 2 else ""
    return f"{parts.scheme}://{user}{host}{parts.path} schema {schema}"


class PostgresStore(Store):
    """The ledger in a PostgreSQL schema."""

    def __init__(self, url: str, *, default_schema: str) -> None:
        try:
            import psycopg
            from psycopg import sql
        except ImportError:  # pragma: no cover - depends on the install
            raise LedgerError(
                "a postgresql:// ledger needs psycopg: pip install 'trustgrpo[postgres]'"
            ) from None
        self._sql = sql
        conn_url, self.schema = split_url(url, default_schema)
        self.location = _redacted_location(conn_url, self.schema)
        try:
            self._db: Any = psycopg.connect(conn_url, autocommit=True)
        except psycopg.Error as e:
            raise LedgerError(f"cannot connect to {self.location}: {e}") from None
        self._psycopg = psycopg

    def _q(self, text: str) -> Any:
        """``text`` with ``{s}`` replaced by the quoted schema name."""
        return self._sql.SQL(text).format(s=self._sql.Identifier(self.schema))

    def exists(self) -> bool:
        row = self._db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name IN ('meta', 'events', 'blobs', 'checkpoints')",
            (self.schema,),
        ).fetchone()
        return bool(row[0] == 4)

    def create(self) -> None:
        with self._db.transaction():
            # Serialise concurrent creators: CREATE ... IF NOT EXISTS can race in the catalog.
            self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema,))
            self._db.execute(self._q("CREATE SCHEMA IF NOT EXISTS {s}"))
            for stmt in _TABLES:
                self._db.execute(self._q(stmt.replace("EXISTS ", "EXISTS {s}.", 1)))

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute(self._q("SELECT key, value FROM {s}.meta")).fetchall())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self._db.transaction():
                self._db.execute(self._q("LOCK TABLE {s}.events IN SHARE ROW EXCLUSIVE MODE"))
                yield
        except self._psycopg.Error as e:
            raise LedgerError(f"{self.location}: write failed: {e}") from None

    def set_meta_if_absent(self, items: dict[str, str]) -> None:
        with self._db.cursor() as cur:
            cur.executemany(
                self._q("INSERT INTO {s}.meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING"),
                list(items.items()),
            )

    def size(self) -> int:
        row = self._db.execute(self._q("SELECT COALESCE(MAX(idx) + 1, 0) FROM {s}.events"))
        return int(row.fetchone()[0])

    def insert_events(self, rows: list[EventRow]) -> None:
        with (
            self._db.cursor() as cur,
            cur.copy(
                self._q("COPY {s}.events (idx, kind, leaf_hash, data) FROM STDIN (FORMAT BINARY)")
            ) as copy,
        ):
            copy.set_types(["int8", "text", "bytea", "bytea"])
            for row in rows:
                copy.write_row(row)

    def insert_blobs(self, rows: list[tuple[str, bytes]]) -> None:
        if not rows:
            return
        self._db.execute(
            self._q(
                "INSERT INTO {s}.blobs (hash, size, data) SELECT * FROM "
                "unnest(%s::text[], %s::int8[], %s::bytea[]) ON CONFLICT (hash) DO NOTHING"
            ),
            ([h for h, _ in rows], [len(d) for _, d in rows], [d for _, d in rows]),
        )

    def insert_checkpoint(self, size: int, note: bytes) -> None:
        self._db.execute(
            self._q("INSERT INTO {s}.checkpoints (size, note) VALUES (%s, %s)"), (size, note)
        )

    def _stream(self, query: Any, params: tuple[Any, ...] = ()) -> Iterator[Any]:
        with self._db.transaction(), self._db.cursor(name="trustgrpo_stream") as cur:
            cur.itersize = 4096
            cur.execute(query, params)
            yield from cur

    def iter_events(
        self, start: int = 0, stop: int | None = None, kind: str | None = None
    ) -> Iterator[EventRow]:
        sql, args = _event_range("%s", start, stop, kind)
        q = self._q("SELECT idx, kind, leaf_hash, data FROM {s}.events " + sql)
        for idx, kind, lh, data in self._stream(q, args):
            yield idx, kind, bytes(lh), bytes(data)

    def get_event(self, idx: int) -> EventRow | None:
        row = self._db.execute(
            self._q("SELECT idx, kind, leaf_hash, data FROM {s}.events WHERE idx = %s"), (idx,)
        ).fetchone()
        return None if row is None else (row[0], row[1], bytes(row[2]), bytes(row[3]))

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._db.execute(self._q("SELECT id, size, note FROM {s}.checkpoints ORDER BY id"))
        return [(i, n, bytes(note)) for i, n, note in rows.fetchall()]

    def latest_checkpoint(self) -> CheckpointRow | None:
        row = self._db.execute(
            self._q("SELECT id, size, note FROM {s}.checkpoints ORDER BY id DESC LIMIT 1")
        ).fetchone()
        return None if row is None else (row[0], row[1], bytes(row[2]))

    def get_blob(self, h: str) -> BlobRow | None:
        row = self._db.execute(
            self._q("SELECT hash, size, data, redacted FROM {s}.blobs WHERE hash = %s"), (h,)
        ).fetchone()
        if row is None:
            return None
        return row[0], row[1], None if row[2] is None else bytes(row[2]), row[3]

    def iter_blobs(self) -> Iterator[BlobRow]:
        q = self._q("SELECT hash, size, data, redacted FROM {s}.blobs")
        for h, size, data, redacted in self._stream(q):
            yield h, size, None if data is None else bytes(data), redacted

    def redact_blob(self, h: str, note: str) -> bool:
        with self.transaction():
            cur = self._db.execute(
                self._q(
                    "UPDATE {s}.blobs SET data = NULL, redacted = %s "
                    "WHERE hash = %s AND data IS NOT NULL"
                ),
                (note, h),
            )
            changed = bool(cur.rowcount > 0)
        self._db.execute(self._q("VACUUM {s}.blobs"))  # drop the old row version
        return changed

    def drop(self) -> None:
        """Drop the whole schema (tests and benchmarks clean up with this)."""
        self._db.execute(self._q("DROP SCHEMA IF EXISTS {s} CASCADE"))

    def close(self) -> None:
        self._db.close()
