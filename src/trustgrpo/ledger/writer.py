"""What commits a ledger's queued items: in the writer's own thread, or in a child process.

:class:`Writer` numbers a batch of queued items, hashes the events into the Merkle tree,
stores blobs and events in one transaction (after catching up on what other writers
committed) and signs checkpoints, refusing one inconsistent with the last it finds.

:class:`ProcessWriter` does the same in a child process (:func:`main`), fed over a
pipe: the encoding, hashing and SQLite work of a
training step then runs on another core instead of taking the trainer's interpreter lock.
The child dies with its parent (Linux: ``PR_SET_PDEATHSIG``; elsewhere it stops at the end
of its input), so after ``kill -9`` of a trainer the store holds whole batches only, as with
the thread. Items cross the pipe pickled: an ``append_later`` builder must then be picklable
(a module-level function, or a :func:`functools.partial` of one).

Items (tuples, first element a tag)::

    ("e", kind, canonical_body, time_ms)     an encoded event
    ("b", hash, raw)                         a blob
    ("d", build, time_ms)                    events built here: build(put_blob) -> [(kind, body)]
    ("s",)                                   sign a checkpoint of the tree as it stands
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from trustgrpo.errors import LedgerError, VerificationError
from trustgrpo.ledger.canonical import canonical_json, to_jsonable
from trustgrpo.ledger.events import BLOB_PREFIX, KINDS, envelope
from trustgrpo.ledger.merkle import MerkleTree, leaf_hash, verify_consistency
from trustgrpo.ledger.pipe import helper_channel, recv, send, start_helper, stop_helper
from trustgrpo.ledger.sign import (
    Checkpoint,
    SigningKey,
    now_rfc3339,
    sign_checkpoint,
    verify_checkpoint,
)
from trustgrpo.ledger.store import Store, open_store

_sha256 = hashlib.sha256

PutBlob = Callable[[str | bytes], str]
Builder = Callable[[PutBlob], Iterable[tuple[str, dict[str, Any]]]]
"""What :meth:`Ledger.append_later` takes: ``build(put_blob) -> [(kind, body), ...]``."""


class Writer:
    """Commits batches of items to ``store`` (the caller serialises calls)."""

    def __init__(self, store: Store, key: SigningKey, tree: MerkleTree) -> None:
        self.store = store
        self.key = key
        self.tree = tree
        # hashes the builders stored (their own set: a hash the caller queued after a
        # builder may land in a later commit, so the builder stores its blobs itself)
        self._built_blobs: set[str] = set()
        self._last: tuple[bytes, Checkpoint] | None = None
        """The latest checkpoint this writer signed or checked, with its stored note."""

    @property
    def size(self) -> int:
        """Events in the tree (committed, once ``commit`` returned)."""
        return self.tree.size

    def start(self) -> None:
        """Nothing to start: commits run in the caller's thread."""

    def commit(self, items: list[tuple[Any, ...]]) -> Checkpoint | None:
        """Write one batch in one transaction; returns the checkpoint of its last sign
        request, if it had one. A sign request signs the tree as it stands at that point of
        the batch (all in the same transaction). On failure nothing of the batch remains."""
        tree = self.tree
        base = tree.size
        checkpoint = None
        try:
            with self.store.transaction():
                self._catch_up()
                rows = []
                blobs: list[tuple[str, bytes]] = []
                append = tree.append
                for item in items:
                    tag = item[0]
                    if tag == "e":
                        idx = tree.size
                        data = envelope(item[1], item[2], idx, item[3])
                        lh = _sha256(b"\x00" + data).digest()
                        append(lh)
                        rows.append((idx, item[1], lh, data))
                    elif tag == "b":
                        blobs.append((item[1], item[2]))
                    elif tag == "d":
                        for kind, body in item[1](self._blob_sink(blobs)):
                            check_kind(kind, body)
                            idx = tree.size
                            data = envelope(kind, _encode_plain(body), idx, item[2])
                            lh = _sha256(b"\x00" + data).digest()
                            append(lh)
                            rows.append((idx, kind, lh, data))
                    else:
                        checkpoint = self._sign()
                if blobs:
                    self.store.insert_blobs(blobs)
                if rows:
                    self.store.insert_events(rows)
        except BaseException:
            tree.truncate(min(base, tree.size))
            raise
        return checkpoint

    def close(self) -> None:
        self.store.close()

    def _blob_sink(self, blobs: list[tuple[str, bytes]]) -> PutBlob:
        """``put_blob`` for builders: rows go into this commit's ``blobs``."""
        stored = self._built_blobs
        if len(stored) > 100_000:
            stored.clear()

        def put(data: str | bytes) -> str:
            raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            h = BLOB_PREFIX + _sha256(raw).hexdigest()
            if h not in stored:
                stored.add(h)
                blobs.append((h, raw))
            return h

        return put

    def _catch_up(self) -> None:
        """Add events other writers committed to the in-memory tree (inside the lock)."""
        tree = self.tree
        n = self.store.size()
        if n < tree.size:
            raise LedgerError(
                f"{self.store.location}: the store holds {n} events but this writer wrote "
                f"{tree.size}: events were removed"
            )
        if n > tree.size:
            for idx, _, _, data in self.store.iter_events(tree.size):
                if idx != tree.size:
                    raise LedgerError(f"event {tree.size}: index expected {tree.size}, found {idx}")
                tree.append(leaf_hash(data))

    def _sign(self) -> Checkpoint:
        """Sign the current tree, refusing when it is inconsistent with the last checkpoint."""
        tree = self.tree
        size, root = tree.size, tree.root()
        row = self.store.latest_checkpoint()
        if row is not None:
            note = bytes(row[2])
            if self._last is not None and self._last[0] == note:  # checked already
                last = self._last[1]
            else:  # another writer's, or the first: check its signature
                last = verify_checkpoint(note, self.key.verifier)
                self._last = note, last
            check_extends(tree, last, self.store.location)
            if last.size == size:
                return last
        checkpoint = sign_checkpoint(self.key, self.key.name, size, root, now_rfc3339())
        note = checkpoint.note.encode()
        self.store.insert_checkpoint(size, note)
        self._last = note, checkpoint
        return checkpoint


