"""The ledger writer and reader, on both stores."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from trustgrpo.errors import LedgerError, UserError, VerificationError
from trustgrpo.ledger import Ledger, LedgerReader, MerkleTree
from trustgrpo.ledger.audit import verify
from trustgrpo.ledger.canonical import canonical_json
from trustgrpo.ledger.merkle import leaf_hash, verify_consistency
from trustgrpo.ledger.sign import SigningKey, load_private_key, sign_checkpoint


def fill(ledger: Ledger, n: int, start: int = 0, sign_every: int = 0) -> None:
    for i in range(start, start + n):
        h = ledger.put_blob(f"completion number {i}")
        ledger.append("reward", {"step": i // 10, "n": i, "completion_blob": h, "advantage": i / 7})
        if sign_every and i % sign_every == sign_every - 1:
            ledger.sign(wait=False)


@pytest.mark.parametrize("background", [True, False])
def test_append_flush_read_back(run_dir: Path, store_url: str | None, background: bool) -> None:
    with Ledger.open(run_dir, url=store_url, background=background, batch_size=16) as ledger:
        fill(ledger, 50, sign_every=10)
        assert ledger.flush() == 50
        cp = ledger.sign()
        assert cp is not None and cp.size == 50
        events = list(ledger.events())
    assert [e.index for e in events] == list(range(50))
    assert [e.body["n"] for e in events] == list(range(50))
    ev = events[7]
    assert ev.kind == "reward" and ev.leaf_hash == leaf_hash(ev.data)
    assert json.loads(ev.data) == {"body": ev.body, "index": 7, "kind": "reward", "ts": ev.ts}
    assert ev.data == canonical_json(json.loads(ev.data))
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        assert reader.size() == 50
        assert reader.get_text(ev.body["completion_blob"]) == "completion number 7"
        assert reader.tree().root() == cp.root
        cps = reader.checkpoints()
        assert cps[-1] == reader.latest_checkpoint() and cps[-1].root == cp.root
        for a, b in itertools.pairwise(cps):  # each checkpoint extends the one before
            tree = reader.tree()
            verify_consistency(
                a.size, b.size, tree.consistency_proof(a.size, b.size), a.root, b.root
            )
        assert verify(reader).ok


def test_run_directory_files(run_dir: Path) -> None:
    with Ledger.open(run_dir) as ledger:
        fill(ledger, 3)
        vkey = ledger.verifier_key.to_vkey()
    assert (run_dir / "ledger.key").stat().st_mode & 0o777 == 0o600
    assert (run_dir / "ledger.pub").read_text() == vkey + "\n"
    assert b"PRIVATE" not in (run_dir / "ledger.db").read_bytes()
    assert ledger.verifier_key.name.startswith(f"trustgrpo/{run_dir.name}/")


def test_put_blob(run_dir: Path, store_url: str | None) -> None:
    with Ledger.open(run_dir, url=store_url) as ledger:
        h1 = ledger.put_blob("héllo")
        assert h1 == "sha256:" + hashlib.sha256("héllo".encode()).hexdigest()
        assert ledger.put_blob(b"h\xc3\xa9llo") == h1
        h2 = ledger.put_blob(b"\x00\xff")
        ledger.flush()
        assert ledger.get_blob(h2) == b"\x00\xff"
        assert ledger.get_text(h1) == "héllo"
        assert ledger.get_text(None) is None
        with pytest.raises(LedgerError, match="no blob"):
            ledger.get_blob("sha256:" + "0" * 64)


def test_reopen_continues_the_same_log(run_dir: Path, store_url: str | None) -> None:
    with Ledger.open(run_dir, url=store_url, origin="trustgrpo/resume-test") as ledger:
        fill(ledger, 20)
        first = ledger.sign()
    with Ledger.open(run_dir, url=store_url, origin="trustgrpo/resume-test") as ledger:
        assert ledger.size() == 20
        fill(ledger, 15, start=20)
        second = ledger.sign()
    assert first is not None and second is not None and second.size == 35
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        assert [e.body["n"] for e in reader.events()] == list(range(35))
        tree = reader.tree()
        verify_consistency(20, 35, tree.consistency_proof(20), first.root, second.root)
        assert verify(reader).ok


def test_sign_without_new_events_reuses_the_checkpoint(run_dir: Path) -> None:
    with Ledger.open(run_dir) as ledger:
        fill(ledger, 4)
        a = ledger.sign()
        b = ledger.sign()
        assert a == b
        assert len(ledger.checkpoints()) == 1


def test_bad_appends(run_dir: Path) -> None:
    with Ledger.open(run_dir) as ledger:
        with pytest.raises(LedgerError, match="event kind"):
            ledger.append("rewards", {})
        with pytest.raises(LedgerError, match="expected a dict"):
            ledger.append("reward", [1])  # type: ignore[arg-type]
        with pytest.raises(LedgerError, match="canonical JSON"):
            ledger.append("reward", {"x": float("nan")})
        assert ledger.flush() == 0
    with pytest.raises(LedgerError, match="closed"):
        ledger.append("reward", {})


def test_readonly_open_needs_an_existing_ledger(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no ledger"):
        LedgerReader.open_readonly(tmp_path)
    assert not (tmp_path / "ledger.db").exists()


def test_named_signing_key(tmp_path: Path) -> None:
    from trustgrpo.ledger.sign import generate_private_key

    key = tmp_path / "keys" / "run.pem"
    key.parent.mkdir()
    generate_private_key(key)
    with Ledger.open(tmp_path / "run", signing_key=key) as ledger:
        fill(ledger, 2)
    assert not (tmp_path / "run" / "ledger.key").exists()
    assert (tmp_path / "run" / "ledger.pub").exists()
    with pytest.raises(LedgerError, match="not found"):
        Ledger.open(tmp_path / "run2", signing_key=tmp_path / "nope.pem")
    with pytest.raises(LedgerError, match="signed by key"):  # the run's key is not this one
        Ledger.open(tmp_path / "run")


def test_another_runs_ledger_is_refused(
    run_dir: Path, store_url: str | None, tmp_path: Path
) -> None:
    with Ledger.open(run_dir, url=store_url, origin="a/b") as ledger:
        fill(ledger, 2)
    with pytest.raises(LedgerError, match="origin expected"):
        Ledger.open(run_dir, url=store_url, origin="c/d")
    if store_url is not None:  # another run directory pointed at the same schema
        with pytest.raises(LedgerError, match="signed by key"):
            Ledger.open(tmp_path / "other", url=store_url)


def test_refuses_to_continue_or_sign_after_tampering(
    run_dir: Path, store_url: str | None, raw_db: Any
) -> None:
    with Ledger.open(run_dir, url=store_url) as ledger:
        fill(ledger, 10)
        ledger.sign()
    raw = raw_db(run_dir, store_url)
    # rewrite event 3 consistently (data and leaf hash): only the checkpoint catches it
    (data,) = raw.q("SELECT data FROM {p}events WHERE idx = 3")[0]
    forged = data.replace(b'"n":3', b'"n":9')
    raw.q("UPDATE {p}events SET data = ?, leaf_hash = ? WHERE idx = 3", (forged, leaf_hash(forged)))
    with pytest.raises(LedgerError, match="not consistent with its last checkpoint"):
        Ledger.open(run_dir, url=store_url)
    raw.q("UPDATE {p}events SET data = ? WHERE idx = 3", (data,))
    with pytest.raises(LedgerError, match="leaf hash expected"):
        Ledger.open(run_dir, url=store_url)
    raw.q("UPDATE {p}events SET leaf_hash = ? WHERE idx = 3", (leaf_hash(data),))

    # a fork: someone with the key signs a checkpoint of other events; the writer will not
    # sign anything inconsistent with it
    with Ledger.open(run_dir, url=store_url, background=False) as ledger:
        fill(ledger, 2, start=10)
        ledger.flush()
        key = SigningKey(ledger.verifier_key.name, load_private_key(run_dir / "ledger.key"))
        fork = sign_checkpoint(key, key.name, 12, b"\x07" * 32, "2030-01-01T00:00:00.000Z")
        raw.q("INSERT INTO {p}checkpoints (size, note) VALUES (?, ?)", (12, fork.note.encode()))
        with pytest.raises(LedgerError, match="refusing to sign"):
            ledger.sign()
        ledger._error = None  # let close() through

    # events removed under an open writer
    raw.q("DELETE FROM {p}checkpoints WHERE size = 12")
    with Ledger.open(run_dir, url=store_url, background=False) as ledger:
        raw.q("DELETE FROM {p}events WHERE idx = 11")
        with pytest.raises(LedgerError, match="events were removed"):
            fill(ledger, 1, start=12)
            ledger.flush()
        ledger._error = None
        ledger._buf.clear()


@pytest.mark.parametrize("background", [True, False])
def test_append_later_builds_in_queue_order(
    run_dir: Path, store_url: str | None, background: bool
) -> None:
    """Events a builder returns take its place in the queue; its blobs are stored; a body
    that cannot be encoded as it is is made plain rather than lost."""
    seen: list[str] = []

    def build(put: Any) -> list[tuple[str, dict[str, Any]]]:
        seen.append(threading.current_thread().name)
        h = put("built completion")
        return [
            ("reward", {"n": 1, "completion_blob": h, "score": 1.0}),
            ("reward", {"n": 2, "odd": float("nan"), "big": 2**60}),
        ]

    with Ledger.open(run_dir, url=store_url, background=background, batch_size=4) as ledger:
        ledger.append("reward", {"n": 0})
        ledger.append_later(build)
        ledger.append("step", {"n": 3})
        assert ledger.flush() == 4
        cp = ledger.sign()
        events = list(ledger.events())
    assert seen == (["trustgrpo-ledger"] if background else ["MainThread"])
    assert [(e.index, e.kind, e.body["n"]) for e in events] == [
        (0, "reward", 0),
        (1, "reward", 1),
        (2, "reward", 2),
        (3, "step", 3),
    ]
    assert events[1].body["score"] == 1 and events[1].data == canonical_json(
        json.loads(events[1].data)
    )
    assert events[2].body["odd"] == "NaN" and events[2].body["big"] == str(2**60)
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        assert reader.get_text(events[1].body["completion_blob"]) == "built completion"
        assert reader.tree().root() == cp.root  # type: ignore[union-attr]
        report = verify(reader)
    assert report.ok, report.problems


def test_a_failing_builder_surfaces(run_dir: Path) -> None:
    def build(put: Any) -> list[tuple[str, dict[str, Any]]]:
        raise RuntimeError("builder broke")

    ledger = Ledger.open(run_dir, batch_size=4)
    ledger.append("reward", {"n": 0})
    ledger.flush()
    ledger.append_later(build)
    with pytest.raises(LedgerError, match="writer failed: builder broke"):
        ledger.flush()
    ledger._error = None
    ledger._closed = True
    ledger._writer.close()
    ledger._store.close()
    with Ledger.open_readonly(run_dir) as reader:  # what was flushed before is intact
        assert reader.size() == 1 and verify(reader).ok


def test_iter_events_by_range_and_kind(run_dir: Path, store_url: str | None) -> None:
    with Ledger.open(run_dir, url=store_url) as ledger:
        for i in range(10):
            ledger.append("override" if i % 3 == 0 else "reward", {"n": i})
        ledger.flush()
        store = ledger.store
        assert [r[0] for r in store.iter_events(2)] == list(range(2, 10))
        assert [r[0] for r in store.iter_events(2, 7)] == list(range(2, 7))
        assert [r[0] for r in store.iter_events(0, None, kind="override")] == [0, 3, 6, 9]
        assert [r[0] for r in store.iter_events(1, 9, kind="override")] == [3, 6]
        assert list(store.iter_events(10)) == []


def test_writer_error_surfaces(run_dir: Path) -> None:
    ledger = Ledger.open(run_dir, batch_size=4)
    ledger._writer.close()  # the writer's connection dies under it
    with pytest.raises(LedgerError, match="writer failed"):  # at the next append or flush
        fill(ledger, 8)
        ledger.flush()
    with pytest.raises(LedgerError, match="writer failed"):
        ledger.append("reward", {})
    ledger._error = None
    ledger._closed = True
    ledger._store.close()


@pytest.mark.parametrize("process", [False, True])
def test_two_writers_share_one_log(run_dir: Path, store_url: str | None, process: bool) -> None:
    """Two writers (the trainer, through a writer process or not, and the review server)
    append concurrently to one store."""
    a = Ledger.open(run_dir, url=store_url, batch_size=8, process=process)
    b = Ledger.open(run_dir, url=store_url, batch_size=8)

    def work(ledger: Ledger, tag: str) -> None:
        for i in range(60):
            ledger.append("feedback", {"event": i, "reviewer": tag, "verdict": "ok", "reason": ""})
            if i % 20 == 19:
                ledger.sign(wait=False)
        ledger.flush()

    threads = [threading.Thread(target=work, args=(x, t)) for x, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.sign()
    b.sign()
    a.close()
    b.close()
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        events = list(reader.events())
        assert len(events) == 120
        for tag in "ab":
            assert [e.body["event"] for e in events if e.body["reviewer"] == tag] == list(range(60))
        report = verify(reader)
        assert report.ok, report.problems
        assert report.signed_size == 120


def test_tree_matches_reference(run_dir: Path) -> None:
    with Ledger.open(run_dir) as ledger:
        fill(ledger, 13)
        ledger.flush()
        leaves = [leaf_hash(e.data) for e in ledger.events()]
        assert ledger.tree().root() == MerkleTree(leaves).root()


def test_checkpoint_signature_errors_are_verification_errors(run_dir: Path) -> None:
    with Ledger.open(run_dir) as ledger:
        fill(ledger, 3)
        ledger.sign()
    (run_dir / "ledger.pub").write_text(
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n"
    )
    with Ledger.open_readonly(run_dir) as reader, pytest.raises(VerificationError):
        reader.checkpoints()


def test_each_sign_request_signs_its_point_of_the_queue(
    run_dir: Path, store_url: str | None
) -> None:
    with Ledger.open(run_dir, url=store_url, max_delay=10.0) as ledger:  # one batch for all
        for _ in range(3):
            fill(ledger, 5)
            ledger.sign(wait=False)
        ledger.sign(wait=False)  # nothing new: no new signature
        ledger.flush()
        assert [c.size for c in ledger.checkpoints()] == [5, 10, 15]


def test_verify_while_a_writer_appends(run_dir: Path, store_url: str | None) -> None:
    with Ledger.open(run_dir, url=store_url, batch_size=16, max_delay=0.001) as ledger:
        fill(ledger, 20)
        ledger.sign()
        stop = threading.Event()

        def write() -> None:
            i = 20
            while not stop.is_set():
                fill(ledger, 7, start=i)
                ledger.sign(wait=False)
                i += 7

        writer = threading.Thread(target=write)
        writer.start()
        try:
            with Ledger.open_readonly(run_dir, url=store_url) as reader:
                seen = 0
                for _ in range(5):
                    deadline = time.monotonic() + 10
                    while reader.size() <= seen and time.monotonic() < deadline:
                        time.sleep(0.005)  # let the writer commit more
                    report = verify(reader)
                    assert report.ok, report.problems
                    assert report.events > seen
                    seen = report.events
        finally:
            stop.set()
            writer.join()
        assert report.checkpoints > 1


def test_a_busy_caller_cannot_outrun_the_writer(run_dir: Path) -> None:
    """Back-pressure: the queue stays under two batches even when the caller never sleeps."""
    with Ledger.open(run_dir, batch_size=8, max_delay=10.0) as ledger:
        longest = 0
        for i in range(3000):
            ledger.append("reward", {"n": i})
            longest = max(longest, len(ledger._buf))
        assert longest < 16
        assert ledger.flush() == 3000
