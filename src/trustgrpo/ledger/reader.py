"""Read access to a ledger (auditors need no private key)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from trustgrpo.errors import LedgerError, VerificationError
from trustgrpo.ledger.events import Event, parse_event
from trustgrpo.ledger.merkle import MerkleTree, leaf_hash
from trustgrpo.ledger.sign import (
    Checkpoint,
    VerifierKey,
    load_public_key,
    parse_vkey,
    verify_checkpoint,
)
from trustgrpo.ledger.store import Store, open_store


class LedgerReader:
    """Read access to a ledger; needs no private key."""

    def __init__(self, run_dir: Path, store: Store) -> None:
        self.run_dir = Path(run_dir)
        self._store = store
        self.meta = store.meta()
        self.origin = self.meta.get("origin", "")

    @classmethod
    def open_readonly(cls, run_dir: Path, *, url: str | None = None) -> LedgerReader:
        """Open an existing ledger for reading; :class:`UserError` when there is none."""
        return cls(Path(run_dir), open_store(Path(run_dir), url, create=False))

    @property
    def location(self) -> str:
        return self._store.location

    @property
    def store(self) -> Store:
        """The underlying store (for audits that read raw rows)."""
        return self._store

    @property
    def stored_key(self) -> VerifierKey:
        """The public key recorded in the store's meta table."""
        if "public_key" not in self.meta:
            raise VerificationError(f"{self.location}: meta public_key expected, found none")
        return parse_vkey(self.meta["public_key"])

    @property
    def public_key(self) -> VerifierKey:
        """The key checkpoints are checked with: ``ledger.pub`` in the run directory when it
        is there, else the one in the store."""
        pub = self.run_dir / "ledger.pub"
        return load_public_key(pub) if pub.is_file() else self.stored_key

    def size(self) -> int:
        """Number of events in the store."""
        return self._store.size()

    def __len__(self) -> int:
        return self.size()

    def events(self, start: int = 0) -> Iterator[Event]:
        """Every event from index ``start`` on, parsed (raises :class:`VerificationError` on a
        leaf that is not a valid envelope)."""
        for row in self._store.iter_events(start):
            yield parse_event(*row)

    def get_event(self, index: int) -> Event:
        """The event at ``index``."""
        row = self._store.get_event(index)
        if row is None:
            raise LedgerError(f"no event {index}: the ledger holds {self.size()} events")
        return parse_event(*row)

    def checkpoints(self) -> list[Checkpoint]:
        """Every signed checkpoint, in signing order, each checked against :attr:`public_key`."""
        key = self.public_key
        return [verify_checkpoint(note, key) for _, _, note in self._store.checkpoints()]

    def latest_checkpoint(self) -> Checkpoint | None:
        """The last signed checkpoint (checked), or None."""
        row = self._store.latest_checkpoint()
        return None if row is None else verify_checkpoint(row[2], self.public_key)

    def get_blob(self, h: str) -> bytes | None:
        """A blob's content; None when it was redacted. :class:`LedgerError` when unknown."""
        row = self._store.get_blob(h)
        if row is None:
            raise LedgerError(f"no blob {h} in the ledger")
        return row[2]

    def get_text(self, h: str | None) -> str | None:
        """A text blob decoded as UTF-8; None for a null reference or a redacted blob."""
        if h is None:
            return None
        data = self.get_blob(h)
        return None if data is None else data.decode("utf-8")

    def tree(self) -> MerkleTree:
        """The Merkle tree recomputed from the stored leaves (not from stored leaf hashes)."""
        tree = MerkleTree()
        for idx, _, _, data in self._store.iter_events():
            if idx != tree.size:
                raise VerificationError(
                    f"event {tree.size}: index expected {tree.size}, found {idx}"
                )
            tree.append(leaf_hash(data))
        return tree

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
