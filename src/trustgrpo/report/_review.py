"""Human oversight in the ledger: labels, overrides, decisions on alerts, and the agreement
between the verifiers and people (Cohen's κ).

The review tool (issue 9) writes ``feedback`` bodies ``{event, reviewer, verdict, reason}``
and ``override`` bodies ``{event, reviewer, reward, reason}``; the monitors write
``decision`` bodies ``{alert, decision, reviewer, reason}``. A label is compared with the
verifiers' verdict on the same sample (``correct`` when every judging component said so);
labels other than ``correct`` / ``incorrect`` (``unsure``...) and labels on samples the
verifiers did not score are counted, not compared; a reviewer's relabel of a sample replaces
their earlier label (the same rules as the review app's dashboard).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trustgrpo.errors import LedgerError
from trustgrpo.ledger.reader import LedgerReader

EXCERPT_CHARS = 240
NOT_REWARD = "not a reward event"


@dataclass
class Decision:
    """A person's decision on an alert (``decision`` event)."""

    index: int
    alert: int | None
    decision: str
    reviewer: str
    reason: str
    ts: int


@dataclass
class Override:
    """A person replaced a reward (``override`` event)."""

    index: int
    event: int | None
    reviewer: str
    recorded: float | None
    """The reward the reward event recorded."""
    reward: float | None
    reason: str
    ts: int
    excerpt: str | None = None


@dataclass
class Label:
    """A human label (``feedback`` event) next to the verifier's verdict on that sample."""

    index: int
    event: int | None
    reviewer: str
    verdict: str
    verifier: str
    """``correct``, ``incorrect``, ``unscored``, or ``not a reward event``."""
    reason: str
    excerpt: str | None = None


@dataclass
class Review:
    """Human oversight recorded in the ledger."""

    labels: list[Label] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    @property
    def recorded(self) -> bool:
        return bool(self.labels or self.overrides or self.decisions)

    items: int = 0
    """Distinct reward events labelled or overridden."""

    def reviewers(self) -> dict[str, dict[str, int]]:
        """Per reviewer: labels, overrides, decisions."""
        out: dict[str, dict[str, int]] = {}
        for what, rows in (
            ("labels", self.labels),
            ("overrides", self.overrides),
            ("decisions", self.decisions),
        ):
            for r in rows:
                out.setdefault(r.reviewer, {"labels": 0, "overrides": 0, "decisions": 0})
                out[r.reviewer][what] += 1
        return dict(sorted(out.items()))


@dataclass
class Agreement:
    """Cohen's κ between the verifier's verdict and human labels (correct vs incorrect)."""

    table: dict[tuple[str, str], int]
    """``(verifier, human)`` → count, over ``correct`` / ``incorrect``."""
    pairs: int
    observed: float | None
    """Share of pairs where they agree."""
    expected: float | None
    """Agreement expected by chance from the marginals."""
    kappa: float | None
    """None when undefined (no pairs, or chance agreement is 1)."""
    excluded_human: int
    """Labels other than correct / incorrect (``unsure``...)."""
    excluded_verifier: int
    """Labels on samples the verifier did not score (abstain, error, timeout)."""
    relabelled: int = 0
    """Labels replaced by a later label of the same reviewer on the same sample."""
    not_reward: int = 0
    """Labels on events that are not reward events."""


def cohen_kappa(pairs: list[tuple[str, str]], labels: tuple[str, ...]) -> tuple[float | None, ...]:
    """``(observed agreement, chance agreement, κ)`` of two raters over ``labels``.

    κ = (p_o − p_e) / (1 − p_e) (Cohen 1960); undefined (None) without pairs or when
    p_e = 1 (both raters used one and the same label throughout).

    >>> cohen_kappa([("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")], ("a", "b"))
    (0.75, 0.5, 0.5)
    """
    n = len(pairs)
    if n == 0:
        return None, None, None
    p_o = sum(a == b for a, b in pairs) / n
    p_e = sum(
        (sum(a == lab for a, _ in pairs) / n) * (sum(b == lab for _, b in pairs) / n)
        for lab in labels
    )
    kappa = None if math.isclose(p_e, 1.0) else (p_o - p_e) / (1 - p_e)
    return p_o, p_e, kappa


def excerpt(reader: LedgerReader, event: int, limit: int = EXCERPT_CHARS) -> str | None:
    """The completion of reward event ``event``, cut to ``limit`` characters; None when the
    event is not a reward. Untrusted text: the caller escapes it."""
    try:
        ev = reader.get_event(event)
    except LedgerError:
        return None
    if ev.kind != "reward":
        return None
    try:
        text = reader.get_text(ev.body.get("completion_blob"))
    except LedgerError:
        return "[completion missing from the blob table]"
    if text is None:
        return "[redacted]"
    return text if len(text) <= limit else text[: limit - 1] + "…"


_VERDICT_NAMES = ("correct", "incorrect", "unscored")


def attach_review(
    reader: LedgerReader,
    review: Review,
    index: np.ndarray,
    reward: np.ndarray,
    verdict: np.ndarray,
) -> None:
    """The verifier's verdict per label, the recorded reward per override."""

    def row(event: int | None) -> int | None:
        if event is None or not len(index):
            return None
        i = int(np.searchsorted(index, event))
        return i if i < len(index) and index[i] == event else None

    reviewed = {x.event for x in review.labels} | {x.event for x in review.overrides}
    review.items = sum(row(e) is not None for e in reviewed)
    for lab in review.labels:
        i = row(lab.event)
        lab.verifier = NOT_REWARD if i is None else _VERDICT_NAMES[int(verdict[i])]
    for ov in review.overrides:
        i = row(ov.event)
        if i is not None and not np.isnan(reward[i]):
            ov.recorded = float(reward[i])
        if ov.event is not None:
            ov.excerpt = excerpt(reader, ov.event)


def latest_labels(labels: list[Label]) -> list[Label]:
    """Each reviewer's latest label per event (labels in ledger order)."""
    latest: dict[tuple[int | None, str], Label] = {}
    for lab in labels:
        latest[(lab.event, lab.reviewer)] = lab
    return list(latest.values())


def agreement(labels: list[Label]) -> Agreement:
    """Cohen's κ between verifier verdicts and human labels on correct / incorrect.

    As in the review app (:mod:`trustgrpo.review.stats`): each reviewer's latest label per
    reward event counts (a relabel replaces the earlier one); only pairs where both said
    ``correct`` or ``incorrect`` are compared, the others are counted as excluded.
    """
    two = ("correct", "incorrect")
    latest = latest_labels(labels)
    pairs = []
    excluded_human = excluded_verifier = not_reward = 0
    for lab in latest:
        human = lab.verdict.strip().lower()
        if lab.verifier == NOT_REWARD:
            not_reward += 1
        elif human not in two:
            excluded_human += 1
        elif lab.verifier not in two:
            excluded_verifier += 1
        else:
            pairs.append((lab.verifier, human))
    table = {(a, b): 0 for a in two for b in two}
    for pair in pairs:
        table[pair] += 1
    p_o, p_e, kappa = cohen_kappa(pairs, two)
    return Agreement(
        table,
        len(pairs),
        p_o,
        p_e,
        kappa,
        excluded_human,
        excluded_verifier,
        relabelled=len(labels) - len(latest),
        not_reward=not_reward,
    )
