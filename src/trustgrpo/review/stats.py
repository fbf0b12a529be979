"""Agreement between verifiers and people: Cohen's κ with its counts, and error rates.

Both raters answer the same question about a sample: is the completion *correct*? The
verifier's answer is its verdict (every judging component says ``correct``; see
:func:`trustgrpo.review.index.verdict_of`), the person's is the ``verdict`` of a ``feedback``
event. Only pairs where both said ``correct`` or ``incorrect`` count; the rest are counted as
excluded, never dropped silently.

κ = (p_o − p_e) / (1 − p_e) (Cohen 1960), where p_o is the observed agreement and p_e the
agreement expected by chance from the two raters' marginals. κ is undefined (None) without
pairs, or when p_e = 1 (both raters used one and the same label throughout).

The verifiers' error rate is estimated on the queue's uniform random slice only (items drawn
independently of their content), with a Wilson score interval (Wilson 1927), so that the
flagged and near-boundary items, which are sampled because they look wrong, do not bias it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

LABELS = ("correct", "incorrect")
"""The two labels κ is computed over."""


def cohen_kappa(
    pairs: Iterable[tuple[str, str]], labels: tuple[str, ...] = LABELS
) -> tuple[float | None, float | None, float | None]:
    """``(observed agreement, chance agreement, κ)`` of two raters over ``labels``.

    >>> cohen_kappa([("correct", "correct"), ("correct", "incorrect"),
    ...              ("incorrect", "incorrect"), ("incorrect", "incorrect")])
    (0.75, 0.5, 0.5)
    >>> cohen_kappa([])
    (None, None, None)
    """
    pairs = list(pairs)
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


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``k / n`` (95% for z = 1.96); None if n = 0.

    >>> lo, hi = wilson_interval(0, 10)
    >>> (lo, round(hi, 3))
    (0.0, 0.278)
    """
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Agreement:
    """Cohen's κ between verifier verdicts and human labels, with every count behind it."""

    table: dict[str, int]
    """``"<verifier>/<human>"`` → count over correct / incorrect (four cells)."""
    pairs: int
    """Labels that count: both raters said correct or incorrect."""
    observed: float | None
    """Share of pairs where they agree (p_o)."""
    expected: float | None
    """Agreement expected by chance from the marginals (p_e)."""
    kappa: float | None
    """None when undefined (no pairs, or p_e = 1)."""
    excluded_human: int
    """Labels whose human verdict is neither correct nor incorrect (``unsure``)."""
    excluded_verifier: int
    """Labels on samples the verifier did not score (abstain, error, timeout)."""

    @property
    def disagreements(self) -> int:
        return self.table["correct/incorrect"] + self.table["incorrect/correct"]

    def to_json(self) -> dict[str, object]:
        return {
            "table": dict(self.table),
            "pairs": self.pairs,
            "observed": self.observed,
            "expected": self.expected,
            "kappa": self.kappa,
            "excluded_human": self.excluded_human,
            "excluded_verifier": self.excluded_verifier,
        }


def agreement(labels: Iterable[tuple[str, str]]) -> Agreement:
    """:class:`Agreement` of ``(verifier verdict, human verdict)`` pairs.

    >>> a = agreement([("correct", "correct"), ("incorrect", "correct"),
    ...                ("unscored", "incorrect"), ("correct", "unsure")])
    >>> a.pairs, a.table["incorrect/correct"], a.excluded_human, a.excluded_verifier
    (2, 1, 1, 1)
    """
    pairs: list[tuple[str, str]] = []
    excluded_human = excluded_verifier = 0
    for verifier, human in labels:
        if human not in LABELS:
            excluded_human += 1
        elif verifier not in LABELS:
            excluded_verifier += 1
        else:
            pairs.append((verifier, human))
    table = {f"{a}/{b}": 0 for a in LABELS for b in LABELS}
    for a, b in pairs:
        table[f"{a}/{b}"] += 1
    p_o, p_e, kappa = cohen_kappa(pairs)
    return Agreement(table, len(pairs), p_o, p_e, kappa, excluded_human, excluded_verifier)


@dataclass(frozen=True)
class ErrorRate:
    """Share of labelled random-slice items where the person overruled the verifier."""

    errors: int
    labelled: int
    interval: tuple[float, float] | None
    """Wilson 95% interval; None without labels."""

    @property
    def rate(self) -> float | None:
        return self.errors / self.labelled if self.labelled else None

    def to_json(self) -> dict[str, object]:
        return {
            "errors": self.errors,
            "labelled": self.labelled,
            "rate": self.rate,
            "interval": list(self.interval) if self.interval else None,
        }


def error_rate(labels: Iterable[tuple[str, str]]) -> ErrorRate:
    """The verifiers' error rate from ``(verifier verdict, human verdict)`` pairs of the
    random slice (only pairs that :func:`agreement` counts).

    >>> error_rate([("correct", "correct"), ("correct", "incorrect")]).rate
    0.5
    """
    a = agreement(labels)
    return ErrorRate(a.disagreements, a.pairs, wilson_interval(a.disagreements, a.pairs))
