"""``audit export`` and ``audit redact``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from trustgrpo.errors import UserError
from trustgrpo.ledger.events import BLOB_PREFIX
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.ledger.store import open_store


def export(reader: LedgerReader, fmt: str, out: Path | None) -> int:
    """Write every event; returns the count.

    ``jsonl``: one leaf per line, exactly the stored canonical JSON, so each line's
    ``SHA-256(0x00 || line)`` is its leaf hash. ``parquet``: columns ``index``, ``kind``,
    ``ts`` (UTC), ``step`` (null for events without one), ``leaf_hash`` (hex) and ``event``
    (the leaf as a string). ``out=None`` writes JSONL to standard output.
    """
    if fmt == "jsonl":
        if out is None:
            return _write_jsonl(reader, sys.stdout.buffer)
        with out.open("wb") as f:
            return _write_jsonl(reader, f)
    if fmt == "parquet":
        if out is None:
            raise UserError("export --format parquet: expected an output file, found none")
        return _write_parquet(reader, out)
    raise UserError(f"export format: expected jsonl or parquet, found {fmt!r}")


def _write_jsonl(reader: LedgerReader, f: BinaryIO) -> int:
    n = 0
    for _, _, _, data in reader.store.iter_events():
        f.write(bytes(data) + b"\n")
        n += 1
    f.flush()
    return n


def _chunks(reader: LedgerReader, size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for ev in reader.events():
        step = ev.body.get("step")
        chunk.append(
            (
                ev.index,
                ev.kind,
                ev.ts,
                step if type(step) is int else None,
                ev.leaf_hash.hex(),
                ev.data.decode(),
            )
        )
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_parquet(reader: LedgerReader, out: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("index", pa.int64()),
            ("kind", pa.string()),
            ("ts", pa.timestamp("ms", tz="UTC")),
            ("step", pa.int64()),
            ("leaf_hash", pa.string()),
            ("event", pa.string()),
        ]
    )
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        for chunk in _chunks(reader, 65536):
            cols = list(zip(*chunk, strict=True))
            writer.write_table(pa.Table.from_arrays([pa.array(c) for c in cols], schema=schema))
            n += len(chunk)
    return n


def redact(run_dir: Path, blob: str, *, url: str | None = None, reason: str = "") -> bool:
    """Erase a blob's content, keeping its hash (events commit to the hash, so the ledger
    still verifies). Returns False when it was already redacted. Needs no signing key.

    The old content is overwritten in SQLite (``secure_delete``, WAL truncated) and vacuumed
    in PostgreSQL; copies made earlier (backups, exports) are out of reach.
    """
    h = blob if blob.startswith(BLOB_PREFIX) else BLOB_PREFIX + blob
    if len(h) != len(BLOB_PREFIX) + 64 or any(c not in "0123456789abcdef" for c in h[7:]):
        raise UserError(f"blob: expected sha256:<64 lowercase hex digits>, found {blob!r}")
    store = open_store(Path(run_dir), url, create=False)
    try:
        if store.get_blob(h) is None:
            raise UserError(f"no blob {h} in {store.location}")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return store.redact_blob(h, f"{stamp} {reason}".strip())
    finally:
        store.close()
