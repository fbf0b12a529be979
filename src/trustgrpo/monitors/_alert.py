"""What a monitor says: an :class:`Alert`, and the four actions it can trigger.

An alert's ``severity`` is the action its detector is configured to take (the run file's
``monitors.<detector>.action``), capped by ``monitors.max_action``::

    warn     recorded in the ledger, nothing else
    review   recorded with ``action = "review"``: the review queue picks it up with its evidence
    pause    recorded, flushed, then training waits for a ``decision`` event
             (``trustgrpo review resolve RUN ALERT --decision continue|halt``)
    halt     recorded, then training stops: the last completed step is checkpointed, exit 3

``action`` is what was actually done, which differs from the severity when a monitor runs
offline (``"none"``: ``trustgrpo monitor`` only reports) or when a pause cannot wait because
the run has no ledger (``"halt"``).

Evidence: a list whose items are ledger event indices (ints) when known, or, for a reward
event not yet numbered, its coordinates ``{"step", "group_id", "index"}`` (unique within a
run once resumed steps are discounted; ``trustgrpo monitor`` resolves them to indices).
Evidence that is not a ledger event (a canary, a probe) is a small dict naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["warn", "review", "pause", "halt"]
SEVERITIES: tuple[Severity, ...] = ("warn", "review", "pause", "halt")
"""The four levels, mildest first."""

Ref = int | dict[str, Any]
"""One item of evidence: a ledger event index, or a dict naming the event or object."""


def rank(severity: Severity | str) -> int:
    """Position of ``severity`` in :data:`SEVERITIES` (0 = warn)."""
    return [str(s) for s in SEVERITIES].index(severity)


def cap(severity: Severity, most: Severity) -> Severity:
    """``severity``, lowered to ``most`` when it is higher."""
    return severity if rank(severity) <= rank(most) else most


@dataclass(frozen=True)
class Finding:
    """What a detector found at one step, before the monitor applies cooldown and actions."""

    check: str
    """Which of the detector's checks fired (``rho``, ``canary:<id>``...)."""
    statistic: float
    """The value that crossed the threshold."""
    threshold: float
    """The threshold it crossed (the run file's value)."""
    message: str
    """One readable sentence: what, how much, and why it matters."""
    evidence: Sequence[Ref] = ()
    """Events (or objects) that show it, most telling first."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Further numbers (p-values, per-category rates...)."""


@dataclass(frozen=True)
class Alert:
    """One alert, as written to the ledger (kind ``alert``)."""

    step: int
    detector: str
    """The detector's name (its table under ``[monitors]``)."""
    check: str
    severity: Severity
    statistic: float
    threshold: float
    evidence: tuple[Ref, ...]
    action: str
    """What was done: ``warn``, ``review``, ``pause``, ``halt``, or ``none`` (offline)."""
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    index: int | None = None
    """The alert's own ledger event index, once known."""

    @property
    def key(self) -> tuple[str, str]:
        """``(detector, check)``: what the cooldown is counted per."""
        return (self.detector, self.check)

    def to_body(self) -> dict[str, Any]:
        """The ``alert`` event body (see :mod:`trustgrpo.ledger.events`)."""
        return {
            "step": int(self.step),
            "detector": self.detector,
            "check": self.check,
            "severity": self.severity,
            "statistic": _finite(self.statistic),
            "threshold": _finite(self.threshold),
            "evidence": [_ref(r) for r in self.evidence],
            "action": self.action,
            "message": self.message,
            "details": _plain(self.details),
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], index: int | None = None) -> Alert:
        """An alert read back from a ledger event body (missing keys get neutral values)."""
        sev = body.get("severity", "warn")
        return cls(
            step=int(body.get("step", 0)),
            detector=str(body.get("detector", "")),
            check=str(body.get("check", "")),
            severity=sev if sev in SEVERITIES else "warn",
            statistic=_num(body.get("statistic")),
            threshold=_num(body.get("threshold")),
            evidence=tuple(body.get("evidence") or ()),
            action=str(body.get("action", "")),
            message=str(body.get("message", "")),
            details=dict(body.get("details") or {}),
            index=index,
        )

    def to_json(self) -> dict[str, Any]:
        """The body plus the alert's own event index (for ``--json`` output)."""
        return {"index": self.index, **self.to_body()}


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def _ref(r: Ref) -> Ref:
    return int(r) if isinstance(r, int) else _plain(r)


def _plain(value: Any) -> Any:
    """JSON-ready data: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) or hasattr(value, "item"):
        try:
            x = float(value)
        except (TypeError, ValueError):
            return str(value)
        if x.is_integer() and not isinstance(value, float) and "int" in type(value).__name__:
            return int(x)
        return x if math.isfinite(x) else None
    return str(value)
