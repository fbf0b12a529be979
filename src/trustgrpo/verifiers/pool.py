"""A process pool for CPU-heavy verifiers (math): order kept, per-sample timeouts enforced.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot stop one stuck task. Here each
worker is a process with its own pipe, takes a chunk of samples, and streams back one
outcome per sample, so the parent always knows which sample a worker is on:

* the sample's own timer (``setitimer`` inside the worker, ``timeout_s``) turns a slow
  check into a ``timeout`` outcome;
* if a worker stops responding anyway (stuck in C code that never returns to the
  interpreter), the parent kills it ``timeout_s + grace`` after its last message, records a
  ``timeout`` outcome for the sample it was on, starts a new worker and re-queues the rest
  of the chunk;
* a worker that dies (segfault, out of memory) gives an ``error`` outcome for its sample.

Outcomes are written into their sample's slot, so their order always matches the samples.

Workers start through the ``forkserver`` (Linux; ``spawn`` elsewhere): the server imports
the verifier modules once and forks workers from that clean, single-threaded process, never
from the trainer's multi-threaded one. The pool starts on first use and lives for the
process (``shutdown()`` stops it). Measured on 2 cores (``bench/verifiers.py``): start-up
about 1.4 s once (the server's imports, mostly ``import trustgrpo``); then the ``math``
verifier runs x1.98 faster on 1,000 pairs, x1.5 at 16 samples, x1.1 at 8 and slower at 4,
hence its ``pool_min_batch = 16``. A script that uses the pool must keep its top-level code
under ``if __name__ == "__main__":`` (workers import the main module); if workers cannot
start, the pool is turned off for the process with a logged warning and samples are scored
in-process.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trustgrpo.verifiers.base import Outcome, Sample, error_outcome
from trustgrpo.verifiers.core import can_alarm

#: Seconds past ``timeout_s`` before a silent worker is killed.
GRACE_S = 2.0
#: Seconds a fresh worker may take to load a verifier before its first sample.
SETUP_LIMIT_S = 120.0
#: Modules the forkserver imports once, so that workers start with them loaded.
PRELOAD = ["trustgrpo.verifiers.registry", "math_verify"]


def machine_workers() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    """``workers``, or the machine's cores when it is 0."""
    return workers if workers > 0 else machine_workers()


class PoolUnavailable(RuntimeError):
    """Workers cannot start here (e.g. a script without ``if __name__ == "__main__":``)."""


class NotPicklable(PoolUnavailable):
    """This verifier cannot be sent to a worker (the pool stays on for others)."""


#: Why the pool cannot be used in this process (set after a worker failed to start).
BROKEN: list[str] = []


def should_use(verifier: Any, n: int) -> bool:
    """Whether ``verifier`` should score ``n`` samples in the pool rather than here.

    Only for ``cpu_heavy`` verifiers, never inside a daemonic process (which may not have
    children), and either when the batch reaches ``pool_min_batch`` with two or more
    workers, or when a per-sample timeout is needed off the main thread (only the pool can
    enforce it there).
    """
    if not getattr(verifier, "cpu_heavy", False) or n == 0 or mp.current_process().daemon:
        return False
    if BROKEN:
        return False
    params = verifier.params
    workers = resolve_workers(int(getattr(params, "workers", 0)))
    if workers >= 2 and n >= int(getattr(params, "pool_min_batch", 1)):
        return True
    return bool(verifier.timeout_s) and not can_alarm()


