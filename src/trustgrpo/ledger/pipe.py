"""Talking to the ledger's helper processes (the writer process, verify's scan helpers).

A helper is ``python -c "from <module> import main; main()"`` with pipes for stdin and
stdout; messages cross them pickled, each framed by its length (8 bytes, little-endian).
Only the parent's own helpers read what it sends, and the parent only reads what they send.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import subprocess
import sys
from typing import IO, Any


def send(f: IO[bytes], obj: Any) -> None:
    """Write one message (raises what ``pickle.dumps`` raises for an unpicklable ``obj``)."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)))
    f.write(data)
    f.flush()


def recv(f: IO[bytes]) -> Any:
    """Read one message; :class:`EOFError` at the end of the stream."""
    head = f.read(8)
    if len(head) < 8:
        raise EOFError
    (n,) = struct.unpack("<Q", head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


def start_helper(module: str) -> subprocess.Popen[bytes]:
    """Start ``module.main()`` in a child Python with pipes for its stdin and stdout, and
    this process's ``sys.path`` (so that it imports the same code, and what a message
    refers to)."""
    path = os.pathsep.join(p for p in sys.path if p)
    return subprocess.Popen(
        [sys.executable, "-c", f"from {module} import main; main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
        env={**os.environ, "PYTHONPATH": path},
    )


def helper_channel() -> tuple[IO[bytes], IO[bytes]]:
    """In a helper: die with the parent, leave Ctrl-C to it, and return ``(input, output)``
    (nothing else may write to the output: ``print`` goes to stderr)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    return inp, out


def stop_helper(proc: subprocess.Popen[bytes]) -> None:
    """Close the pipes and wait for the helper (killing one that does not end)."""
    for f in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError, ValueError):
            f.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - a stuck store
        proc.kill()
        proc.wait()


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (as a thread would die with it)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
