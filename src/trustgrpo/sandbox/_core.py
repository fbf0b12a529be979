"""One sandboxed run: a fresh directory, a contained process tree, capped output, cleanup.

A run, top to bottom (:meth:`Sandbox.run`; steps 2 to 3 and the killing are in
``_supervise``):

1. **prepare**: a fresh temporary directory holding ``main.py`` and the given files, owned by
   the run's own unprivileged uid when trustgrpo is root;
2. **start**: the backend's command (``_backends``) with an empty environment apart from a
   few fixed variables, stdin from an in-memory file, its own session;
3. **supervise**: read stdout and stderr as they come, keeping at most ``max_output_bytes``
   of each; kill the whole tree at the deadline, when a stream overflows, or as soon as the
   main process exits (so nothing outlives it);
4. **classify**: ``ok | error | timeout | memory | output_limit | killed``;
5. **clean up**: kill anything left (as the run's uid), reap, remove the directory.

A program never sees the grader's memory, environment or expected answers: it is a separate
process started from a clean ``exec``, and only what is passed to :meth:`Sandbox.run` is in
its directory.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from trustgrpo.errors import SandboxError
from trustgrpo.sandbox import _backends as backends
from trustgrpo.sandbox._prelude import MAIN
from trustgrpo.sandbox._supervise import Watch, execute

Status = Literal["ok", "error", "timeout", "memory", "output_limit", "killed"]
STATUSES: tuple[Status, ...] = ("ok", "error", "timeout", "memory", "output_limit", "killed")

_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc")


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one program."""

    status: Status
    """ok (exit 0) | error (non-zero exit) | timeout (wall deadline or CPU limit) | memory
    (allocation refused) | output_limit (a stream passed ``max_output_bytes``) | killed (ended
    by a signal, e.g. SIGSEGV or SIGXFSZ)."""
    exit_code: int | None
    """Exit status; negative: killed by that signal number."""
    stdout: str
    """Standard output, at most ``max_output_bytes`` of it (UTF-8, invalid bytes replaced)."""
    stderr: str
    """Standard error, capped the same way."""
    truncated: bool
    """True when either stream was cut at ``max_output_bytes``."""
    wall_ms: float
    """Wall time of the whole run, setup and cleanup included."""
    isolation: tuple[str, ...]
    """The isolation layers that were in force (see ``LAYER_DOCS``)."""

    @property
    def ok(self) -> bool:
        """True when the program exited with status 0."""
        return self.status == "ok"


