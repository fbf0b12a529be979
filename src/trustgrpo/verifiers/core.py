"""The machinery shared by the built-in verifiers.

A built-in verifier is a subclass of :class:`BaseVerifier` that declares

* ``type``: its registry name;
* ``Params``: a frozen dataclass of its parameters (see :mod:`.params`);
* ``check(sample) -> Check``: the verdict on one sample, a pure function of the sample and
  the parameters.

:class:`BaseVerifier` supplies everything else, identically for every type:

1. **Never a silent failure.** An exception in ``check`` becomes an ``error`` outcome with
   the exception text and no score; a non-finite score becomes an ``error`` outcome too.
2. **Per-sample timeouts** (types with a ``timeout_s`` parameter): an interval timer
   (``setitimer``) in the main thread, or the process pool's alarm and hard kill elsewhere;
   an expired sample is a ``timeout`` outcome. The check's return value after the timer
   fired is ignored, even if some library swallowed the interruption.
3. **Order.** ``score`` returns exactly one outcome per sample, in sample order, whether the
   samples ran here or in the pool (:mod:`.pool`).
4. **Versions.** ``version`` hashes the source files of the verifier's module (and of the
   helper modules it names in ``code_modules``), its parameters, and the versions of the
   libraries it names in ``dependencies``: any change to either is a new version.
5. **Self-test hooks.** ``gold_completion(sample)`` says how a correct answer is written for
   this verifier; ``canaries(sample)`` lists known-bad completions it must not accept.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Generic, TypeVar

from trustgrpo.errors import ConfigError
from trustgrpo.verifiers.base import Outcome, Sample, Status, error_outcome
from trustgrpo.verifiers.params import as_dict, parse_params

P = TypeVar("P")


@dataclass(frozen=True)
class Check:
    """A verdict on one sample, before it becomes an :class:`Outcome`.

    ``score`` may be left out for ``correct`` (1.0) and ``incorrect`` (0.0).
    """

    status: Status
    score: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def correct(**details: Any) -> Check:
    """``Check("correct", 1.0, details)``."""
    return Check("correct", 1.0, details)


def incorrect(reason: str, **details: Any) -> Check:
    """``Check("incorrect", 0.0, {"reason": reason, ...})``."""
    return Check("incorrect", 0.0, {"reason": reason, **details})


def abstain(reason: str, **details: Any) -> Check:
    """The verifier cannot judge this sample (e.g. it has no reference answer)."""
    return Check("abstain", None, {"reason": reason, **details})


# --------------------------------------------------------------------------- versions


@cache
def module_source_sha256(module: str) -> str:
    """SHA-256 of a module's source file (of its name, if it has no file)."""
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec is not None else None
    h = hashlib.sha256()
    if origin and origin not in ("built-in", "frozen"):
        with open(origin, "rb") as f:
            h.update(f.read())
    else:  # pragma: no cover - every verifier module has a file
        h.update(module.encode())
    return h.hexdigest()


def dependency_versions(names: Sequence[str]) -> dict[str, str]:
    """Installed versions of the named distributions (``"absent"`` when not installed)."""
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = "absent"
    return out


