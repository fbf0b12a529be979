"""``audit verify`` with helper processes finds what it finds in one process.

The threshold is lowered so that a small SQLite ledger is split between this process and two
helpers (events in three ranges, blobs in two parts); every report must equal the one-process
report, problem for problem.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from trustgrpo.ledger import Ledger, scan
from trustgrpo.ledger.audit import VerifyReport, verify

EVENTS = 600


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(scan, "PARALLEL_MIN_EVENTS", 0)
    monkeypatch.setattr(scan, "_START_COST", 0)  # helpers get a fair share of a tiny ledger
    run_dir = tmp_path / "run"
    with Ledger.open(run_dir, origin="trustgrpo/parallel-test") as ledger:
        for i in range(EVENTS):
            body = {
                "step": i // 64,
                "prompt_blob": ledger.put_blob(f"prompt {i // 8}"),
                "completion_blob": ledger.put_blob(f"completion {i}"),
                "reward": float(i % 2),
            }
            ledger.append("reward", body)
            if i % 64 == 63:
                ledger.sign()
        ledger.sign()
    return run_dir


def both(run_dir: Path) -> tuple[VerifyReport, VerifyReport]:
    with Ledger.open_readonly(run_dir) as reader:
        one = verify(reader, workers=1)
        three = verify(reader, workers=3)
    return one, three


def same(one: VerifyReport, three: VerifyReport) -> None:
    a, b = one.to_json(), three.to_json()
    for report in (a, b):
        del report["seconds"], report["processes"]
    assert a == b


def sql(run_dir: Path, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(run_dir / "ledger.db", isolation_level=None)) as db:
        return list(db.execute(query, args))


def test_helpers_are_used_and_agree(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    real = scan.start_helper

    def start(module: str) -> Any:
        started.append(module)
        return real(module)

    monkeypatch.setattr(scan, "start_helper", start)
    one, three = both(run)
    assert one.ok and three.ok, three.problems
    assert three.events == EVENTS and three.blobs == one.blobs > EVENTS
    assert started == ["trustgrpo.ledger.scan"] * 2
    assert (one.processes, three.processes) == (1, 3)
    same(one, three)


@pytest.mark.parametrize("idx", [5, EVENTS // 2, EVENTS - 3])  # this process's range, helpers'
def test_a_changed_event_is_reported_alike(run: Path, idx: int) -> None:
    sql(
        run,
        "UPDATE events SET data = replace(data, '\"step\":', '\"stop\":') WHERE idx=?",
        (idx,),
    )
    one, three = both(run)
    assert not three.ok
    same(one, three)


@pytest.mark.parametrize("pick", [0, -1])  # the first and the last blob part
def test_a_changed_blob_is_reported_alike(run: Path, pick: int) -> None:
    rowid = sql(run, "SELECT rowid FROM blobs ORDER BY rowid")[pick][0]
    sql(run, "UPDATE blobs SET data = X'00' || data WHERE rowid = ?", (rowid,))
    one, three = both(run)
    assert not three.ok and "content hash expected" in three.problems[0].message
    same(one, three)


def test_a_missing_blob_is_reported_alike(run: Path) -> None:
    sql(run, "DELETE FROM blobs WHERE rowid = (SELECT MAX(rowid) FROM blobs)")
    one, three = both(run)
    assert not three.ok and "expected in the blob table" in three.problems[0].message
    same(one, three)


@pytest.mark.parametrize("at", ["inside", "last here", "first in a helper"])
def test_a_deleted_event_is_reported_where_it_was(run: Path, at: str) -> None:
    """Also at the edges of the ranges, where no index is out of place (a signed root would
    catch it too, but not in the unsigned tail)."""
    with Ledger.open(run) as ledger:  # an unsigned tail
        for i in range(40):
            ledger.append("step", {"step": 100 + i})
    (_, own), (first, _), _ = scan.split(EVENTS + 40, len(sql(run, "SELECT 1 FROM blobs")), 3)
    assert own == first
    idx = {"inside": EVENTS + 35, "last here": own - 1, "first in a helper": own}[at]
    sql(run, "DELETE FROM events WHERE idx = ?", (idx,))
    for report in both(run):
        assert not report.ok, "a deleted event went unnoticed"
        assert any(p.where == f"event {idx}" for p in report.problems), report.problems


def test_problems_beyond_the_limit_are_counted_alike(run: Path) -> None:
    sql(run, "UPDATE blobs SET data = X'00' || data")
    sql(run, "UPDATE events SET data = data || ' ' WHERE idx % 7 = 0")
    one, three = both(run)
    assert len(three.problems) == 50 and three.more_problems > 600
    same(one, three)


def test_a_helper_that_dies_leaves_its_share_to_this_process(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = scan.start_helper
    monkeypatch.setattr(scan, "start_helper", lambda m: real("trustgrpo.no_such_module"))
    sql(run, "UPDATE blobs SET data = X'00' || data WHERE rowid = (SELECT MAX(rowid) FROM blobs)")
    sql(run, "UPDATE events SET data = data || ' ' WHERE idx = ?", (EVENTS - 1,))
    one, three = both(run)
    assert not three.ok and three.events == EVENTS and three.processes == 1
    failed = [w for w in three.warnings if w.startswith("a verify helper stopped (exit code 1)")]
    assert len(failed) == 2 and "scanned in the main process" in failed[0]
    three.warnings = [w for w in three.warnings if w not in failed]
    same(one, three)


def test_no_helper_can_start(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot(module: str) -> None:
        raise FileNotFoundError("no python here")

    monkeypatch.setattr(scan, "start_helper", cannot)
    sql(run, "UPDATE events SET data = data || ' ' WHERE idx = 3")
    one, three = both(run)
    assert not three.ok and three.processes == 1
    same(one, three)
