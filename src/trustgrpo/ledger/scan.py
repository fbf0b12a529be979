"""The two passes of ``audit verify`` over a ledger's rows, and the helpers that run them on
other cores.

:func:`scan_events` recomputes the leaf hash of every event in a range, checks its index and
envelope, and collects the blob references; :func:`scan_blobs` re-hashes blob contents. Both
report problems through a ``problem(where, message)`` callable and are independent per row, so
a SQLite ledger's rows can be split: :func:`scan_all` starts helper processes (this
module's :func:`main`), each with its own read connection, gives each a range of events and a
part of the blob table, scans the first events itself meanwhile, and returns everything in
event order (the caller builds the tree and checks the checkpoints). Helpers take longer to
start (about 0.2 s) than small ledgers take to verify: :data:`PARALLEL_MIN_EVENTS`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustgrpo.errors import LedgerError, VerificationError
from trustgrpo.ledger.canonical import canonical_json
from trustgrpo.ledger.events import BLOB_PREFIX, parse_event
from trustgrpo.ledger.pipe import helper_channel, recv, send, start_helper, stop_helper
from trustgrpo.ledger.store import SQLiteStore, Store

Report = Callable[[str, str], None]
"""``problem(where, message)``."""

PARALLEL_MIN_EVENTS = 50_000
"""Smaller ledgers are scanned in the calling process."""
_BLOB_COST = 0.45
"""Scanning a blob row, in units of scanning an event row (measured with bench/ledger.py)."""
_START_COST = 20_000
"""Starting a helper, in event rows scanned meanwhile (about 0.2 s)."""
_TREE_COST = 0.15
"""Building the tree and checking the blob references afterwards, per event, in this
process."""

_sha256 = hashlib.sha256
_TAIL = re.compile(rb',"index":(0|[1-9][0-9]*),"kind":"([a-z_]+)","ts":(0|[1-9][0-9]*)\}\Z')
"""The fixed tail of a canonical envelope."""
_BLOB_REF = re.compile(rb'_blob":"(sha256:[0-9a-f]{64})"')
"""A blob reference in canonical JSON: the value of a key ending in ``_blob`` (a quote
followed by a colon always closes a key, so this cannot match inside a string)."""


def scan_events(
    store: Store, start: int, stop: int, deep: bool, problem: Report
) -> tuple[list[bytes], set[bytes]]:
    """``(leaf hashes, blob references)`` of events ``start <= idx < stop``.

    The envelope is checked on the canonical bytes (its fixed ``{"body":`` head and
    ``,"index":N,"kind":"K","ts":T}`` tail), which is exact for what the writer produces and
    keeps verification fast; ``deep`` also parses each leaf and checks that it is canonical
    JSON (RFC 8785), which catches a faulty writer rather than tampering.
    """
    leaves: list[bytes] = []
    append = leaves.append
    refs: set[bytes] = set()
    chunk: list[bytes] = []  # leaves whose blob references are not collected yet
    keep = chunk.append
    tail_search = _TAIL.search
    i = start
    for idx, kind, lh, data in store.iter_events(start, stop):
        if type(data) is not bytes:
            data = _as_bytes(data)
        h = _sha256(b"\x00" + data).digest()
        if idx != i or h != lh:
            _check_row(i, idx, lh, h, problem)
        m = tail_search(data, max(len(data) - 96, 0))
        if m is None or data[:9] != b'{"body":{' or int(m[1]) != i or m[2].decode() != kind or deep:
            _check_envelope(i, kind, h, data, deep, problem)
        append(h)
        keep(data)
        if len(chunk) == 4096:  # one search over many leaves: far fewer calls
            refs.update(_BLOB_REF.findall(b"\n".join(chunk)))
            chunk.clear()
        i += 1
    refs.update(_BLOB_REF.findall(b"\n".join(chunk)))
    if i < stop:  # fewer rows than indices: some are missing (here or before)
        missing = f"expected {stop - i} more event(s) up to index {stop - 1}, found none"
        problem(f"event {i}", missing)
    return leaves, refs


def scan_blobs(
    store: Store, problem: Report, part: tuple[int, int, int] | None = None
) -> tuple[set[str], int]:
    """``(hashes present, how many are redacted)``, checking every blob's content hash and
    size; ``part`` ``(k, n, rows)``: only the ``k``-th of ``n`` parts (a SQLite store)."""
    seen: set[str] = set()
    redacted = 0
    if part is None:
        rows = store.iter_blobs()
    else:
        assert isinstance(store, SQLiteStore)
        rows = store.iter_blob_part(*part)
    for h, size, data, note in rows:
        seen.add(h)
        if data is None:
            redacted += 1
            if not note:
                problem(f"blob {h}", "content expected (or a redaction record), found neither")
            continue
        if type(data) is not bytes:
            data = _as_bytes(data)
        found = BLOB_PREFIX + _sha256(data).hexdigest()
        if found != h:
            problem(f"blob {h}", f"content hash expected {h}, found {found}")
        elif size != len(data):
            problem(f"blob {h}", f"size expected {len(data)}, found {size} (stored column)")
    return seen, redacted


def first_references(store: Store, hashes: set[str], stop: int) -> list[tuple[int, str]]:
    """``(index of the first event before ``stop`` that refers to it, hash)`` for each of
    ``hashes``, in event order (how a missing blob is reported)."""
    first: dict[str, int] = {}
    for idx, _, _, data in store.iter_events(0, stop):
        for ref in _BLOB_REF.findall(_as_bytes(data)):
            h = ref.decode()
            if h in hashes and h not in first:
                first[h] = idx
    return sorted((i, h) for h, i in first.items())


# --------------------------------------------------------------------------- in parallel


class Findings:
    """A ``problem(where, message)`` that keeps the first ``limit`` problems (None: all) and
    counts the rest."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.items: list[tuple[str, str]] = []
        self.dropped = 0

    def __call__(self, where: str, message: str) -> None:
        if self.limit is None or len(self.items) < self.limit:
            self.items.append((where, message))
        else:
            self.dropped += 1

    def __iadd__(self, other: Findings) -> Findings:
        """Add ``other``'s problems after these (kept up to this limit, the rest counted)."""
        for where, message in other.items:
            self(where, message)
        self.dropped += other.dropped
        return self


