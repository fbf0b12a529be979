"""The review queue: which reward events a person should look at, and why.

An item is a ``reward`` event. It enters the queue for one or more reasons::

    flag          it is evidence of an alert at severity review, pause or halt (the monitors'
                  ``review`` action)
    disagreement  the judging verifier components disagree (one says correct, another
                  incorrect)
    boundary      a judging component's score in [0, 1] lies within ``boundary_band`` of 0.5:
                  close to the decision boundary
    random        a uniform random slice: the event index hashed with the ledger's origin
                  falls below ``random_rate``. Membership does not depend on the content, so
                  labels on these items estimate the verifiers' error rate without bias

An item leaves the queue once it has one response (``submitted`` or ``discarded``), as a
record in Argilla completes at ``min_submitted = 1``. Pending items are ordered by their
strongest reason (in the order above), then newest step first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

REASONS = ("flag", "disagreement", "boundary", "random")
"""Why an item is in the queue, strongest first."""


@dataclass(frozen=True)
class QueueConfig:
    """How items are drawn from the reward events."""

    random_rate: float = 0.05
    """Share of all reward events drawn uniformly at random (0 turns the slice off)."""
    boundary_band: float = 0.25
    """A judging score in [0, 1] within this distance of 0.5 is near the boundary."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.random_rate <= 1.0:
            raise ValueError(f"random_rate: expected a share in [0, 1], found {self.random_rate}")
        if not 0.0 <= self.boundary_band <= 0.5:
            raise ValueError(
                f"boundary_band: expected a distance in [0, 0.5], found {self.boundary_band}"
            )


def in_random_slice(seed: str, index: int, rate: float) -> bool:
    """True when event ``index`` is in the uniform random slice of rate ``rate``.

    The first 64 bits of ``SHA-256(seed ":" index)`` compared with ``rate * 2**64``: a
    Bernoulli(rate) draw per event that is stable as the ledger grows and independent of
    what the event says.

    >>> sum(in_random_slice("trustgrpo/run/1234", i, 0.1) for i in range(10_000))
    999
    """
    if rate <= 0.0:
        return False
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


def content_reasons(
    margin: float | None, split: bool, *, seed: str, index: int, cfg: QueueConfig
) -> list[str]:
    """The reasons a reward event is queued before any alert points at it.

    ``margin``: the smallest distance of a judging score in [0, 1] to 0.5 (None when there
    is none); ``split``: the judging components disagree.
    """
    out = []
    if split:
        out.append("disagreement")
    if margin is not None and margin <= cfg.boundary_band:
        out.append("boundary")
    if in_random_slice(seed, index, cfg.random_rate):
        out.append("random")
    return out


@dataclass
class QueueItem:
    """One reward event in the queue."""

    event: int
    """Leaf index of the reward event."""
    step: int
    reasons: list[str] = field(default_factory=list)
    """Why it is queued, strongest first."""
    alerts: list[int] = field(default_factory=list)
    """Indices of the alerts whose evidence names it."""

    @property
    def priority(self) -> int:
        return min((REASONS.index(r) for r in self.reasons), default=len(REASONS))

    def to_json(self) -> dict[str, object]:
        return {
            "event": self.event,
            "step": self.step,
            "reasons": list(self.reasons),
            "alerts": list(self.alerts),
        }


class ReviewQueue:
    """Queue candidates, kept up to date as events arrive (see the module docstring)."""

    def __init__(self, cfg: QueueConfig, seed: str) -> None:
        self.cfg = cfg
        self.seed = seed
        self._items: dict[int, QueueItem] = {}
        self._done: set[int] = set()

    def add_reward(self, index: int, step: int, margin: float | None, split: bool) -> None:
        """A new reward event: queued when its content or the random slice say so."""
        reasons = content_reasons(margin, split, seed=self.seed, index=index, cfg=self.cfg)
        if reasons:
            item = self._items.setdefault(index, QueueItem(index, step))
            item.reasons = _ordered([*item.reasons, *reasons])

    def add_flag(self, index: int, step: int, alert: int) -> None:
        """Reward event ``index`` is evidence of alert ``alert``."""
        item = self._items.setdefault(index, QueueItem(index, step))
        item.reasons = _ordered([*item.reasons, "flag"])
        if alert not in item.alerts:
            item.alerts.append(alert)

    def mark_done(self, index: int) -> None:
        """Reward event ``index`` has a response: it leaves the queue."""
        self._done.add(index)

    def get(self, index: int) -> QueueItem | None:
        """The queue entry of reward event ``index`` (also when done), or None."""
        return self._items.get(index)

    def pending(self, reason: str | None = None) -> list[QueueItem]:
        """Items without a response, strongest reason first, then newest step first."""
        items = [
            it
            for i, it in self._items.items()
            if i not in self._done and (reason is None or reason in it.reasons)
        ]
        items.sort(key=lambda it: (it.priority, -it.step, it.event))
        return items

    def counts(self) -> dict[str, int]:
        """Pending items per reason (an item counts under each of its reasons) and in all."""
        out = dict.fromkeys(REASONS, 0)
        total = 0
        for i, it in self._items.items():
            if i in self._done:
                continue
            total += 1
            for r in it.reasons:
                out[r] += 1
        out["total"] = total
        return out

    def sampled(self) -> int:
        """Every item ever queued (pending or done)."""
        return len(self._items)


def _ordered(reasons: Iterable[str]) -> list[str]:
    return sorted(set(reasons), key=REASONS.index)
