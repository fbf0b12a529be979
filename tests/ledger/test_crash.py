"""Crash safety: a writer process killed with SIGKILL at random moments, several seeds.

After each kill the ledger is reopened: it must verify, hold every event whose ``flush()``
was acknowledged, and hold only whole, correctly numbered events; the next writer continues
the same log (resume). Both stores.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trustgrpo.ledger import Ledger
from trustgrpo.ledger.audit import verify

WRITER = Path(__file__).with_name("crash_writer.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def run_and_kill(run_dir: Path, url: str | None, seed: int, delay: float) -> tuple[int, int]:
    """Start a writer, SIGKILL it ``delay`` seconds after it is ready; return (size it found
    at start, last acknowledged size)."""
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    lines: list[str] = []
    ready = threading.Event()
    with subprocess.Popen(
        [sys.executable, str(WRITER), str(run_dir), url or "-", str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.strip())
                ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        started = ready.wait(30)
        if started:
            time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(10)
        assert proc.stderr is not None
        errors = proc.stderr.read()
    assert started, f"the writer did not start: {errors}"
    assert proc.returncode == -signal.SIGKILL, errors
    _, start_text, child_text = lines[0].split()
    wait_gone(int(child_text))  # a writer process dies with its parent, perhaps mid-batch
    start = int(start_text)
    acks = [int(x.split()[1]) for x in lines if x.startswith("ACK ")]
    return start, max(acks, default=start)


def wait_gone(pid: int) -> None:
    """Wait until process ``pid`` (0: none) has exited."""
    if not pid:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)
    raise AssertionError(f"the writer process {pid} outlived its parent")


def check(run_dir: Path, url: str | None, acked: int) -> int:
    with Ledger.open_readonly(run_dir, url=url) as reader:
        report = verify(reader)
        assert report.ok, report.problems
        size = reader.size()
        assert size >= acked, f"acknowledged {acked} events, found {size}"
        assert [e.body["n"] for e in reader.events()] == list(range(size))
    return size


def crash_cycles(run_dir: Path, url: str | None, seed: int, kills: int) -> None:
    rng = random.Random(seed)
    size = 0
    for k in range(kills):
        start, acked = run_and_kill(run_dir, url, seed * 100 + k, rng.uniform(0.0, 0.4))
        assert start == size  # the writer resumed exactly where the log ends
        size = check(run_dir, url, acked)
    with Ledger.open(run_dir, url=url) as ledger:  # a last clean resume: append, sign
        ledger.append("reward", {"n": size, "step": 0})
        cp = ledger.sign()
    assert cp is not None and cp.size == size + 1
    check(run_dir, url, size + 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_then_verify_and_resume(tmp_path: Path, store_url: str | None, seed: int) -> None:
    crash_cycles(tmp_path / "run", store_url, seed, kills=3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 20))
def test_sigkill_many_seeds(tmp_path: Path, store_url: str | None, seed: int) -> None:
    crash_cycles(tmp_path / "run", store_url, seed, kills=6)