@dataclass
class Scan:
    """What the scans of a whole ledger found (problems of events go to the caller's
    ``problem`` as they are found)."""

    leaves: list[bytes] = field(default_factory=list)
    refs: set[bytes] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    redacted: int = 0
    blob_problems: Findings = field(default_factory=lambda: Findings(None))
    """Problems of blobs, reported after those of the checkpoints (``verify``'s order)."""
    processes: int = 1
    """This one and the helpers that answered."""
    warnings: list[str] = field(default_factory=list)
    """Helpers that failed (their share was scanned here)."""


def default_workers() -> int:
    """One process per CPU, at most 8."""
    return min(os.cpu_count() or 1, 8)


def workers_for(store: Store, events: int, workers: int | None) -> int:
    """How many processes scan ``events`` events: ``workers`` (None: :func:`default_workers`),
    but one for a small ledger or a store other than SQLite."""
    if not isinstance(store, SQLiteStore) or events < PARALLEL_MIN_EVENTS:
        return 1
    return max(1, default_workers() if workers is None else workers)


def scan_all(store: Store, events: int, deep: bool, problem: Findings, workers: int = 1) -> Scan:
    """Scan events ``0 <= idx < events`` and every blob, in ``workers`` processes (this one
    and helpers; see the module docstring). Problems of events go to ``problem`` in event
    order; those of blobs to :attr:`Scan.blob_problems`, with the same limit."""
    limit = problem.limit
    scan = Scan(blob_problems=Findings(limit))
    procs = []
    with contextlib.suppress(OSError):  # no interpreter to start: fewer helpers, or none
        for _ in range(workers - 1):
            procs.append(start_helper("trustgrpo.ledger.scan"))
    if not procs:
        scan.leaves, scan.refs = scan_events(store, 0, events, deep, problem)
        scan.blobs, scan.redacted = scan_blobs(store, scan.blob_problems)
        return scan
    assert isinstance(store, SQLiteStore)
    rows = store.blob_rows()
    helpers = len(procs)
    ranges = split(events, rows, helpers + 1)
    try:
        for k, proc in enumerate(procs):
            lo, hi = ranges[k + 1]
            request = (str(store.path), lo, hi, deep, (k, helpers, rows), limit)
            with contextlib.suppress(OSError, ValueError):  # a helper that died: see below
                send(proc.stdin, request)  # type: ignore[arg-type]
        scan.leaves, scan.refs = scan_events(store, *ranges[0], deep, problem)
        for k, proc in enumerate(procs):
            try:
                leaves, refs, event_problems, blobs, redacted, blob_problems = _reply(proc)
            except LedgerError as e:  # it died (killed, out of memory): do its share here
                scan.warnings.append(f"{e}; its share was scanned in the main process")
                event_problems, blob_problems = Findings(limit), Findings(limit)
                leaves, refs = scan_events(store, *ranges[k + 1], deep, event_problems)
                blobs, redacted = scan_blobs(store, blob_problems, (k, helpers, rows))
            else:
                scan.processes += 1
            problem += event_problems
            scan.leaves += leaves
            scan.refs |= refs
            scan.blobs |= blobs
            scan.redacted += redacted
            scan.blob_problems += blob_problems
    finally:
        for proc in procs:
            stop_helper(proc)
    return scan


