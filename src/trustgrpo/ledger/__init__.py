"""The run's ledger: canonical-JSON events in an RFC 9162 Merkle tree, signed checkpoints.

Modules::

    merkle          RFC 9162 §2.1 hashing, inclusion and consistency proofs (pure)
    canonical       RFC 8785 canonical JSON (fast path checked against ``rfc8785``)
    sign            C2SP signed-note checkpoints with Ed25519; key files
    events          the leaf layout, event kinds and bodies
    store           SQLite (default) and PostgreSQL (``store_postgres``) tables
    ledger          Ledger: the writer (background thread, batches, signing)
    reader          LedgerReader: read access, no private key
    callback        LedgerCallback: the trainer's hooks → events
    audit           verify (and re-exports trace, export, redact)
    trace           the steps and rewards that shaped a checkpoint
    export          JSONL / Parquet export, blob redaction
    replay          re-run recorded verifiers on stored inputs
    proof           inclusion proofs for third parties
    cli             ``trustgrpo audit ...``
"""

from __future__ import annotations

from trustgrpo.ledger.canonical import canonical_json
from trustgrpo.ledger.events import KINDS, Event
from trustgrpo.ledger.ledger import Ledger
from trustgrpo.ledger.merkle import MerkleTree, verify_consistency, verify_inclusion
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.ledger.sign import Checkpoint, VerifierKey

__all__ = [
    "KINDS",
    "Checkpoint",
    "Event",
    "Ledger",
    "LedgerReader",
    "MerkleTree",
    "VerifierKey",
    "canonical_json",
    "verify_consistency",
    "verify_inclusion",
]