def check_kind(kind: str, body: Any) -> None:
    """Raise :class:`LedgerError` unless ``kind`` is an event kind and ``body`` a dict."""
    if kind not in KINDS:
        raise LedgerError(f"event kind: expected one of {sorted(KINDS)}, found {kind!r}")
    if type(body) is not dict:
        raise LedgerError(f"event body: expected a dict, found {type(body).__name__}")


def check_extends(tree: MerkleTree, last: Checkpoint, location: str) -> None:
    """Raise unless ``tree`` extends the signed checkpoint ``last`` (RFC 9162 §2.1.4)."""
    if last.size > tree.size:
        raise LedgerError(
            f"refusing to sign: the last checkpoint covers {last.size} events, the ledger at "
            f"{location} holds {tree.size}"
        )
    proof = tree.consistency_proof(last.size, tree.size)
    try:
        verify_consistency(last.size, tree.size, proof, last.root, tree.root())
    except VerificationError as e:
        raise LedgerError(
            f"refusing to sign: the ledger at {location} is not consistent with its last "
            f"checkpoint (size {last.size}, root {last.root.hex()}); found root "
            f"{tree.root(last.size).hex()} at that size ({e})"
        ) from None


def _encode_plain(body: dict[str, Any]) -> bytes:
    """Canonical JSON of a built body; one that cannot be encoded as it is (a verifier's odd
    detail: NaN, a huge integer, an object) is made plain first."""
    try:
        return canonical_json(body)
    except LedgerError:
        return canonical_json(to_jsonable(body))


# --------------------------------------------------------------------------- the process


def _send(f: IO[bytes], obj: Any) -> None:
    try:
        send(f, obj)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise LedgerError(
            "the ledger's writer process takes items pickled: an append_later builder must be "
            f"a module-level function or a functools.partial of one ({e})"
        ) from None


class ProcessWriter:
    """A :class:`Writer` in a child process (see the module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        url: str | None,
        key: SigningKey,
        tree: MerkleTree,
        location: str,
    ) -> None:
        self.location = location
        self.key = key
        self._size = tree.size
        self._open: tuple[str, str | None, MerkleTree] | None = (str(run_dir), url, tree)
        """What the child opens (the tree passes to it at ``start``)."""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the child and open the store there. On Linux the child dies with the
        calling thread: call this from a thread that lives as long as the writer."""
        from cryptography.hazmat.primitives import serialization

        self._proc = start_helper("trustgrpo.ledger.writer")
        raw = self.key.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        assert self._open is not None, "ProcessWriter.start: already started"
        run_dir, url, tree = self._open
        self._open = None
        try:
            self._call(("open", run_dir, url, self.key.name, raw, tree))
        except BaseException:
            self._stop()
            raise

    @property
    def pid(self) -> int | None:
        """The child's process id (None before :meth:`start`)."""
        return None if self._proc is None else self._proc.pid

    @property
    def size(self) -> int:
        return self._size

    def commit(self, items: list[tuple[Any, ...]]) -> Checkpoint | None:
        size, note = self._call(("commit", items))
        self._size = size
        return None if note is None else verify_checkpoint(note, self.key.verifier)

    def close(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            _send(self._proc.stdin, ("close",))  # type: ignore[arg-type]
        self._stop()

    def _call(self, msg: tuple[Any, ...]) -> Any:
        proc = self._proc
        if proc is None:
            raise LedgerError(f"{self.location}: the ledger writer process was not started")
        try:
            _send(proc.stdin, msg)  # type: ignore[arg-type]
            reply = recv(proc.stdout)  # type: ignore[arg-type]
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):
            code = proc.poll()
            raise LedgerError(
                f"{self.location}: the ledger writer process stopped"
                + (f" (exit code {code})" if code is not None else "")
            ) from None
        if reply[0] == "error":
            raise LedgerError(reply[1])
        return reply[1]

    def _stop(self) -> None:
        if self._proc is not None:
            stop_helper(self._proc)


def main() -> None:
    """The child: ``open``, then ``commit`` messages until ``close`` or end of input."""
    inp, out = helper_channel()
    writer: Writer | None = None
    try:
        while True:
            try:
                msg = recv(inp)
            except EOFError:
                break
            if msg[0] == "close":
                break
            try:
                if msg[0] == "open":
                    writer = _open(*msg[1:])
                    _send(out, ("ok", writer.size))
                else:
                    assert writer is not None
                    checkpoint = writer.commit(msg[1])
                    note = None if checkpoint is None else checkpoint.note
                    _send(out, ("ok", (writer.size, note)))
            except Exception as e:
                text = str(e) if isinstance(e, LedgerError) else f"{type(e).__name__}: {e}"
                _send(out, ("error", text))
                break
    finally:
        if writer is not None:
            writer.close()


def _open(run_dir: str, url: str | None, name: str, raw: bytes, tree: MerkleTree) -> Writer:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    store = open_store(Path(run_dir), url, create=False)
    return Writer(store, SigningKey(name, Ed25519PrivateKey.from_private_bytes(raw)), tree)
