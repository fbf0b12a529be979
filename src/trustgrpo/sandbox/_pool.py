"""Many sandboxed runs at once: N worker threads, each run still in its own fresh sandbox.

Threads are enough: a worker spends its time blocked in ``select`` on its child's pipes,
which releases the GIL, and every run is a separate process tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from trustgrpo.sandbox._core import Limits, Sandbox, SandboxResult


class SandboxPool:
    """Runs programs ``workers`` at a time (0: one per CPU core) on one :class:`Sandbox`."""

    def __init__(
        self,
        workers: int = 0,
        *,
        sandbox: Sandbox | None = None,
        backend: str = "auto",
        python: str | None = None,
    ) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise ValueError(f"workers: expected an integer >= 0, got {workers!r}")
        self.sandbox = sandbox if sandbox is not None else Sandbox(backend=backend, python=python)
        self.workers = workers or os.cpu_count() or 1
        """Number of programs run at once."""
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="trustgrpo-sandbox")

    @property
    def isolation(self) -> tuple[str, ...]:
        """The isolation layers every run gets."""
        return self.sandbox.isolation

    def submit(
        self,
        code: str,
        *,
        stdin: str = "",
        files: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> Future[SandboxResult]:
        """Queue one run; the future raises ``SandboxError`` if the sandbox failed."""
        return self._executor.submit(
            self.sandbox.run_with,
            code,
            stdin=stdin,
            files=dict(files or {}),
            limits=limits or Limits(),
        )

    def map(
        self, codes: Iterable[str], *, stdin: str = "", limits: Limits | None = None
    ) -> list[SandboxResult]:
        """Run every program (same stdin and limits) and return the results in order."""
        futures = [self.submit(c, stdin=stdin, limits=limits) for c in codes]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Wait for queued runs and stop the worker threads."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
