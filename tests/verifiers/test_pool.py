"""The verifier process pool: sample order, per-sample timeouts, hangs and crashes contained."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from trustgrpo.verifiers import Sample
from trustgrpo.verifiers import pool as vpool
from trustgrpo.verifiers.testing import MisbehavingVerifier


def batch(*commands: str) -> list[Sample]:
    return [Sample(f"p{i}", 0, i, "q", c, None) for i, c in enumerate(commands)]


def test_small_batches_stay_in_process_and_large_ones_use_the_pool() -> None:
    v = MisbehavingVerifier(workers=2, pool_min_batch=8)
    small = v.score(batch(*["pid"] * 7))
    assert {o.details["pid"] for o in small} == {os.getpid()}
    large = v.score(batch(*["pid"] * 64))
    pids = {o.details["pid"] for o in large}
    assert os.getpid() not in pids and len(pids) == 2


def test_outcomes_keep_sample_order_across_workers() -> None:
    v = MisbehavingVerifier(workers=2, pool_min_batch=1)
    commands = ["ok" if i % 3 else "no" for i in range(50)]
    outs = v.score(batch(*commands))
    assert [o.status for o in outs] == ["correct" if c == "ok" else "incorrect" for c in commands]
    assert all(o.verifier == v.id for o in outs)


def test_failures_in_workers_become_typed_outcomes_in_their_slots() -> None:
    v = MisbehavingVerifier(workers=2, pool_min_batch=1, timeout_s=0.3)
    before = vpool.get_pool(2).restarts
    outs = v.score(
        batch("ok", "sleep:5", "raise", "nan", "hang:60", "crash", "no", "ok", "pid", "ok")
    )
    got = [(o.status, o.score) for o in outs]
    assert got == [
        ("correct", 1.0),
        ("timeout", None),  # the worker's own timer
        ("error", None),
        ("error", None),
        ("timeout", None),  # ignored the timer: killed by the parent after timeout + grace
        ("error", None),  # the worker process died
        ("incorrect", 0.0),
        ("correct", 1.0),
        ("correct", 1.0),
        ("correct", 1.0),
    ]
    assert outs[1].details["reason"] == "timed out after 0.3 s"
    assert outs[2].details["error"] == "ValueError: told to raise"
    assert "killed" in outs[4].details["reason"]
    assert outs[5].details["error"] == "verifier worker died (exit code 3)"
    assert vpool.get_pool(2).restarts == before + 2  # the hung one and the crashed one
    # the pool still works afterwards
    assert [o.status for o in v.score(batch("ok", "no"))] == ["correct", "incorrect"]


def test_in_process_timeouts_on_the_main_thread() -> None:
    v = MisbehavingVerifier(workers=1, timeout_s=0.2)
    (o,) = v.score(batch("sleep:5"))
    assert o.status == "timeout" and o.duration_ms < 2000


def test_off_the_main_thread_timeouts_are_enforced_by_the_pool() -> None:
    v = MisbehavingVerifier(workers=1, timeout_s=0.2)
    result: list = []
    t = threading.Thread(target=lambda: result.extend(v.score(batch("sleep:5", "pid"))))
    t.start()
    t.join(30)
    assert [o.status for o in result] == ["timeout", "correct"]
    assert result[1].details["pid"] != os.getpid()


def test_should_use() -> None:
    heavy = MisbehavingVerifier(workers=2, pool_min_batch=4)
    assert vpool.should_use(heavy, 4) and not vpool.should_use(heavy, 3)
    assert not vpool.should_use(MisbehavingVerifier(cpu_heavy=False, workers=2), 100)
    assert not vpool.should_use(MisbehavingVerifier(workers=1), 100)  # main thread: timer here


def test_a_verifier_workers_cannot_load_is_scored_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A module that imports only in this process, as a verifier defined in a script would.
    (tmp_path / "parent_only_verifier.py").write_text(
        "import os\n"
        f"if os.getpid() != {os.getpid()}:\n"
        "    raise ImportError('only importable in the parent')\n"
        "from trustgrpo.verifiers.testing import MisbehavingVerifier\n"
        "class ParentOnly(MisbehavingVerifier):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(vpool, "BROKEN", [])
    from parent_only_verifier import ParentOnly  # type: ignore[import-not-found]

    v = ParentOnly(workers=2, pool_min_batch=1)
    outs = v.score(batch("pid", "no", "pid"))
    assert [o.status for o in outs] == ["correct", "incorrect", "correct"]
    assert outs[0].details["pid"] == os.getpid()
    assert "verifier pool turned off: a verifier worker could not load" in caplog.text
    assert len(vpool.BROKEN) == 1  # turned off for this process, with the reason


def test_an_unpicklable_verifier_is_scored_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vpool, "BROKEN", [])
    v = MisbehavingVerifier(workers=2, pool_min_batch=1)
    v.unpicklable = lambda: None  # type: ignore[attr-defined]
    outs = v.score(batch("pid", "pid"))
    assert {o.details["pid"] for o in outs} == {os.getpid()}
    assert vpool.BROKEN == []  # the pool stays on for other verifiers


def test_samples_and_outcomes_pickle_with_every_field() -> None:
    """Both travel pickled (to pool workers, to the ledger's writer process) through their own
    ``__reduce__``: a field it forgot would come back as its default."""
    import dataclasses
    import pickle

    from trustgrpo.verifiers import Outcome

    values = {
        Sample: ("p1", 3, 5, "prompt", "completion", "ref", {"op": "+"}, 7, True),
        Outcome: (0.25, "incorrect", "numeric@abc", {"reason": "wrong"}, 1.5),
    }
    for cls, args in values.items():
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        assert len(fields) == len(args)
        obj = cls(*args)  # type: ignore[operator]
        copy = pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        assert copy == obj
        assert all(getattr(copy, f.name) != f.default for f in fields)