@dataclass(frozen=True)
class Limits:
    """Per-run limits."""

    timeout_s: float = 5.0
    """Wall-clock limit; the CPU-time limit is this rounded up plus one second."""
    memory_mb: int = 512
    """Address-space limit per process (RLIMIT_AS)."""
    max_output_bytes: int = 1_000_000
    """Bytes kept per stream; more ends the run with ``output_limit``."""
    max_processes: int = 64
    """Processes and threads of the run's uid (RLIMIT_NPROC)."""
    max_file_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE)."""
    max_open_files: int = 128
    """Open file descriptors per process (RLIMIT_NOFILE)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.timeout_s, (int, float)) and 0 < self.timeout_s <= 3600):
            raise ValueError(f"timeout_s: expected seconds in (0, 3600], got {self.timeout_s!r}")
        for name, low in (
            ("memory_mb", 32),
            ("max_output_bytes", 1),
            ("max_processes", 1),
            ("max_file_mb", 1),
            ("max_open_files", 16),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")

    def rlimits(self) -> list[tuple[str, int, int]]:
        """(resource, soft, hard) set in the sandbox. Soft equals hard, except for CPU time:
        SIGXCPU at the soft limit (reported as ``timeout``), SIGKILL a second later."""
        cpu = math.ceil(self.timeout_s) + 1
        return [
            ("RLIMIT_CPU", cpu, cpu + 1),
            ("RLIMIT_AS", self.memory_mb << 20, self.memory_mb << 20),
            ("RLIMIT_NPROC", self.max_processes, self.max_processes),
            ("RLIMIT_FSIZE", self.max_file_mb << 20, self.max_file_mb << 20),
            ("RLIMIT_NOFILE", self.max_open_files, self.max_open_files),
            ("RLIMIT_CORE", 0, 0),
        ]


class Sandbox:
    """Runs untrusted Python programs, each in a fresh sandbox; safe to share between threads.

    ``backend``: ``auto`` (bubblewrap when it works, else the process backend), ``bwrap`` or
    ``process``; ``python``: the interpreter for programs (default: this one's base
    interpreter); ``workdir_root``: where run directories are created (default: the system
    temporary directory). Raises :class:`SandboxError` when no backend works.
    """

    def __init__(
        self,
        *,
        backend: str = "auto",
        python: str | None = None,
        workdir_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.workdir_root = None if workdir_root is None else os.fspath(workdir_root)
        candidates, reasons = backends.plans(backend, python)
        for plan in candidates:
            self.plan = plan
            try:
                _check_workdir_root(plan, self.workdir_root)
                self.python_version = self._probe()
            except SandboxError as e:
                reasons.append(f"{plan.backend}: {e}")
                continue
            break
        else:
            raise SandboxError("no sandbox backend works: " + "; ".join(reasons))
        self.fallback_reason: str | None = "; ".join(reasons) or None
        """Why a preferred backend was not used (None when the first choice worked)."""

    @property
    def backend(self) -> str:
        """``bwrap`` or ``process``."""
        return self.plan.backend

    @property
    def python(self) -> str:
        """The interpreter programs run under."""
        return self.plan.python

    @property
    def isolation(self) -> tuple[str, ...]:
        """The isolation layers every run gets."""
        return self.plan.layers

    @property
    def level(self) -> Literal["strong", "standard", "weak"]:
        """``strong`` | ``standard`` | ``weak`` (see :func:`isolation_level`)."""
        return backends.isolation_level(self.plan.layers)

    def describe(self) -> dict[str, object]:
        """Backend, interpreter, layers and level, for the ledger."""
        return {
            "backend": self.backend,
            "python": self.python,
            "python_version": self.python_version,
            "isolation": list(self.isolation),
            "level": self.level,
        }

    def _probe(self) -> str:
        result = self.run("import sys\nprint(sys.version.split()[0])", timeout_s=20.0)
        if result.status != "ok" or not result.stdout.strip():
            raise SandboxError(f"probe program failed: {result.status}: {result.stderr[-500:]}")
        return result.stdout.strip()

    def run(
        self,
        code: str,
        *,
        stdin: str = "",
        files: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        memory_mb: int = 512,
        max_output_bytes: int = 1_000_000,
        max_processes: int = 64,
    ) -> SandboxResult:
        """Run ``code`` as ``main.py`` in a fresh sandbox with ``files`` beside it.

        Raises :class:`SandboxError` only when the sandbox itself could not be set up; what
        the program does is reported in the result.
        """
        limits = Limits(
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            max_output_bytes=max_output_bytes,
            max_processes=max_processes,
        )
        return self.run_with(code, stdin=stdin, files=files or {}, limits=limits)

    def run_with(
        self, code: str, *, stdin: str, files: Mapping[str, str], limits: Limits
    ) -> SandboxResult:
        """:meth:`run` with a :class:`Limits` object."""
        t0 = time.perf_counter()
        plan = self.plan
        for name in files:
            if _relpath(name) == MAIN:
                raise ValueError(f"files: {MAIN!r} is reserved for the program itself")
        uid = backends.UIDS.acquire() if plan.as_root else None
        try:
            workdir = tempfile.mkdtemp(prefix="trustgrpo-sbx-", dir=self.workdir_root)
        except OSError as e:
            if uid is not None:
                backends.UIDS.release(uid)
            raise SandboxError(f"could not create a run directory: {e}") from e
        try:
            try:
                _populate(workdir, code, files, uid)
            except OSError as e:
                raise SandboxError(f"could not prepare the run directory: {e}") from e
            watch, rc = execute(plan, uid, workdir, stdin.encode(), limits)
        finally:
            if uid is not None:
                backends.UIDS.release(uid)
            _remove(workdir)
        stderr = watch.text(watch.stderr)
        if not watch.started:
            raise SandboxError(
                f"sandbox ({plan.backend}) did not start: exit {rc}: {stderr[-2000:].strip()}"
            )
        code_ = rc
        if plan.backend == "bwrap" and rc is not None and rc > 128:
            code_ = -(rc - 128)  # bubblewrap reports death by signal N as 128 + N
        return SandboxResult(
            status=_classify(watch, code_, stderr),
            exit_code=code_,
            stdout=watch.text(watch.stdout),
            stderr=stderr,
            truncated=watch.truncated,
            wall_ms=(time.perf_counter() - t0) * 1000.0,
            isolation=plan.layers,
        )


def _classify(watch: Watch, code: int | None, stderr: str) -> Status:
    if watch.timed_out:
        return "timeout"
    if watch.overflow:
        return "output_limit"
    if code == 0:
        return "ok"
    tail = [line for line in stderr.splitlines()[-3:] if line.strip()]
    if any(m in line for line in tail for m in _MEMORY_MARKERS):
        return "memory"
    if code is not None and code < 0:
        return "timeout" if -code == signal.SIGXCPU else "killed"
    return "error"


# --------------------------------------------------------------------------- prepare / clean


def _check_workdir_root(plan: backends.Plan, root: str | None) -> None:
    """On the process backend as root, the run's uid must be able to reach its directory."""
    if plan.backend != "process" or not plan.as_root:
        return
    path = os.path.realpath(root or tempfile.gettempdir())
    for d in [path, *(str(p) for p in PurePosixPath(path).parents)]:
        if not os.stat(d).st_mode & 0o001:
            raise SandboxError(
                f"workdir_root {path}: {d} is not traversable by other users (needs o+x), so "
                "the unprivileged run could not enter its directory"
            )


def _relpath(name: str) -> str:
    path = PurePosixPath(name)
    if (
        not name
        or "\0" in name
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise ValueError(f"files: expected a relative path without '..', got {name!r}")
    return str(path)


def _populate(workdir: str, code: str, files: Mapping[str, str], uid: int | None) -> None:
    for name, text in {MAIN: code, **files}.items():
        path = os.path.join(workdir, _relpath(name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    if uid is not None:
        for root, dirs, names in os.walk(workdir):
            for entry in [root, *(os.path.join(root, n) for n in dirs + names)]:
                os.chown(entry, uid, uid, follow_symlinks=False)


def _remove(workdir: str) -> None:
    """Remove a run directory even if the program made parts of it unwritable."""
    try:
        shutil.rmtree(workdir)
    except OSError:
        for root, dirs, _ in os.walk(workdir):
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, d), 0o700, follow_symlinks=False)
        shutil.rmtree(workdir, ignore_errors=True)