def _worker_main(conn: mpc.Connection) -> None:
    """Loop of a worker: receive ``(key, pickled verifier, samples)``, send back outcomes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    cache: dict[str, Any] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        key, blob, samples = msg
        verifier = cache.get(key)
        if verifier is None:
            try:
                verifier = pickle.loads(blob)
                verifier.prepare()
            except Exception as e:  # e.g. a class this process cannot import
                conn.send(("setup failed", f"{type(e).__name__}: {e}"))
                return
            cache.clear()
            cache[key] = verifier
        conn.send("ready")
        for s in samples:
            conn.send(verifier.score_one(s))


@dataclass
class _Worker:
    proc: Any
    conn: mpc.Connection
    indices: list[int] = field(default_factory=list)
    pos: int = 0
    ready: bool = False
    last: float = 0.0

    @property
    def busy(self) -> bool:
        return self.pos < len(self.indices)


class VerifierPool:
    """``workers`` processes that score samples for any picklable verifier."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = resolve_workers(workers)
        self._ctx: Any = mp.get_context(
            "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        )
        if self._ctx.get_start_method() == "forkserver":
            self._ctx.set_forkserver_preload(PRELOAD)
        self._lock = threading.Lock()
        self._pool: list[_Worker] = []
        self.restarts = 0
        """Workers replaced after a hang or a crash (for tests and metrics)."""

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child,), daemon=True, name="trustgrpo-verifier"
        )
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def start(self) -> None:
        """Start the workers now (otherwise at the first ``score``)."""
        with self._lock:
            while len(self._pool) < self.workers:
                self._pool.append(self._start())

    def _replace(self, w: _Worker) -> None:
        with contextlib.suppress(Exception):
            w.proc.kill()
            w.proc.join(5)
        w.conn.close()
        self._pool[self._pool.index(w)] = self._start()
        self.restarts += 1

    def score(self, verifier: Any, samples: Sequence[Sample]) -> list[Outcome]:
        """One outcome per sample, in sample order."""
        n = len(samples)
        if n == 0:
            return []
        self.start()
        with self._lock:
            try:
                return self._score(verifier, samples)
            except NotPicklable:
                raise
            except PoolUnavailable:
                self._close_all()
                raise

    def _score(self, verifier: Any, samples: Sequence[Sample]) -> list[Outcome]:
        vid = verifier.id
        timeout = verifier.timeout_s
        hard = None if timeout is None else timeout + max(GRACE_S, timeout)
        try:
            blob = pickle.dumps(verifier)
        except Exception as e:
            raise NotPicklable(
                f"{vid} cannot be sent to a worker: {type(e).__name__}: {e}"
            ) from None
        key = f"{vid}:{hash(blob)}"
        n = len(samples)
        size = max(1, min(32, math.ceil(n / (4 * self.workers))))
        queue: deque[list[int]] = deque(list(range(i, min(i + size, n))) for i in range(0, n, size))
        out: list[Outcome | None] = [None] * n

        def assign(w: _Worker) -> None:
            idx = queue.popleft()
            w.indices, w.pos, w.ready, w.last = idx, 0, False, time.monotonic()
            w.conn.send((key, blob, [samples[i] for i in idx]))

        def fail(w: _Worker, outcome: Outcome) -> None:
            """Record ``outcome`` for the worker's current sample, re-queue the rest."""
            out[w.indices[w.pos]] = outcome
            rest = w.indices[w.pos + 1 :]
            if rest:
                queue.appendleft(rest)
            w.indices, w.pos = [], 0
            self._replace(w)

        while queue or any(w.busy for w in self._pool):
            for w in self._pool:
                if queue and not w.busy:
                    assign(w)
            busy = [w for w in self._pool if w.busy]
            now = time.monotonic()
            limits = [(w, hard if w.ready else SETUP_LIMIT_S) for w in busy]
            deadlines = [w.last + lim for w, lim in limits if lim is not None]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else None
            ready = mpc.wait([w.conn for w in busy], timeout=wait_s)
            for w in busy:
                if w.conn not in ready:
                    continue
                try:
                    while w.busy and w.conn.poll():
                        msg = w.conn.recv()
                        w.last = time.monotonic()
                        if msg == "ready":
                            w.ready = True
                        elif isinstance(msg, tuple):  # ("setup failed", why)
                            raise PoolUnavailable(
                                f"a verifier worker could not load {vid}: {msg[1]}"
                            )
                        else:
                            out[w.indices[w.pos]] = msg
                            w.pos += 1
                except (EOFError, OSError):
                    w.proc.join(1)
                    code = w.proc.exitcode
                    if not w.ready:
                        raise PoolUnavailable(
                            f"a verifier worker exited before loading the verifier (exit code "
                            f"{code}); if this is a script, put its code under "
                            '`if __name__ == "__main__":`'
                        ) from None
                    fail(w, error_outcome(vid, f"verifier worker died (exit code {code})"))
            now = time.monotonic()
            for w in list(self._pool):
                if not w.busy:
                    continue
                limit = hard if w.ready else SETUP_LIMIT_S
                if limit is not None and now - w.last > limit:
                    what = "did not answer" if w.ready else "did not start"
                    fail(
                        w,
                        Outcome(
                            None,
                            "timeout",
                            vid,
                            {"reason": f"worker {what} within {limit:g} s; killed"},
                            (now - w.last) * 1000.0,
                        ),
                    )
        return [o if o is not None else error_outcome(vid, "no outcome") for o in out]

    def close(self) -> None:
        """Stop the workers."""
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        for w in self._pool:
            with contextlib.suppress(Exception):
                w.conn.send(None)
        for w in self._pool:
            w.proc.join(2)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(2)
            w.conn.close()
        self._pool = []


_POOLS: dict[int, VerifierPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(workers: int = 0) -> VerifierPool:
    """The process-wide pool with ``workers`` workers (0: the machine's cores)."""
    n = resolve_workers(workers)
    with _POOLS_LOCK:
        if n not in _POOLS:
            _POOLS[n] = VerifierPool(n)
        return _POOLS[n]


def score(verifier: Any, samples: Sequence[Sample]) -> list[Outcome]:
    """Score ``samples`` with ``verifier`` in the shared pool sized by its ``workers``.

    If workers cannot start in this process, the pool is turned off for the process (with a
    logged warning saying why) and the samples are scored in-process.
    """
    try:
        return get_pool(int(getattr(verifier.params, "workers", 0))).score(verifier, samples)
    except NotPicklable as e:
        logging.getLogger(__name__).warning("scoring in-process: %s", e)
    except PoolUnavailable as e:
        BROKEN.append(str(e))
        logging.getLogger(__name__).warning("verifier pool turned off: %s", e)
    return [verifier.score_one(s) for s in samples]


def shutdown() -> None:
    """Stop every pool (also run at interpreter exit)."""
    with _POOLS_LOCK:
        for p in _POOLS.values():
            p.close()
        _POOLS.clear()


atexit.register(shutdown)

__all__ = ["VerifierPool", "get_pool", "machine_workers", "score", "should_use", "shutdown"]
