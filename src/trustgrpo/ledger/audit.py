"""Audits of a ledger: ``verify`` lives here; ``trace``, ``export``, ``redact`` (re-exported
here), ``replay`` and ``proof`` have their own modules.

``verify`` is what makes the ledger tamper-evident rather than merely hashed. It recomputes
every leaf hash from the stored event (RFC 9162 §2.1.1) and the whole tree, checks each
signed checkpoint's signature, origin and root, the consistency of each checkpoint with the
next (RFC 9162 §2.1.4), every blob's content hash, and that every blob an event refers to
exists. Checkpoints kept elsewhere (``--checkpoint FILE``) are checked the same way: that is
how an outside auditor detects a log that was truncated or rewritten and re-signed, since
whoever holds the run directory holds the signing key too.

Limits (inherent to a transparency log, reported as warnings, not failures): events after the
last checkpoint are not signed yet, so removing or adding events there is only caught by the
next checkpoint; and without an outside checkpoint, a log rewritten and re-signed by the key
holder is self-consistent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trustgrpo.errors import VerificationError
from trustgrpo.ledger.export import export, redact
from trustgrpo.ledger.merkle import MerkleTree, verify_consistency
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.ledger.scan import Findings, Report, first_references, scan_all, workers_for
from trustgrpo.ledger.sign import Checkpoint, VerifierKey, load_public_key, parse_vkey
from trustgrpo.ledger.sign import verify_checkpoint as check_note
from trustgrpo.ledger.store import FORMAT, CheckpointRow
from trustgrpo.ledger.trace import TraceReport, trace


@dataclass(frozen=True)
class Problem:
    """One thing that does not hold: where, and what was expected vs found."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`."""

    location: str
    key: str = ""
    """The note verifier key the checkpoints were checked with."""
    events: int = 0
    root: str = ""
    checkpoints: int = 0
    signed_size: int = 0
    """Events covered by the last valid checkpoint."""
    external: int = 0
    blobs: int = 0
    redacted_blobs: int = 0
    problems: list[Problem] = field(default_factory=list)
    more_problems: int = 0
    """Problems found beyond the ones listed."""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    processes: int = 1
    """Processes that scanned the rows (``workers``; see :mod:`trustgrpo.ledger.scan`)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "location": self.location,
            "key": self.key,
            "events": self.events,
            "root": self.root,
            "checkpoints": self.checkpoints,
            "signed_size": self.signed_size,
            "external_checkpoints": self.external,
            "blobs": self.blobs,
            "redacted_blobs": self.redacted_blobs,
            "first_problem": str(self.problems[0]) if self.problems else None,
            "problems": [{"where": p.where, "message": p.message} for p in self.problems],
            "more_problems": self.more_problems,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "processes": self.processes,
        }


def verify(
    reader: LedgerReader,
    *,
    key: VerifierKey | None = None,
    external: Sequence[tuple[str, str | bytes]] = (),
    deep: bool = False,
    max_problems: int = 50,
    workers: int | None = None,
) -> VerifyReport:
    """Check everything in the ledger; see the module docstring.

    ``key``: the public key to trust (default: ``ledger.pub`` in the run directory, else the
    one in the store). ``external``: ``(name, note)`` checkpoints kept outside the ledger.
    ``deep``: also parse every leaf and check it is canonical JSON (slower). ``workers``:
    processes that scan a large SQLite ledger's rows (None: one per CPU, at most 8; see
    :mod:`trustgrpo.ledger.scan`).
    """
    t0 = time.perf_counter()
    report = VerifyReport(location=reader.location)
    problem = Findings(max_problems)
    meta = reader.meta
    trusted = _trusted_key(reader, key, problem)
    report.key = trusted.to_vkey() if trusted and trusted.name else ""
    if meta.get("format") != FORMAT:
        problem("meta", f"format expected {FORMAT!r}, found {meta.get('format')!r}")
    origin = meta.get("origin", "")

    # Checkpoints first, then events, then blobs: a writer appending meanwhile only adds
    # events after the checkpoints read (and the size), and blobs with or before the events
    # that use them.
    store = reader.store
    checkpoint_rows = store.checkpoints()
    size = store.size()
    n = workers_for(store, size, workers)
    scan = scan_all(store, size, deep, problem, workers=n)
    report.processes = scan.processes
    report.warnings += scan.warnings
    tree = MerkleTree(scan.leaves)
    report.events, report.root = tree.size, tree.root().hex()

    cps = _verify_checkpoints(checkpoint_rows, tree, trusted, origin, problem)
    report.checkpoints = len(cps)
    report.signed_size = max((c.size for c in cps), default=0)
    for name, note in external:
        report.external += 1
        _verify_external(name, note, tree, trusted, origin, cps, problem)

    problem += scan.blob_problems
    report.blobs, report.redacted_blobs = len(scan.blobs), scan.redacted
    missing = {r.decode() for r in scan.refs} - scan.blobs
    for i, h in first_references(store, missing, size) if missing else ():
        problem(f"event {i}", f"refers to blob {h}, expected in the blob table, found none")
    report.problems = [Problem(where, message) for where, message in problem.items]
    report.more_problems = problem.dropped
    if tree.size and not cps:
        report.warnings.append(f"no signed checkpoint: none of the {tree.size} events is signed")
    elif tree.size > report.signed_size:
        report.warnings.append(
            f"{tree.size - report.signed_size} events after the last checkpoint (size "
            f"{report.signed_size}) are not signed yet"
        )
    report.seconds = time.perf_counter() - t0
    return report


def _trusted_key(
    reader: LedgerReader, key: VerifierKey | None, problem: Report
) -> VerifierKey | None:
    stored = file_key = None
    try:
        stored = parse_vkey(reader.meta.get("public_key", ""))
    except VerificationError as e:
        problem("meta public_key", str(e))
    pub = reader.run_dir / "ledger.pub"
    if pub.is_file():
        try:
            file_key = load_public_key(pub)
        except VerificationError as e:
            problem(str(pub), str(e))
    trusted = key or file_key or stored
    if trusted is None:
        problem("key", "expected a public key (ledger.pub, the store, or --key), found none")
        return None
    for name, other in (("ledger.pub", file_key), ("the store's meta", stored)):
        if other is not None and other.public_key != trusted.public_key:
            problem(
                "key",
                f"public key in {name}: expected {trusted.fingerprint[:16]} (trusted), found "
                f"{other.fingerprint[:16]}",
            )
    if key is not None and not key.name and stored is not None:
        trusted = VerifierKey(stored.name, key.public_key)  # a PEM key: take the log's name
    return trusted


def _verify_checkpoints(
    rows: list[CheckpointRow],
    tree: MerkleTree,
    key: VerifierKey | None,
    origin: str,
    problem: Report,
) -> list[Checkpoint]:
    good: list[Checkpoint] = []
    prev: Checkpoint | None = None
    for n, (cid, size, note) in enumerate(rows):
        where = f"checkpoint {n} (id {cid})"
        if key is None:
            continue
        try:
            cp = check_note(note, key)
        except VerificationError as e:
            problem(where, str(e))
            continue
        where = f"checkpoint {n} (id {cid}, size {cp.size})"
        bad = _check_head(where, cp, tree, origin, problem, prev)
        if cp.size != size:
            problem(where, f"size expected {cp.size} (signed), found {size} (stored column)")
            bad = True
        if prev is not None and not bad:
            if cp.time < prev.time:
                problem(where, f"time expected >= {prev.time} (previous), found {cp.time}")
            try:  # RFC 9162 §2.1.4: the previous signed head is a prefix of this one
                proof = tree.consistency_proof(prev.size, cp.size)
                verify_consistency(prev.size, cp.size, proof, prev.root, cp.root)
            except (VerificationError, ValueError) as e:
                problem(where, f"not consistent with checkpoint {n - 1}: {e}")
                bad = True
        if not bad:
            good.append(cp)
            prev = cp
    return good


def _check_head(
    where: str,
    cp: Checkpoint,
    tree: MerkleTree,
    origin: str,
    problem: Report,
    prev: Checkpoint | None,
) -> bool:
    """Check a signed head against the recomputed tree; True when something is wrong."""
    bad = False
    if cp.origin != origin:
        problem(where, f"origin expected {origin!r} (the ledger's), found {cp.origin!r}")
        bad = True
    if cp.size > tree.size:
        problem(
            where,
            f"signed size {cp.size}, but the ledger holds {tree.size} events: events were removed",
        )
        return True
    found = tree.root(cp.size)
    if found != cp.root:
        span = f"events {prev.size}..{cp.size - 1}" if prev else f"events 0..{cp.size - 1}"
        problem(
            where,
            f"root expected {cp.root.hex()} (signed), found {found.hex()} (recomputed): "
            f"{span} differ from what was signed",
        )
        bad = True
    if prev is not None and cp.size < prev.size:
        problem(where, f"size expected >= {prev.size} (previous checkpoint), found {cp.size}")
        bad = True
    return bad


def _verify_external(
    name: str,
    note: str | bytes,
    tree: MerkleTree,
    key: VerifierKey | None,
    origin: str,
    cps: list[Checkpoint],
    problem: Report,
) -> None:
    where = f"external checkpoint {name}"
    if key is None:
        return
    try:
        cp = check_note(note, key)
    except VerificationError as e:
        problem(where, f"not signed by the trusted key {key.fingerprint[:16]}: {e}")
        return
    _check_head(where, cp, tree, origin, problem, None)


__all__ = ["Problem", "TraceReport", "VerifyReport", "export", "redact", "trace", "verify"]
