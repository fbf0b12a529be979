"""Inclusion proofs a third party can check with the public key alone.

A proof file (JSON) holds the event's leaf, its RFC 9162 inclusion path (§2.1.3.1) against a
signed checkpoint, the checkpoint note itself, and the contents of the blobs the event refers
to (when not redacted)::

    {"format": "trustgrpo-inclusion-proof/1", "origin": ..., "leaf_index": 17,
     "tree_size": 40, "event": "<canonical JSON leaf>", "leaf_hash": "<hex>",
     "inclusion_path": ["<hex>", ...], "checkpoint": "<signed note>",
     "blobs": {"sha256:...": "<base64>"}}

:func:`check_proof` verifies the checkpoint's signature with the given key, recomputes the
leaf hash and the root from the path (RFC 9162 §2.1.3.2), and checks every included blob
against the hash the event commits to. Nothing in the file is trusted but the signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from trustgrpo.errors import UserError, VerificationError
from trustgrpo.ledger.events import BLOB_PREFIX, blob_refs, parse_event
from trustgrpo.ledger.merkle import leaf_hash, verify_inclusion
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.ledger.sign import Checkpoint, VerifierKey, verify_checkpoint

PROOF_FORMAT = "trustgrpo-inclusion-proof/1"


def checkpoint_for_step(
    reader: LedgerReader, step: int, checkpoints: list[Checkpoint]
) -> Checkpoint:
    """The checkpoint signed at the end of training step ``step``: the first one that covers
    the (last) ``step`` event of that step."""
    step_event = None
    for ev in reader.events():
        if ev.kind == "step" and ev.body.get("step") == step:
            step_event = ev.index
    if step_event is None:
        raise UserError(f"no step event for step {step} in the ledger")
    for cp in checkpoints:
        if cp.size > step_event:
            return cp
    raise UserError(f"step {step} (event {step_event}) is not covered by a signed checkpoint yet")


def make_proof(reader: LedgerReader, index: int, *, step: int | None = None) -> dict[str, Any]:
    """An inclusion proof of event ``index`` against the latest checkpoint, or against the
    checkpoint of training step ``step``."""
    event = reader.get_event(index)
    checkpoints = reader.checkpoints()
    if not checkpoints:
        raise UserError("the ledger has no signed checkpoint yet")
    cp = checkpoint_for_step(reader, step, checkpoints) if step is not None else checkpoints[-1]
    if index >= cp.size:
        raise UserError(
            f"event {index} is not covered by the chosen checkpoint (size {cp.size}); "
            f"{'pick a later step' if step is not None else 'sign a checkpoint first'}"
        )
    tree = reader.tree()
    if cp.size > tree.size or tree.root(cp.size) != cp.root:
        found = tree.root(cp.size).hex() if cp.size <= tree.size else f"{tree.size} events"
        raise VerificationError(
            f"checkpoint of size {cp.size}: root expected {cp.root.hex()}, found {found}; "
            "run `trustgrpo audit verify`"
        )
    blobs: dict[str, str] = {}
    for h in event.blob_refs():
        row = reader.store.get_blob(h)
        if row is not None and row[2] is not None:
            blobs[h] = base64.b64encode(row[2]).decode()
    return {
        "format": PROOF_FORMAT,
        "origin": cp.origin,
        "leaf_index": index,
        "tree_size": cp.size,
        "event": event.data.decode(),
        "leaf_hash": event.leaf_hash.hex(),
        "inclusion_path": [h.hex() for h in tree.inclusion_proof(index, cp.size)],
        "checkpoint": cp.note,
        "blobs": blobs,
    }


def _hex(value: Any, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise VerificationError(f"{what}: expected hex, found {str(value)[:80]!r}") from None


def check_proof(proof: dict[str, Any], key: VerifierKey) -> dict[str, Any]:
    """Verify a proof file's content (see the module docstring); returns a summary.

    Raises :class:`VerificationError` saying what was expected and what was found.
    """
    if not isinstance(proof, dict) or proof.get("format") != PROOF_FORMAT:
        found = proof.get("format") if isinstance(proof, dict) else type(proof).__name__
        raise VerificationError(f"proof format: expected {PROOF_FORMAT!r}, found {found!r}")
    cp = verify_checkpoint(str(proof.get("checkpoint", "")), key)
    index, size = proof.get("leaf_index"), proof.get("tree_size")
    if type(index) is not int or type(size) is not int:
        raise VerificationError("proof: expected integer leaf_index and tree_size")
    if size != cp.size:
        raise VerificationError(f"tree size expected {cp.size} (signed), found {size}")
    event = str(proof.get("event", "")).encode()
    lh = leaf_hash(event)
    if "leaf_hash" in proof and _hex(proof["leaf_hash"], "leaf_hash") != lh:
        raise VerificationError(
            f"leaf hash expected {lh.hex()} (recomputed from the event), found {proof['leaf_hash']}"
        )
    path = proof.get("inclusion_path")
    if not isinstance(path, list):
        raise VerificationError("inclusion_path: expected a list of hex hashes")
    verify_inclusion(index, size, lh, [_hex(p, "inclusion_path") for p in path], cp.root)
    try:
        env = json.loads(event)
        kind = env["kind"]
    except (ValueError, KeyError, TypeError):
        raise VerificationError("event: expected a ledger envelope") from None
    parsed = parse_event(index, kind, lh, event)
    refs = set(blob_refs(parsed.body))
    blobs = proof.get("blobs") or {}
    for h, b64 in blobs.items():
        if h not in refs:
            raise VerificationError(f"blob {h}: expected a blob the event refers to, found another")
        try:
            content = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise VerificationError(f"blob {h}: expected base64 content") from None
        found = BLOB_PREFIX + hashlib.sha256(content).hexdigest()
        if found != h:
            raise VerificationError(f"blob {h}: content hash expected {h}, found {found}")
    return {
        "ok": True,
        "origin": cp.origin,
        "leaf_index": index,
        "tree_size": size,
        "root": cp.root.hex(),
        "signed_at": cp.time,
        "kind": parsed.kind,
        "body": parsed.body,
        "blobs_checked": sorted(blobs),
    }
