"""``audit verify`` detects tampering: property tests on both stores.

Each example changes the stored ledger the way someone with database access could (one byte
of an event, a blob or a checkpoint; deleting, inserting, duplicating or reordering events),
runs :func:`verify`, and restores the ledger. Truncating the log and re-signing it, with the
run's key or another one, is caught with a checkpoint kept outside the ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustgrpo.ledger import Ledger
from trustgrpo.ledger.audit import verify
from trustgrpo.ledger.merkle import leaf_hash
from trustgrpo.ledger.sign import (
    SigningKey,
    generate_private_key,
    load_private_key,
    now_rfc3339,
    sign_checkpoint,
)

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


def build(run_dir: Path, url: str | None) -> None:
    """A small run: 4 steps of 8 rewards, step events, checkpoints, feedback, signatures."""
    with Ledger.open(run_dir, url=url, origin="trustgrpo/verify-test") as ledger:
        ledger.append("run_started", {"config": {"seed": 1}, "provenance": {}, "start_step": 0})
        for step in range(1, 5):
            prompt = ledger.put_blob(f"prompt of step {step}")
            for i in range(8):
                ledger.append(
                    "reward",
                    {
                        "step": step,
                        "prompt_blob": prompt,
                        "completion_blob": ledger.put_blob(f"completion {step}.{i}"),
                        "reward": float(i % 2),
                        "advantage": (i % 2) - 0.5,
                    },
                )
            ledger.append("step", {"step": step, "metrics": {"loss": 0.5 / step}})
            ledger.sign()
            if step % 2 == 0:
                ledger.append("checkpoint", {"step": step, "weights_sha256": "ab" * 32})
        ledger.append("feedback", {"event": 3, "reviewer": "r", "verdict": "wrong", "reason": ""})
        ledger.append("run_finished", {"result": {"steps": 4}})
        ledger.sign()


@pytest.fixture
def ledger_db(run_dir: Path, store_url: str | None, raw_db: Any) -> Any:
    build(run_dir, store_url)
    raw = raw_db(run_dir, store_url)
    raw.original = raw.snapshot()
    raw.run_dir, raw.url = run_dir, store_url
    return raw


def check_detected(raw: Any, touched: str) -> None:
    """Verify must fail; then put the ledger back and verify must pass again."""
    try:
        with Ledger.open_readonly(raw.run_dir, url=raw.url) as reader:
            report = verify(reader)
        assert not report.ok, f"tampering with {touched} went unnoticed"
        assert report.problems[0].message
    finally:
        raw.restore(raw.original)
    with Ledger.open_readonly(raw.run_dir, url=raw.url) as reader:
        assert verify(reader).ok, "the restored ledger must verify again"


def test_untouched_ledger_verifies(ledger_db: Any) -> None:
    with Ledger.open_readonly(ledger_db.run_dir, url=ledger_db.url) as reader:
        report = verify(reader, deep=True)
    assert report.ok, report.problems
    assert report.events == 41 and report.signed_size == 41 and report.checkpoints == 5
    assert report.blobs == 36 and not report.warnings


def _flip(data: bytes, pos: int, mask: int) -> bytes:
    pos %= len(data)
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1 :]


@PROPERTY
@given(
    idx=st.integers(0, 40),
    column=st.sampled_from(["data", "leaf_hash", "kind"]),
    pos=st.integers(0, 10**6),
    mask=st.integers(1, 255),
)
def test_one_byte_of_an_event(ledger_db: Any, idx: int, column: str, pos: int, mask: int) -> None:
    (value,) = ledger_db.q(f"SELECT {column} FROM {{p}}events WHERE idx = ?", (idx,))[0]
    if column == "kind":  # a text column: change one character
        p = pos % len(value)
        new: Any = (
            value[:p]
            + chr(ord("a") + (ord(value[p]) - ord("a") + mask % 25 + 1) % 26)
            + value[p + 1 :]
        )
    else:
        new = _flip(value, pos, mask)
    ledger_db.q(f"UPDATE {{p}}events SET {column} = ? WHERE idx = ?", (new, idx))
    check_detected(ledger_db, f"events.{column}[{idx}]")


@PROPERTY
@given(
    n=st.integers(0, 35),
    column=st.sampled_from(["data", "hash"]),
    pos=st.integers(0, 10**6),
    mask=st.integers(1, 255),
)
def test_one_byte_of_a_blob(ledger_db: Any, n: int, column: str, pos: int, mask: int) -> None:
    h, data = ledger_db.q("SELECT hash, data FROM {p}blobs ORDER BY hash")[n]
    if column == "data":
        ledger_db.q("UPDATE {p}blobs SET data = ? WHERE hash = ?", (_flip(data, pos, mask), h))
    else:
        p = 7 + pos % 64
        digit = "0123456789abcdef"[("0123456789abcdef".index(h[p]) + 1 + mask % 15) % 16]
        ledger_db.q("UPDATE {p}blobs SET hash = ? WHERE hash = ?", (h[:p] + digit + h[p + 1 :], h))
    check_detected(ledger_db, f"blobs.{column}")


@PROPERTY
@given(
    n=st.integers(0, 4),
    column=st.sampled_from(["note", "size"]),
    pos=st.integers(0, 10**6),
    mask=st.integers(1, 255),
)
def test_one_byte_of_a_checkpoint(ledger_db: Any, n: int, column: str, pos: int, mask: int) -> None:
    cid, size, note = ledger_db.q("SELECT id, size, note FROM {p}checkpoints ORDER BY id")[n]
    if column == "note":
        ledger_db.q(
            "UPDATE {p}checkpoints SET note = ? WHERE id = ?", (_flip(note, pos, mask), cid)
        )
    else:
        ledger_db.q("UPDATE {p}checkpoints SET size = ? WHERE id = ?", (size ^ (mask % 7 + 1), cid))
    check_detected(ledger_db, f"checkpoints.{column}")


@PROPERTY
@given(key=st.sampled_from(["origin", "public_key", "format"]), pos=st.integers(0, 10**6))
def test_one_character_of_meta(ledger_db: Any, key: str, pos: int) -> None:
    (value,) = ledger_db.q("SELECT value FROM {p}meta WHERE key = ?", (key,))[0]
    p = pos % len(value)
    new = value[:p] + ("x" if value[p] != "x" else "y") + value[p + 1 :]
    ledger_db.q("UPDATE {p}meta SET value = ? WHERE key = ?", (new, key))
    check_detected(ledger_db, f"meta.{key}")


def _rewrite_events(raw: Any, rows: list[tuple[Any, ...]]) -> None:
    raw.q("DELETE FROM {p}events")
    for row in rows:
        raw.q("INSERT INTO {p}events (idx, kind, leaf_hash, data) VALUES (?, ?, ?, ?)", row)


@PROPERTY
@given(
    op=st.sampled_from(["delete", "insert", "duplicate", "reorder"]),
    i=st.integers(0, 40),
    j=st.integers(0, 40),
    renumber=st.booleans(),
)
def test_deleting_inserting_duplicating_reordering(
    ledger_db: Any, op: str, i: int, j: int, renumber: bool
) -> None:
    rows = [list(r) for r in ledger_db.original["events"]]
    if op == "delete":
        del rows[i]
    elif op == "insert":  # a forged event: a well-formed leaf for position i
        body = b'{"body":{"step":1,"reward":1,"advantage":9},"index":%d,"kind":"reward","ts":1}' % i
        rows.insert(i, [i, "reward", leaf_hash(body), body])
    elif op == "duplicate":
        rows.insert(i, list(rows[i]))
    else:
        if i == j:
            j = (i + 1) % 41
        rows[i], rows[j] = rows[j], rows[i]
    if renumber or op == "reorder":  # the attacker makes the indices contiguous again
        for k, r in enumerate(rows):
            r[0] = k
    else:  # keep the indices the rows had: gaps and clashes
        seen: set[int] = set()
        for r in rows:
            while r[0] in seen:  # a unique key forces a shift
                r[0] += 1000
            seen.add(r[0])
    _rewrite_events(ledger_db, [tuple(r) for r in rows])
    check_detected(ledger_db, f"{op} {i} {j} renumber={renumber}")


def _resign(raw: Any, key: SigningKey, keep: int) -> None:
    """Truncate to ``keep`` events, drop the checkpoints, sign one for what is left."""
    from trustgrpo.ledger.merkle import MerkleTree

    raw.q("DELETE FROM {p}events WHERE idx >= ?", (keep,))
    raw.q("DELETE FROM {p}checkpoints")
    rows = raw.q("SELECT data FROM {p}events ORDER BY idx")
    tree = MerkleTree(leaf_hash(d) for (d,) in rows)
    origin = raw.q("SELECT value FROM {p}meta WHERE key = 'origin'")[0][0]
    cp = sign_checkpoint(key, origin, tree.size, tree.root(), now_rfc3339())
    raw.q("INSERT INTO {p}checkpoints (size, note) VALUES (?, ?)", (tree.size, cp.note.encode()))
    raw.q("UPDATE {p}meta SET value = ? WHERE key = 'public_key'", (key.verifier.to_vkey(),))


@pytest.mark.parametrize("same_key", [True, False])
@pytest.mark.parametrize("keep", [0, 17, 40])
def test_truncate_and_resign_caught_by_an_outside_checkpoint(
    ledger_db: Any, tmp_path: Path, same_key: bool, keep: int
) -> None:
    run_dir, url = ledger_db.run_dir, ledger_db.url
    with Ledger.open_readonly(run_dir, url=url) as reader:
        kept = reader.latest_checkpoint()  # an auditor kept this one
        assert kept is not None
    original_pub = (run_dir / "ledger.pub").read_text()
    origin = kept.origin
    if same_key:  # the attacker holds the run directory, so the run's own key
        key = SigningKey(origin, load_private_key(run_dir / "ledger.key"))
    else:  # or brings a new key and replaces ledger.pub
        key = SigningKey(origin, generate_private_key(tmp_path / "attacker.key"))
        (run_dir / "ledger.pub").write_text(key.verifier.to_vkey() + "\n")
    _resign(ledger_db, key, keep)
    try:
        with Ledger.open_readonly(run_dir, url=url) as reader:
            alone = verify(reader)
            outside = verify(reader, external=[("kept.note", kept.note)])
        assert alone.ok, alone.problems  # on its own, the forged ledger is self-consistent
        assert not outside.ok
        assert "external checkpoint kept.note" in outside.problems[0].where
        if same_key:
            assert "events were removed" in outside.problems[0].message
        else:
            assert "not signed by the trusted key" in outside.problems[0].message
    finally:
        (run_dir / "ledger.pub").write_text(original_pub)
        ledger_db.restore(ledger_db.original)


def test_rewritten_and_resigned_log_caught_by_an_outside_checkpoint(ledger_db: Any) -> None:
    run_dir, url = ledger_db.run_dir, ledger_db.url
    with Ledger.open_readonly(run_dir, url=url) as reader:
        kept = reader.checkpoints()[2]  # an old checkpoint is enough
    (data,) = ledger_db.q("SELECT data FROM {p}events WHERE idx = 5")[0]
    forged = data.replace(b'"reward":0', b'"reward":1')
    assert forged != data
    ledger_db.q(
        "UPDATE {p}events SET data = ?, leaf_hash = ? WHERE idx = 5", (forged, leaf_hash(forged))
    )
    key = SigningKey(kept.origin, load_private_key(run_dir / "ledger.key"))
    _resign(ledger_db, key, 41)
    with Ledger.open_readonly(run_dir, url=url) as reader:
        assert verify(reader).ok
        report = verify(reader, external=[("old.note", kept.note)])
    assert not report.ok
    assert "root expected" in report.problems[0].message
    assert "(signed)" in report.problems[0].message and "(recomputed)" in report.problems[0].message


def test_first_problem_names_the_event(ledger_db: Any) -> None:
    (data,) = ledger_db.q("SELECT data FROM {p}events WHERE idx = 12")[0]
    ledger_db.q("UPDATE {p}events SET data = ? WHERE idx = 12", (_flip(data, 20, 1),))
    with Ledger.open_readonly(ledger_db.run_dir, url=ledger_db.url) as reader:
        report = verify(reader)
    first = report.problems[0]
    assert first.where == "event 12"
    assert "leaf hash expected" in first.message and "found" in first.message
    # and the checkpoints that cover it say their root differs
    assert any("root expected" in p.message for p in report.problems[1:])


def test_unsigned_tail_and_redaction_are_not_failures(run_dir: Path, store_url: str | None) -> None:
    from trustgrpo.ledger.audit import redact

    build(run_dir, store_url)
    with Ledger.open(run_dir, url=store_url) as ledger:
        h = ledger.put_blob("secret completion")
        ledger.append("reward", {"step": 5, "completion_blob": h})
        ledger.flush()
    assert redact(run_dir, h, url=store_url, reason="personal data")
    assert not redact(run_dir, h, url=store_url)
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        report = verify(reader)
        assert reader.get_blob(h) is None
    assert report.ok, report.problems
    assert report.redacted_blobs == 1
    assert report.warnings == ["1 events after the last checkpoint (size 41) are not signed yet"]


def test_deep_verify_catches_a_non_canonical_leaf(ledger_db: Any) -> None:
    """A leaf the writer would never produce (here: keys out of order), signed by the key
    holder: the hashes hold, ``deep`` sees it is not RFC 8785 JSON."""
    run_dir, url = ledger_db.run_dir, ledger_db.url
    (data,) = ledger_db.q("SELECT data FROM {p}events WHERE idx = 7")[0]
    body, tail = data[len(b'{"body":') :].rsplit(b',"index":', 1)
    odd = (
        b'{"body":'
        + body.replace(b'{"advantage"', b'{"zzz":1,"advantage"', 1)
        + b',"index":'
        + tail
    )
    assert odd != data
    ledger_db.q("UPDATE {p}events SET data = ?, leaf_hash = ? WHERE idx = 7", (odd, leaf_hash(odd)))
    key = SigningKey(
        ledger_db.q("SELECT value FROM {p}meta WHERE key = 'origin'")[0][0],
        load_private_key(run_dir / "ledger.key"),
    )
    _resign(ledger_db, key, 41)
    with Ledger.open_readonly(run_dir, url=url) as reader:
        assert verify(reader).ok
        report = verify(reader, deep=True)
    assert not report.ok
    assert report.problems[0].where == "event 7"
    assert "canonical JSON" in report.problems[0].message