def version_hash(code_sha256: str, params: Mapping[str, Any], deps: Mapping[str, str]) -> str:
    """12 hex digits of SHA-256 over the code hash, the canonical parameters and the deps."""
    blob = json.dumps(
        {"code": code_sha256, "params": params, "deps": deps},
        sort_keys=True,
        separators=(",", ":"),
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- timeouts


class VerifierTimeout(BaseException):
    """Raised inside a check when its time is up.

    A ``BaseException``, so that a library's ``except Exception`` does not turn it into a
    wrong answer (math-verify does this with its own timeouts for the same reason).
    """


def can_alarm() -> bool:
    """True where an interval timer can interrupt this thread (the main thread on Unix)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def alarm(seconds: float | None) -> Iterator[list[bool]]:
    """Raise :class:`VerifierTimeout` in the block after ``seconds`` (main thread only).

    Yields a one-item list that is ``[True]`` once the timer fired, so the caller can tell a
    timeout even when the exception was swallowed. An outer timer (pytest-timeout, say) is
    put back afterwards with its remaining time.
    """
    fired = [False]
    if not seconds or not can_alarm():
        yield fired
        return

    def handler(signum: int, frame: Any) -> None:
        fired[0] = True
        raise VerifierTimeout(f"timed out after {seconds:g} s")

    old_handler = signal.signal(signal.SIGALRM, handler)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    t0 = time.monotonic()
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:
            left = max(old_delay - (time.monotonic() - t0), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


# --------------------------------------------------------------------------- base class


class BaseVerifier(Generic[P]):
    """Base class of the built-in verifiers (see the module docstring)."""

    type: ClassVar[str] = ""
    """Registry name of the verifier type."""
    Params: ClassVar[builtins.type[Any]]
    """Frozen dataclass of the parameters."""
    shaping: ClassVar[bool] = False
    """True for reward shaping (length penalties): not verification; role must be shaping."""
    cpu_heavy: ClassVar[bool] = False
    """Large batches run in the process pool (:mod:`.pool`)."""
    code_modules: ClassVar[tuple[str, ...]] = ()
    """Helper modules whose source is part of the version, besides the class's own module."""
    dependencies: ClassVar[tuple[str, ...]] = ()
    """Distributions whose installed version is part of the version (e.g. ``math-verify``)."""
    execution_params: ClassVar[frozenset[str]] = frozenset()
    """Parameters that change how, not what, is computed (pool size): not in the version."""

    def __init__(self, name: str = "", **params: Any) -> None:
        parsed, problems = parse_params(self.Params, self.fill_params(params), name or self.type)
        if problems:
            raise ConfigError(problems)
        self.params: P = parsed  # type: ignore[assignment]
        self.name = name or self.type
        self.setup()
        self.version = version_hash(self.code_sha256(), self.version_params(), self.deps())

    @classmethod
    def fill_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters with type-specific defaults filled in (before checking)."""
        return dict(params)

    @classmethod
    def check_params(cls, params: Mapping[str, Any], path: str) -> list[str]:
        """Every problem with ``params``, each prefixed with ``path``; empty when fine."""
        return parse_params(cls.Params, cls.fill_params(params), path)[1]

    # -- identity ---------------------------------------------------------------------

    def setup(self) -> None:
        """Compile patterns, load schemas: called once the parameters are checked."""

    def version_params(self) -> dict[str, Any]:
        """The parameters that enter the version (all but ``execution_params``)."""
        return {k: v for k, v in as_dict(self.params).items() if k not in self.execution_params}

    @classmethod
    def code_sha256(cls) -> str:
        """SHA-256 over the sources of the class's module and its ``code_modules``."""
        h = hashlib.sha256()
        for m in (cls.__module__, *cls.code_modules):
            h.update(module_source_sha256(m).encode())
        return h.hexdigest()

    def deps(self) -> dict[str, str]:
        """Installed versions of ``dependencies``."""
        return dependency_versions(self.dependencies)

    @property
    def id(self) -> str:
        """``name@version``, as written in every outcome."""
        return f"{self.name}@{self.version}"

    def describe(self) -> dict[str, Any]:
        """Type, parameters, code hash and dependency versions (for the ledger inventory)."""
        return {
            "type": self.type,
            "params": as_dict(self.params),
            "source_hash": self.code_sha256(),
            "dependencies": self.deps(),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id})"

    # -- scoring ----------------------------------------------------------------------

    def check(self, sample: Sample) -> Check:
        """The verdict on one sample (subclasses implement this)."""
        raise NotImplementedError

    @property
    def timeout_s(self) -> float | None:
        """Per-sample time limit, for types with a ``timeout_s`` parameter."""
        t = getattr(self.params, "timeout_s", None)
        return float(t) if t else None

    def prepare(self) -> None:
        """Heavy imports, done once per process before the first sample (pool workers)."""

    def score(self, samples: Sequence[Sample]) -> list[Outcome]:
        """One outcome per sample, in order (in the process pool for large CPU-heavy batches)."""
        from trustgrpo.verifiers import pool

        if pool.should_use(self, len(samples)):
            return pool.score(self, samples)
        return [self.score_one(s) for s in samples]

    def score_one(self, sample: Sample) -> Outcome:
        """Score one sample here, turning exceptions, bad scores and timeouts into outcomes."""
        t0 = time.perf_counter()
        try:
            with alarm(self.timeout_s) as fired:
                verdict = self.check(sample)
            if fired[0]:
                raise VerifierTimeout(f"timed out after {self.timeout_s:g} s")
        except VerifierTimeout as e:
            ms = (time.perf_counter() - t0) * 1000.0
            return Outcome(None, "timeout", self.id, {"reason": str(e)}, ms)
        except Exception as e:
            return error_outcome(self.id, e, (time.perf_counter() - t0) * 1000.0)
        ms = (time.perf_counter() - t0) * 1000.0
        return self.to_outcome(verdict, ms)

    def to_outcome(self, verdict: Check, duration_ms: float) -> Outcome:
        """A :class:`Check` as an :class:`Outcome`, or an ``error`` outcome if it is invalid."""
        score = verdict.score
        if score is None and verdict.status in ("correct", "incorrect"):
            score = 1.0 if verdict.status == "correct" else 0.0
        if score is not None and (
            isinstance(score, bool)
            or not isinstance(score, (int, float))
            or not math.isfinite(score)
        ):
            return error_outcome(
                self.id, f"score: expected a finite number, got {score!r}", duration_ms
            )
        try:
            return Outcome(
                None if score is None else float(score),
                verdict.status,
                self.id,
                verdict.details,
                duration_ms,
            )
        except ValueError as e:
            return error_outcome(self.id, str(e), duration_ms)

    # -- self-test hooks --------------------------------------------------------------

    def gold_completion(self, sample: Sample) -> str | None:
        """A completion this verifier must call correct for ``sample``'s reference answer.

        The default is the reference itself; ``None`` means this verifier cannot write one
        (its gold self-test is then skipped and reported as such).
        """
        return sample.reference

    def canaries(self, sample: Sample) -> list[tuple[str, str]]:
        """Known-bad completions for ``sample`` as ``(label, completion)``: none may be correct.

        The default: an empty and a blank completion, and the think/answer format with no
        answer in it.
        """
        return [
            ("empty", ""),
            ("whitespace", " \n"),
            ("format only", "<think>\n</think>\n<answer>\n</answer>"),
        ]


def wrong_answer(reference: str) -> str:
    """A different answer of the same kind: ``n + 1`` for a number, else a changed string.

    >>> wrong_answer("41"), wrong_answer("-2.5"), wrong_answer("Paris")
    ('42', '-1.5', 'Paris (not)')
    """
    from fractions import Fraction

    text = reference.strip()
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return f"{text} (not)"
    if "." in text:
        decimals = len(text.split(".", 1)[1])
        return f"{float(value + 1):.{decimals}f}"
    return str(value + 1)


__all__ = [
    "BaseVerifier",
    "Check",
    "VerifierTimeout",
    "abstain",
    "alarm",
    "can_alarm",
    "correct",
    "dependency_versions",
    "incorrect",
    "module_source_sha256",
    "version_hash",
    "wrong_answer",
]
