"""The ledger's writer process (``Ledger.open(..., process=True)``, how the trainer writes):
the same log as the writer thread, refusals, errors, and a child that never outlives its
parent. (Sharing a store with another writer: ``test_ledger.py``; kill -9: ``test_crash.py``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from trustgrpo.errors import LedgerError
from trustgrpo.ledger import Ledger
from trustgrpo.ledger.audit import verify
from trustgrpo.ledger.events import StepRewards, reward_events
from trustgrpo.ledger.sign import SigningKey, load_private_key, sign_checkpoint
from trustgrpo.verifiers.base import Outcome, Sample

SRC = Path(__file__).resolve().parents[2] / "src"


def odd_bodies(put: Any, tag: str) -> list[tuple[str, dict[str, Any]]]:
    """A builder (module level, so it pickles): a blob, and a body that needs making plain."""
    h = put(f"built completion {tag}")
    return [
        ("reward", {"tag": tag, "completion_blob": h}),
        ("reward", {"tag": tag, "odd": float("nan"), "big": 2**60}),
    ]


def broken(put: Any) -> list[tuple[str, dict[str, Any]]]:
    raise RuntimeError("builder broke")


def step_rewards(step: int) -> StepRewards:
    samples = [
        Sample(f"p{g}", g, i, f"prompt {g}", f"answer {step}.{g}.{i}", "7", {"op": "+"}, 3)
        for g in range(2)
        for i in range(4)
    ]
    outcomes = [
        [Outcome(1.0 if s.index % 2 else 0.0, "correct", "numeric@abc", {}, 0.1)] for s in samples
    ]
    return StepRewards(step, samples, outcomes, [1.0] * 8, [0.5] * 8, {3: {"event": 1}})


def write(ledger: Ledger) -> None:
    for i in range(30):
        h = ledger.put_blob(f"completion number {i}")
        ledger.append("reward", {"n": i, "completion_blob": h})
        if i % 10 == 9:
            ledger.sign(wait=False)
            ledger.append_later(partial(odd_bodies, tag=str(i)))
    ledger.append_later(partial(reward_events, step_rewards(1)))
    ledger.append("step", {"step": 1})


def abandon(ledger: Ledger) -> None:
    """Close a ledger whose writer failed (close() would re-raise the failure)."""
    ledger._error = None
    ledger._closed = True
    ledger._writer.close()
    ledger._store.close()


def contents(run_dir: Path, url: str | None) -> tuple[list[tuple[str, Any]], list[str | None]]:
    with Ledger.open_readonly(run_dir, url=url) as reader:
        report = verify(reader)
        assert report.ok, report.problems
        events = list(reader.events())
        texts = [
            reader.get_text(v) for e in events for k, v in sorted(e.body.items()) if "_blob" in k
        ]
        return [(e.kind, e.body) for e in events], texts


def test_the_same_log_as_the_writer_thread(tmp_path: Path, store_url: str | None) -> None:
    logs = []
    for run_dir, url, process in (
        (tmp_path / "thread", None, False),
        (tmp_path / "process", store_url, True),
    ):
        with Ledger.open(run_dir, url=url, batch_size=16, process=process) as ledger:
            write(ledger)
            assert ledger.flush() == 45
            cp = ledger.sign()
            assert cp is not None and cp.size == 45
            assert ledger.latest_checkpoint() == cp
        logs.append(contents(run_dir, url))
    assert logs[0] == logs[1]
    bodies = [b for _, b in logs[1][0]]
    assert bodies[11]["odd"] == "NaN" and bodies[11]["big"] == str(2**60)
    assert sum(1 for k, _ in logs[1][0] if k == "reward") == 30 + 6 + 8


def test_refuses_to_sign_a_fork(run_dir: Path, store_url: str | None, raw_db: Any) -> None:
    ledger = Ledger.open(run_dir, url=store_url, process=True)
    write(ledger)
    ledger.sign()
    key = SigningKey(ledger.verifier_key.name, load_private_key(run_dir / "ledger.key"))
    fork = sign_checkpoint(key, key.name, 50, b"\x07" * 32, "2030-01-01T00:00:00.000Z")
    raw = raw_db(run_dir, store_url)
    raw.q("INSERT INTO {p}checkpoints (size, note) VALUES (?, ?)", (50, fork.note.encode()))
    ledger.append("step", {"step": 2})
    with pytest.raises(LedgerError, match="refusing to sign: the last checkpoint covers 50"):
        ledger.sign()
    with pytest.raises(LedgerError, match="writer failed"):  # the writer is dead now
        ledger.append("step", {"step": 3})
    abandon(ledger)
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        assert reader.size() == 45  # the refused batch left nothing behind


def test_builder_errors_are_reported(run_dir: Path) -> None:
    ledger = Ledger.open(run_dir, process=True)
    ledger.append("step", {"step": 1})
    ledger.flush()
    ledger.append_later(lambda put: [("step", {})])
    with pytest.raises(LedgerError, match="must be a module-level function or a functools"):
        ledger.flush()
    abandon(ledger)

    ledger = Ledger.open(run_dir, process=True)
    ledger.append_later(broken)
    with pytest.raises(LedgerError, match="writer failed: RuntimeError: builder broke"):
        ledger.flush()
    abandon(ledger)
    with Ledger.open_readonly(run_dir) as reader:  # what was flushed before is intact
        assert reader.size() == 1 and verify(reader).ok


def test_a_dead_writer_process_is_reported(run_dir: Path) -> None:
    ledger = Ledger.open(run_dir, process=True)
    write(ledger)
    ledger.flush()
    pid = ledger._writer.pid  # type: ignore[union-attr]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    ledger.append("step", {"step": 2})
    with pytest.raises(LedgerError, match="writer process stopped"):
        ledger.flush()
    abandon(ledger)
    assert contents(run_dir, None)[0][-1][0] == "step"


def test_opened_in_a_thread_that_ends(run_dir: Path) -> None:
    """The child dies with the thread that started it (Linux): the ledger's own thread."""
    opened: list[Ledger] = []
    t = threading.Thread(target=lambda: opened.append(Ledger.open(run_dir, process=True)))
    t.start()
    t.join()
    time.sleep(0.2)
    with opened[0] as ledger:
        write(ledger)
        assert ledger.flush() == 45


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from trustgrpo.ledger import Ledger
        ledger = Ledger.open({str(tmp_path / "run")!r}, process=True)
        print(ledger._writer.pid, flush=True)
        while True:
            ledger.append("step", {{"step": 1}})
            time.sleep(0.001)
        """
    )
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert _alive(child)
        time.sleep(0.3)
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child), "the writer process outlived its parent"
    with Ledger.open_readonly(tmp_path / "run") as reader:
        assert verify(reader).ok