def split(events: int, blob_rows: int, workers: int) -> list[tuple[int, int]]:
    """Event ranges ``[(0, a), (a, b), ...]``, the first for this process, one for each helper
    (which also starts later and scans a part of the blobs, while this process builds the
    tree afterwards): equal shares of the work."""
    helpers = workers - 1
    extra = _START_COST + _BLOB_COST * blob_rows / helpers - _TREE_COST * events
    per_helper = max(0, int((events - extra) / workers))
    own = max(0, events - per_helper * helpers)
    bounds = [0, own] + [own + k * per_helper for k in range(1, helpers)] + [events]
    return list(itertools.pairwise(bounds))


def _reply(proc: Any) -> Any:
    """A helper's results; :class:`LedgerError` when it died or failed (the caller then
    scans its share itself, and reports what fails there)."""
    try:
        reply = recv(proc.stdout)
    except EOFError:
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - closed its output, still running
            code = None
        raise LedgerError(f"a verify helper stopped (exit code {code})") from None
    except Exception as e:  # it sent what this process cannot read
        raise LedgerError(f"a verify helper sent an unreadable reply ({e})") from None
    if reply[0] == "error":
        raise LedgerError(f"a verify helper failed: {reply[1]}")
    return reply[1]


def main() -> None:
    """A helper: one request ``(path, start, stop, deep, blob part, limit)``, one reply."""
    inp, out = helper_channel()
    try:
        db, start, stop, deep, part, limit = recv(inp)
    except EOFError:
        return
    try:
        store = SQLiteStore(Path(db))
        try:
            event_problems, blob_problems = Findings(limit), Findings(limit)
            leaves, refs = scan_events(store, start, stop, deep, event_problems)
            blobs, redacted = scan_blobs(store, blob_problems, part)
        finally:
            store.close()
        send(out, ("ok", (leaves, refs, event_problems, blobs, redacted, blob_problems)))
    except Exception as e:
        send(out, ("error", f"{type(e).__name__}: {e}"))


def _as_bytes(data: Any) -> bytes:
    """A stored value as bytes (SQLite is dynamically typed: a TEXT value is possible)."""
    return data.encode() if isinstance(data, str) else bytes(data)


def _check_row(i: int, idx: int, lh: Any, h: bytes, problem: Report) -> None:
    if idx != i:
        problem(
            f"event {i}",
            f"index expected {i}, found {idx} (an event is missing, duplicated or moved)",
        )
    if h != lh:
        stored = lh.hex() if isinstance(lh, bytes) else repr(lh)
        problem(
            f"event {i}",
            f"leaf hash expected {stored} (stored), found {h.hex()} (recomputed from the event)",
        )


def _check_envelope(i: int, kind: str, h: bytes, data: bytes, deep: bool, problem: Report) -> None:
    try:
        event = parse_event(i, kind, h, data)
    except VerificationError as e:
        problem(f"event {i}", str(e).removeprefix(f"event {i}: "))
        return
    if deep:
        env = {"body": event.body, "index": event.index, "kind": event.kind, "ts": event.ts}
        try:
            again = canonical_json(env)
        except LedgerError as e:
            problem(f"event {i}", f"expected canonical JSON (RFC 8785), found {e}")
            return
        if again != data:
            problem(
                f"event {i}",
                f"expected canonical JSON (RFC 8785) of {len(again)} bytes, found {len(data)} "
                "bytes that differ",
            )
    elif not data.startswith(b'{"body":{') or _TAIL.search(data) is None:
        problem(f"event {i}", "envelope expected in canonical form, found another layout")
