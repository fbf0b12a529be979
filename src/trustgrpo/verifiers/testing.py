"""A verifier that misbehaves on purpose, for testing what contains verifiers.

The process pool, the self-test and the determinism check exist for verifiers that hang,
crash, raise or drift; testing them needs a real verifier that does those things on demand
(and that a pool worker can import, which a class defined in a test file is not). It is not
registered as a run-file type.

The completion says what to do::

    "ok"          correct (score 1)
    "no"          incorrect (score 0)
    "raise"       raise ValueError
    "nan"         return a NaN score
    "sleep:S"     sleep S seconds in Python (a timer can interrupt it), then correct
    "hang:S"      block SIGALRM and sleep S seconds, like C code that never returns to the
                  interpreter: only the pool's hard kill can stop it
    "crash"       end the process at once (os._exit), like a segfault
    "random"      a random score in [0, 1): nondeterministic
    "pid"         correct, with the process id in the details (where did it run?)
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field

from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.core import BaseVerifier, Check, correct, incorrect
from trustgrpo.verifiers.params import ge, gt


@dataclass(frozen=True)
class MisbehavingParams:
    """Parameters of :class:`MisbehavingVerifier`."""

    timeout_s: float = field(default=1.0, metadata=gt(0))
    """Per-sample time limit."""
    cpu_heavy: bool = True
    """Use the process pool for large batches."""
    workers: int = field(default=2, metadata=ge(0))
    """Pool processes."""
    pool_min_batch: int = field(default=4, metadata=ge(1))
    """Smallest batch sent to the pool."""


class MisbehavingVerifier(BaseVerifier[MisbehavingParams]):
    """Does what each completion says (see the module docstring)."""

    type = "misbehaving"
    Params = MisbehavingParams
    execution_params = frozenset({"workers", "pool_min_batch", "cpu_heavy"})

    def setup(self) -> None:
        self.cpu_heavy = self.params.cpu_heavy  # type: ignore[misc]

    def check(self, sample: Sample) -> Check:
        cmd, _, arg = sample.completion.strip().partition(":")
        if cmd == "ok":
            return correct()
        if cmd == "no":
            return incorrect("told to fail")
        if cmd == "raise":
            raise ValueError("told to raise")
        if cmd == "nan":
            return Check("incorrect", float("nan"))
        if cmd == "sleep":
            time.sleep(float(arg))
            return correct()
        if cmd == "hang":
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            try:
                time.sleep(float(arg))
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
            return correct()
        if cmd == "crash":
            os._exit(3)
        if cmd == "random":
            return Check("incorrect", random.random())
        if cmd == "pid":
            return correct(pid=os.getpid())
        return incorrect(f"unknown command {cmd!r}")

    def gold_completion(self, sample: Sample) -> str | None:
        """The sample's own completion (its command), not the reference."""
        return sample.completion


__all__ = ["MisbehavingVerifier"]
