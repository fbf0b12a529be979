"""Sandbox for model-written code: every program is treated as hostile.

>>> from trustgrpo import sandbox
>>> sandbox.run("print(6 * 7)").stdout  # doctest: +SKIP
'42\\n'

Each run gets a fresh working directory (removed afterwards), an empty environment, its own
unprivileged uid (when started as root), resource limits, no network, and a view of the host
limited to the interpreter; its whole process tree is killed when it ends or at the deadline,
and its output is capped while it is read. :attr:`SandboxResult.isolation` names the layers
that were in force; :func:`isolation_level` grades them (``weak`` below process + user +
rlimit, which code verifiers refuse unless ``allow_weak_isolation`` is set).

Backends (see ``_backends``): bubblewrap (``apt-get install -y bubblewrap``) when it works,
otherwise plain processes with Landlock and seccomp.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from trustgrpo.sandbox._backends import LAYER_DOCS, isolation_level
from trustgrpo.sandbox._core import STATUSES, Limits, Sandbox, SandboxResult, Status
from trustgrpo.sandbox._pool import SandboxPool

__all__ = [
    "LAYER_DOCS",
    "STATUSES",
    "Limits",
    "Sandbox",
    "SandboxPool",
    "SandboxResult",
    "Status",
    "default_sandbox",
    "isolation_level",
    "run",
]

_DEFAULTS: dict[str, Sandbox] = {}
_LOCK = threading.Lock()


def default_sandbox(backend: str = "auto") -> Sandbox:
    """The shared :class:`Sandbox` for ``backend``, built (and probed) on first use."""
    with _LOCK:
        if backend not in _DEFAULTS:
            _DEFAULTS[backend] = Sandbox(backend=backend)
        return _DEFAULTS[backend]


def run(
    code: str,
    *,
    stdin: str = "",
    files: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 1_000_000,
    max_processes: int = 64,
    backend: str = "auto",
) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh sandbox and report what happened.

    Raises ``SandboxError`` only when the sandbox could not be set up.
    """
    return default_sandbox(backend).run(
        code,
        stdin=stdin,
        files=files,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        max_output_bytes=max_output_bytes,
        max_processes=max_processes,
    )
