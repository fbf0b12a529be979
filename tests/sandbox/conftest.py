"""Fixtures for the sandbox tests: one real sandbox per backend, and host-state checks.

Every test that takes ``sandbox`` runs once on bubblewrap and once on the process backend
(the fallback where bubblewrap is absent); the bubblewrap case is skipped where bubblewrap is
not installed or does not work. After each such test, the run directories must be gone and
no process of a sandbox uid may be left.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from trustgrpo.errors import SandboxError
from trustgrpo.sandbox import Sandbox
from trustgrpo.sandbox._backends import UID_BASE, UID_SPAN

_SANDBOXES: dict[str, Sandbox | str] = {}


def _alive(pid: str) -> bool:
    """False for zombies (dead, waiting to be reaped by their parent) and vanished pids."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def sandbox_processes() -> list[tuple[int, int, str]]:
    """(pid, uid, cmdline) of every live process running as a per-run sandbox uid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{entry}").st_uid
            if UID_BASE <= uid < UID_BASE + UID_SPAN and _alive(entry):
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                out.append((int(entry), uid, cmd[:200]))
        except OSError:
            continue
    return out


def processes_with(token: str) -> list[str]:
    """Command lines (of any live process) that contain ``token``, once settled."""
    return _settled(lambda: _processes_with(token))


def _processes_with(token: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if token in cmd and str(os.getpid()) != entry and _alive(entry):
                found.append(cmd)
    return found


def _settled(probe: Callable[[], list[Any]], wait_s: float = 3.0) -> list[Any]:
    """``probe()`` once it is empty, or after ``wait_s``: SIGKILLed processes can take a
    moment to finish exiting on a loaded machine; survivors (daemons) stay."""
    deadline = time.monotonic() + wait_s
    while (found := probe()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.fixture(scope="session")
def workroot() -> Iterator[Path]:
    """Parent of every run directory made by the ``sandbox`` fixture.

    Not under pytest's ``tmp_path`` (mode 0700): a run's unprivileged uid must be able to
    traverse it to reach its own directory.
    """
    root = Path(tempfile.mkdtemp(prefix="trustgrpo-test-runs-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root)


@pytest.fixture(params=["bwrap", "process"])
def sandbox(request: pytest.FixtureRequest, workroot: Path) -> Iterator[Sandbox]:
    """A real sandbox on each backend; afterwards the host must be as it was."""
    backend = request.param
    if backend not in _SANDBOXES:
        try:
            _SANDBOXES[backend] = Sandbox(backend=backend, workdir_root=workroot)
        except SandboxError as e:
            _SANDBOXES[backend] = str(e)
    box = _SANDBOXES[backend]
    if isinstance(box, str):
        if backend == "bwrap":
            pytest.skip(f"bubblewrap unusable here: {box}")
        raise SandboxError(box)
    yield box
    assert list(workroot.iterdir()) == [], "a run directory was left behind"
    if not os.environ.get("PYTEST_XDIST_WORKER") and box.plan.as_root:
        assert _settled(sandbox_processes) == [], "a sandboxed process outlived its run"


@pytest.fixture
def token() -> str:
    """A unique marker to look for on the host after a run."""
    return "trustgrpo-attack-" + secrets.token_hex(8)


@pytest.fixture
def host_processes_with() -> Callable[[str], list[str]]:
    """``processes_with(token)``: command lines on the host that contain ``token``."""
    return processes_with
