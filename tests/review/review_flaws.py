"""A flaky verifier for the pause test (named in a run file as ``review_flaws:coin_flip``)."""

from __future__ import annotations

import random
from typing import Any

_RNG = random.Random()  # not the trainer's generators


def coin_flip(completions: list[str], answer: list[str], **_: Any) -> list[float]:
    """Exact match, but one verdict in five is flipped: re-scoring disagrees (nondeterminism)."""
    return [
        float((c.strip() == a) != (_RNG.random() < 0.2))
        for c, a in zip(completions, answer, strict=True)
    ]
