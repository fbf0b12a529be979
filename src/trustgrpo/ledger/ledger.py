"""The ledger: an append-only, signed, Merkle-hashed log of a run (one per run).

Writing::

    ledger = Ledger.open(run_dir)                      # creates or reopens (resume)
    h = ledger.put_blob(completion_text)               # "sha256:<hex>", stored once
    ledger.append("reward", {..., "completion_blob": h})   # queued; returns at once
    ledger.sign(wait=False)                            # a checkpoint once the queue is written
    n = ledger.flush()                                 # everything queued is on disk
    ledger.close()                                     # flush, stop the writer thread

Reading (auditors need no private key)::

    reader = Ledger.open_readonly(run_dir)             # or url="postgresql://..."
    for event in reader.events(): ...

``append`` canonicalises the body (RFC 8785) in the caller, so a bad value fails there, then
queues it (``append_later`` instead queues a builder that the writer runs when it reaches it:
how the trainer hands over a step's reward events without waiting for their encoding); a
background thread numbers the events, hashes them into the tree and commits them in batches
(every ``batch_size`` items, on ``flush``/``sign``, or after ``max_delay`` seconds). With
``process=True`` (how the trainer writes) that thread hands each batch to a writer process
(:mod:`trustgrpo.ledger.writer`) and waits for it: building, encoding, hashing and storing then
run on another core and no longer take the caller's interpreter lock.
The queue is bounded: a caller two batches ahead of the writer waits for it (a busy Python
caller could otherwise starve the writer of the GIL and grow the queue without limit).
Only ``flush()`` (and ``sign(wait=True)``) promise durability: after ``kill -9`` every event
appended before a ``flush()`` that returned is in the store, and the store holds whole batches
only, so the ledger always verifies.

Several writers may share one store: each batch is written under the store's write lock, after
catching up on events other writers committed. The writer never signs a checkpoint that is not
consistent (RFC 9162 §2.1.4) with the last one in the store, and refuses to reopen a ledger
whose stored events no longer match its latest checkpoint.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from trustgrpo.errors import LedgerError
from trustgrpo.ledger.canonical import canonical_json
from trustgrpo.ledger.events import BLOB_PREFIX
from trustgrpo.ledger.merkle import MerkleTree, leaf_hash
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.ledger.sign import (
    Checkpoint,
    SigningKey,
    VerifierKey,
    generate_private_key,
    load_private_key,
    load_public_key,
    now_rfc3339,
    parse_vkey,
    verify_checkpoint,
)
from trustgrpo.ledger.store import FORMAT, Store, open_store
from trustgrpo.ledger.writer import Builder, ProcessWriter, Writer, check_extends, check_kind

_sha256 = hashlib.sha256


def default_origin(run_dir: Path) -> str:
    """``trustgrpo/<run name>/<8 random hex digits>``: unique per ledger."""
    return f"trustgrpo/{run_dir.resolve().name or 'run'}/{secrets.token_hex(4)}"


def _clean_origin(origin: str) -> str:
    """A checkpoint origin and note key name: no spaces or plus signs (C2SP signed-note)."""
    cleaned = re.sub(r"[\s+]+", "_", origin.strip())
    if not cleaned:
        raise LedgerError("ledger origin: expected a non-empty name, found an empty one")
    return cleaned


class Ledger(LedgerReader):
    """A ledger open for writing (see the module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        store: Store,
        writer: Writer | ProcessWriter,
        key: SigningKey,
        *,
        batch_size: int,
        max_delay: float,
        background: bool,
    ) -> None:
        super().__init__(run_dir, store)
        self._writer = writer
        self._key = key
        self._batch_size = batch_size
        self._max_delay = max_delay
        self._wlock = threading.Lock()  # serialises commits
        self._lock = threading.Lock()  # guards the queue state below
        self._cv = threading.Condition(self._lock)
        self._buf: list[tuple[Any, ...]] = []
        self._queued = 0  # items ever queued
        self._taken = 0  # items handed to a commit
        self._done = 0  # items committed
        self._flush_target = 0
        self._closing = False
        self._closed = False
        self._error: BaseException | None = None
        self._committed_size = writer.size
        self._last_checkpoint: Checkpoint | None = None
        self._recent_blobs: set[str] = set()  # hashes this writer queued (skip re-inserts)
        self._recent_texts: dict[str, str] = {}  # recent texts -> hash (skip re-hashing)
        self._thread: threading.Thread | None = None
        if background:
            started = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(started,), name="trustgrpo-ledger", daemon=True
            )
            self._thread.start()
            started.wait()
            if self._error is not None:  # the writer process did not start
                self._thread.join()
                self._closed = True
                writer.close()
                store.close()
                raise self._error
            atexit.register(_close_at_exit, weakref.ref(self))

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        run_dir: Path,
        *,
        url: str | None = None,
        signing_key: Path | None = None,
        origin: str | None = None,
        batch_size: int = 4096,
        max_delay: float = 0.25,
        background: bool = True,
        process: bool = False,
    ) -> Ledger:
        """Create the ledger of ``run_dir``, or reopen it to continue the same log.

        ``url``: None for SQLite ``run_dir/ledger.db``, or ``postgresql://...``.
        ``signing_key``: an Ed25519 PEM private key; default ``run_dir/ledger.key``, created
        (mode 0600) for a new ledger. The public key goes to ``run_dir/ledger.pub``.
        ``origin``: the log's name in checkpoints (default ``trustgrpo/<run>/<random>``);
        a reopened ledger keeps its origin. ``background=False`` writes in the caller's
        thread (on ``flush``, ``sign``, or a full batch). ``process=True`` (with
        ``background``) commits in a child process instead of the writer thread, so that
        building, encoding and storing events does not take the caller's interpreter lock
        (how the trainer writes; builders must then be picklable).
        """
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        key_path = Path(signing_key) if signing_key else run_dir / "ledger.key"
        if key_path.exists():
            private = load_private_key(key_path)
        elif signing_key:
            raise LedgerError(f"signing key not found: {key_path}")
        else:
            private = generate_private_key(key_path)
        store = open_store(run_dir, url, create=True)
        try:
            wstore = open_store(run_dir, url, create=False)
        except BaseException:
            store.close()
            raise
        try:
            meta = store.meta()
            name = (
                _clean_origin(origin) if origin else meta.get("origin") or default_origin(run_dir)
            )
            key = SigningKey(name, private)
            if not meta:
                with wstore.transaction():
                    wstore.set_meta_if_absent(
                        {
                            "format": FORMAT,
                            "origin": name,
                            "public_key": key.verifier.to_vkey(),
                            "created": now_rfc3339(),
                        }
                    )
                meta = store.meta()
            key = SigningKey(meta["origin"], private)
            _check_identity(meta, key, origin, store.location)
            _write_public_key(run_dir / "ledger.pub", key.verifier)
            tree = _load_tree(store, key.verifier)
            writer: Writer | ProcessWriter
            if process and background:
                wstore.close()
                writer = ProcessWriter(run_dir, url, key, tree, store.location)
            else:
                writer = Writer(wstore, key, tree)
        except BaseException:
            store.close()
            wstore.close()
            raise
        return cls(
            run_dir,
            store,
            writer,
            key,
            batch_size=batch_size,
            max_delay=max_delay,
            background=background,
        )

    @staticmethod
    def open_readonly(run_dir: Path, *, url: str | None = None) -> LedgerReader:
        """Open an existing ledger for reading (no private key needed)."""
        return LedgerReader.open_readonly(run_dir, url=url)

    @property
    def verifier_key(self) -> VerifierKey:
        """The public half of the signing key, with its note key name."""
        return self._key.verifier

    # ------------------------------------------------------------------ writing

    def append(self, kind: str, body: dict[str, Any]) -> None:
        """Queue one event. The body is encoded now (RFC 8785; :class:`LedgerError` when it
        cannot be) and written by the writer thread; it is durable once ``flush`` returns."""
        check_kind(kind, body)
        item = ("e", kind, canonical_json(body), time.time_ns() // 1_000_000)
        self._enqueue(item)

    def append_later(self, build: Builder) -> None:
        """Queue events that the writer builds when it reaches them: ``build(put_blob)``
        returns ``(kind, body)`` pairs, and may store blobs through the ``put_blob`` it is
        given. The events keep their place in the queue and the time of this call.

        This takes the encoding off the caller's thread: the trainer hands over each step's
        reward events this way, so that they cost the step almost nothing. ``build`` must only
        read data nobody changes afterwards, and must not fail: an exception stops the writer
        (``flush`` and ``append`` then raise it). A body that cannot be encoded as it is (a
        verifier's odd detail: NaN, a huge integer, an object) is recorded made plain by
        :func:`~trustgrpo.ledger.canonical.to_jsonable`. With a writer process, ``build``
        crosses to it pickled: a module-level function or a ``functools.partial`` of one.
        """
        self._enqueue(("d", build, time.time_ns() // 1_000_000))

    def put_blob(self, data: str | bytes) -> str:
        """Store content once (texts are UTF-8 encoded); returns ``sha256:<hex>``, the key
        events refer to it by (in a ``*_blob`` field)."""
        text = data if isinstance(data, str) else None
        if text is not None:  # a group's members share their prompt and reference
            known = self._recent_texts.get(text)
            if known is not None:
                return known
            raw = text.encode("utf-8")
        else:
            raw = bytes(data)  # type: ignore[arg-type]  # bytes-like
        h = BLOB_PREFIX + _sha256(raw).hexdigest()
        if h not in self._recent_blobs:
            if len(self._recent_blobs) > 100_000:
                self._recent_blobs.clear()
            self._recent_blobs.add(h)
            self._enqueue(("b", h, raw))
        if text is not None:
            if len(self._recent_texts) > 4096:
                self._recent_texts.clear()
            self._recent_texts[text] = h
        return h

    def flush(self) -> int:
        """Write everything queued, durably; returns the tree size."""
        if self._thread is None:
            self._drain()
            return self._committed_size
        with self._cv:
            self._check_alive()
            target = self._queued
            self._flush_target = max(self._flush_target, target)
            self._cv.notify_all()
            while self._done < target:
                self._check_alive()
                self._cv.wait()
            self._check_alive()
            return self._committed_size

    def sign(self, *, wait: bool = True) -> Checkpoint | None:
        """Sign a checkpoint of everything queued so far (and nothing queued later).

        With ``wait=True`` the call flushes and returns the checkpoint; with ``wait=False``
        it only queues the request (the writer signs when it reaches it) and returns None. No
        new signature is made when the tree has not grown since the last one.
        """
        self._enqueue(("s",))
        if not wait:
            return None
        self.flush()
        return self._last_checkpoint

    def close(self) -> None:
        """Flush, stop the writer thread and close the store. Raises the writer's error, if
        it failed."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._thread is not None:
                with self._cv:
                    self._closing = True
                    self._cv.notify_all()
                self._thread.join()
            self._writer.close()
            self._store.close()

    def __enter__(self) -> Ledger:
        return self

    # ------------------------------------------------------------------ the writer

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        with self._lock:  # the plain lock: cheaper than entering the condition
            if self._error is not None or self._closed:
                self._check_alive()
                raise LedgerError("the ledger is closed")
            buf = self._buf
            buf.append(item)
            self._queued += 1
            full = len(buf) >= self._batch_size
            if full and self._thread is not None:
                self._cv.notify_all()
                # Back-pressure: a writer that falls a whole batch behind (a busy caller can
                # starve it of the GIL) makes the caller wait, so the queue stays bounded.
                while len(self._buf) >= 2 * self._batch_size and self._error is None:
                    self._cv.wait()
        if full and self._thread is None:
            self._drain()

    def _check_alive(self) -> None:
        if self._error is not None:
            raise LedgerError(f"the ledger writer failed: {self._error}") from self._error

    def _ready(self) -> bool:
        return (
            self._closing
            or len(self._buf) >= self._batch_size
            or (bool(self._buf) and self._flush_target > self._taken)
        )

    def _run(self, started: threading.Event) -> None:
        # A writer process starts here: it dies with the thread that started it (Linux), and
        # this thread lives as long as the ledger is open.
        try:
            self._writer.start()
        except BaseException as e:
            self._error = e
            return
        finally:
            started.set()
        while True:
            with self._cv:
                self._cv.wait_for(self._ready, timeout=self._max_delay)
                items, self._buf = self._buf, []
                self._taken += len(items)
                if not items and self._closing:
                    return
                self._cv.notify_all()  # a caller held back by a full queue may go on
            if not items:
                continue
            try:
                self._commit(items)
            except BaseException as e:  # the writer is dead; flush/append report it
                with self._cv:
                    self._error = e
                    self._cv.notify_all()
                return
            with self._cv:
                self._done += len(items)
                self._cv.notify_all()

    def _drain(self) -> None:
        """Commit the queue in the caller's thread (``background=False``)."""
        with self._cv:
            self._check_alive()
            items, self._buf = self._buf, []
            self._taken += len(items)
        if items:
            try:
                self._commit(items)
            except BaseException as e:
                self._error = e
                raise
            self._done += len(items)

    def _commit(self, items: list[tuple[Any, ...]]) -> None:
        """Write one batch in one transaction (see :meth:`Writer.commit`)."""
        with self._wlock:
            checkpoint = self._writer.commit(items)
            self._committed_size = self._writer.size
            if checkpoint is not None:
                self._last_checkpoint = checkpoint

    def _atexit(self) -> None:
        """Best effort at interpreter exit: write what is queued (not a promise; flush is)."""
        if not self._closed:
            with contextlib.suppress(Exception):
                self.close()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _close_at_exit(ref: weakref.ref[Ledger]) -> None:
    ledger = ref()
    if ledger is not None:
        ledger._atexit()


def _check_identity(meta: dict[str, str], key: SigningKey, origin: str | None, where: str) -> None:
    if meta.get("format") != FORMAT:
        raise LedgerError(f"{where}: format expected {FORMAT!r}, found {meta.get('format')!r}")
    if origin and _clean_origin(origin) != meta["origin"]:
        raise LedgerError(
            f"{where}: origin expected {meta['origin']!r} (stored), found {_clean_origin(origin)!r}"
        )
    stored = parse_vkey(meta["public_key"])
    if stored.public_key != key.verifier.public_key:
        raise LedgerError(
            f"{where}: the ledger was signed by key {stored.fingerprint[:16]}, the signing key "
            f"is {key.verifier.fingerprint[:16]} (another run's ledger? pick another run "
            "directory or PostgreSQL schema)"
        )


def _write_public_key(path: Path, key: VerifierKey) -> None:
    line = key.to_vkey() + "\n"
    if path.exists():
        found = load_public_key(path)
        if found.public_key != key.public_key:
            raise LedgerError(
                f"{path}: expected the signing key's public key {key.fingerprint[:16]}, found "
                f"{found.fingerprint[:16]}"
            )
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(line)
    os.replace(tmp, path)


def _load_tree(store: Store, key: VerifierKey) -> MerkleTree:
    """Rebuild the tree from the stored leaves and check it against the latest checkpoint."""
    leaves: list[bytes] = []
    for idx, _, lh, data in store.iter_events():
        if idx != len(leaves):
            raise LedgerError(
                f"{store.location}: event {len(leaves)}: index expected {len(leaves)}, found "
                f"{idx}; run `trustgrpo audit verify`"
            )
        h = leaf_hash(data)
        if h != lh:
            raise LedgerError(
                f"{store.location}: event {idx}: leaf hash expected {bytes(lh).hex()}, found "
                f"{h.hex()}; run `trustgrpo audit verify`"
            )
        leaves.append(h)
    tree = MerkleTree(leaves)
    row = store.latest_checkpoint()
    if row is not None:
        check_extends(tree, verify_checkpoint(row[2], key), store.location)
    return tree
