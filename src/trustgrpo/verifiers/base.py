"""The verifier interface: samples in, typed outcomes out.

A verifier scores a batch of :class:`Sample` and returns exactly one :class:`Outcome` per
sample, in the same order. A failure is never a silent zero: it is an outcome whose status is
``error`` or ``timeout`` and whose score is ``None``; the trainer masks such samples out of the
advantage by default (see ``[reward] on_error``, ``on_timeout`` and ``on_abstain`` in the
run file, and :mod:`trustgrpo.verifiers.compose`).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Status = Literal["correct", "incorrect", "abstain", "error", "timeout"]
STATUSES: tuple[Status, ...] = ("correct", "incorrect", "abstain", "error", "timeout")
#: Statuses that carry no score and are masked out of the advantage by default.
UNSCORED: frozenset[str] = frozenset({"abstain", "error", "timeout"})


@dataclass(frozen=True)
class Sample:
    """One completion (or episode) to be scored, with where it came from."""

    prompt_id: str
    """Stable id of the prompt (row id in the data file, or the start-state seed)."""
    group_id: int
    """Index of the group within its step."""
    index: int
    """Index of this sample within its group (0..G-1)."""
    prompt: str
    """The prompt text as the model saw it (after any chat template)."""
    completion: str
    """The generated text."""
    reference: str | None = None
    """The reference answer from the data, if any."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Further data columns, passed to verifiers and monitors."""
    num_tokens: int = 0
    """Number of generated tokens."""
    truncated: bool = False
    """True when generation stopped at ``max_new_tokens`` without an end-of-sequence token."""

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as a tuple of its fields: half the time and size of the default (the
        # ledger's writer process receives every sample of every step)
        return (
            type(self),
            (
                self.prompt_id,
                self.group_id,
                self.index,
                self.prompt,
                self.completion,
                self.reference,
                self.metadata,
                self.num_tokens,
                self.truncated,
            ),
        )


@dataclass(frozen=True)
class Outcome:
    """What one verifier said about one sample."""

    score: float | None
    """The reward; ``None`` exactly when the status is abstain, error or timeout."""
    status: Status
    """correct | incorrect | abstain | error | timeout."""
    verifier: str
    """``name@version`` of the verifier that produced it."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Extracted answer, reasons, per-test results, exception text."""
    duration_ms: float = 0.0
    """Wall time spent on this sample."""

    def __reduce__(self) -> tuple[Any, ...]:  # as Sample's
        return (
            type(self),
            (self.score, self.status, self.verifier, self.details, self.duration_ms),
        )

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Outcome.status: expected one of {STATUSES}, got {self.status!r}")
        if self.status in UNSCORED:
            if self.score is not None:
                raise ValueError(f"Outcome.score: expected None for status {self.status!r}")
        elif self.score is None or not math.isfinite(self.score):
            raise ValueError(
                f"Outcome.score: expected a finite number for status {self.status!r}, "
                f"got {self.score!r}"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the form recorded in the ledger)."""
        return {
            "verifier": self.verifier,
            "status": self.status,
            "score": self.score,
            "details": dict(self.details),
            "duration_ms": round(self.duration_ms, 3),
        }


@runtime_checkable
class Verifier(Protocol):
    """Anything with a name, a version and a batch ``score`` method."""

    name: str
    version: str

    def score(self, samples: Sequence[Sample]) -> list[Outcome]:
        """Return one outcome per sample, in order."""
        ...


def version_of(obj: Any, params: Mapping[str, Any]) -> str:
    """A short hash of an object's class source and its parameters.

    Any change to the verifier's code or parameters gives a new version, so the ledger shows
    which exact verifier produced each reward.
    """
    cls = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = f"{cls.__module__}.{cls.__qualname__}"
    h = hashlib.sha256()
    h.update(source.encode())
    h.update(repr(sorted((k, repr(v)) for k, v in params.items())).encode())
    return h.hexdigest()[:12]


def source_hash(obj: Any) -> str:
    """SHA-256 of the source of a verifier's class or function (for the verifier inventory)."""
    cls = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = f"{cls.__module__}.{cls.__qualname__}"
    return hashlib.sha256(source.encode()).hexdigest()


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """Call ``fn(*args)`` and return its result with the elapsed milliseconds."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1000.0


# --------------------------------------------------------------------------- helpers

#: Longest exception text kept in an ``error`` outcome.
MAX_ERROR_CHARS = 2000


def verifier_id(verifier: Any) -> str:
    """``name@version`` of a verifier."""
    return f"{verifier.name}@{verifier.version}"


def error_outcome(verifier: str, error: BaseException | str, duration_ms: float = 0.0) -> Outcome:
    """An ``error`` outcome carrying the exception's type and text (never a score)."""
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return Outcome(None, "error", verifier, {"error": text[:MAX_ERROR_CHARS]}, duration_ms)


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as JSON-ready data for the ledger: string keys, finite numbers, lists.

    Non-finite floats and unknown objects become their ``repr`` (so a verifier's details can
    never make a ledger event unencodable).

    >>> jsonable({1: (float("nan"), {"a": [True, None]})})
    {'1': ['nan', {'a': [True, None]}]}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value) if abs(value) < 2**53 else str(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(float(value))
    if _depth > 20:
        return repr(value)[:MAX_ERROR_CHARS]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, _depth + 1) for v in value]
    return repr(value)[:MAX_ERROR_CHARS]


def safe_score(verifier: Verifier, samples: Sequence[Sample]) -> list[Outcome]:
    """``verifier.score(samples)``, with every way it can fail turned into ``error`` outcomes.

    * it raises: every sample gets an ``error`` outcome with the exception text (a raising
      reward function must never earn a score, cf. verl PR #7853);
    * it returns the wrong number of outcomes: every sample gets an ``error`` outcome, since
      which outcome belongs to which sample is unknown (rewards shifted by one slot when an
      extraction failed, cf. NeMo-RL PR #3635);
    * an item is not an :class:`Outcome`, or names another verifier: that sample gets an
      ``error`` outcome.

    Details are made JSON-ready (:func:`jsonable`).
    """
    vid = verifier_id(verifier)
    n = len(samples)
    if n == 0:
        return []
    t0 = time.perf_counter()
    try:
        outs = verifier.score(samples)
    except Exception as e:
        ms = (time.perf_counter() - t0) * 1000.0 / n
        return [error_outcome(vid, e, ms) for _ in samples]
    ms = (time.perf_counter() - t0) * 1000.0 / n
    if not isinstance(outs, Sequence) or len(outs) != n:
        got = len(outs) if isinstance(outs, Sequence) else type(outs).__name__
        msg = f"expected {n} outcomes (one per sample, in order), got {got}"
        return [error_outcome(vid, msg, ms) for _ in samples]
    fixed: list[Outcome] = []
    for o in outs:
        if type(o) is not Outcome:
            fixed.append(error_outcome(vid, f"expected an Outcome, got {type(o).__name__}", ms))
        elif o.verifier != vid:
            fixed.append(
                error_outcome(vid, f"outcome labelled {o.verifier!r}, expected {vid!r}", ms)
            )
        else:
            details = jsonable(o.details)
            fixed.append(o if details == o.details else _with_details(o, details))
    return fixed


def _with_details(o: Outcome, details: Mapping[str, Any]) -> Outcome:
    return Outcome(o.score, o.status, o.verifier, details, o.duration_ms)
