"""Fixtures for the ledger tests: both stores, each test in its own place.

``store_url`` is parametrised over SQLite (None: ``run_dir/ledger.db``) and PostgreSQL (a
fresh schema per test, dropped afterwards). PostgreSQL comes from ``TRUSTGRPO_TEST_PG_URL``
(default: the local server, database ``test``); when it cannot be reached the PostgreSQL
cases are skipped with the connection error as the reason, never silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_URL = os.environ.get("TRUSTGRPO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
_pg_error: str | None = None
_pg_checked = False


def pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None."""
    global _pg_error, _pg_checked
    if not _pg_checked:
        _pg_checked = True
        try:
            import psycopg

            psycopg.connect(PG_URL, connect_timeout=3).close()
        except Exception as e:  # any failure: report it as the skip reason
            _pg_error = f"PostgreSQL at {PG_URL} unavailable: {e}"
    return _pg_error


def pg_schema_url() -> tuple[str, str]:
    """A URL selecting a fresh schema, and the schema's name."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}", schema


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite in the run directory) or a PostgreSQL URL with a fresh schema."""
    if request.param == "sqlite":
        yield None
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    url, schema = pg_schema_url()
    try:
        yield url
    finally:
        drop_schema(schema)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


class RawDB:
    """Direct SQL on a ledger's tables, the way an attacker with database access would."""

    def __init__(self, run_dir: Path, url: str | None) -> None:
        self.pg = url is not None
        if url is None:
            import sqlite3

            self.conn: Any = sqlite3.connect(run_dir / "ledger.db", isolation_level=None)
            self.prefix = ""
        else:
            import psycopg

            from trustgrpo.ledger.store_postgres import split_url

            conn_url, schema = split_url(url, "unused")
            self.conn = psycopg.connect(conn_url, autocommit=True)
            self.prefix = f'"{schema}".'

    def q(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        sql = sql.replace("{p}", self.prefix)
        if self.pg:
            sql = sql.replace("?", "%s")
        cur = self.conn.execute(sql, params)
        try:
            return [
                tuple(bytes(x) if isinstance(x, memoryview) else x for x in r)
                for r in cur.fetchall()
            ]
        except Exception:  # statements without a result
            return []

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return {
            "events": self.q("SELECT idx, kind, leaf_hash, data FROM {p}events ORDER BY idx"),
            "blobs": self.q("SELECT hash, size, data, redacted FROM {p}blobs ORDER BY hash"),
            "checkpoints": self.q("SELECT id, size, note FROM {p}checkpoints ORDER BY id"),
            "meta": self.q("SELECT key, value FROM {p}meta ORDER BY key"),
        }

    def restore(self, snap: dict[str, list[tuple[Any, ...]]]) -> None:
        cols = {
            "events": "idx, kind, leaf_hash, data",
            "blobs": "hash, size, data, redacted",
            "checkpoints": "id, size, note",
            "meta": "key, value",
        }
        self.q("BEGIN")
        for table, rows in snap.items():
            self.q(f"DELETE FROM {{p}}{table}")
            marks = ", ".join("?" * len(cols[table].split(", ")))
            for row in rows:
                self.q(f"INSERT INTO {{p}}{table} ({cols[table]}) VALUES ({marks})", row)
        self.q("COMMIT")

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def raw_db() -> Iterator[Any]:
    """A factory of :class:`RawDB` connections, closed after the test."""
    opened: list[RawDB] = []

    def make(run_dir: Path, url: str | None) -> RawDB:
        db = RawDB(run_dir, url)
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.close()
