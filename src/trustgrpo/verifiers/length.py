"""``overlong`` / ``length``: DAPO's soft overlong punishment. Reward *shaping*, not verification.

DAPO (arXiv:2503.14476, eq. 13) penalises a completion of length ``n`` against a maximum
``L_max`` (``max_length``) with a buffer ``L_cache`` (``buffer``)::

    0                              if n <= L_max - L_cache
    ((L_max - L_cache) - n) / L_cache   if L_max - L_cache < n <= L_max
    -1                             if n > L_max

scaled here by ``penalty`` (1 in the paper). It says nothing about whether an answer is
right, so it may only be used with ``role = "shaping"`` (the registry refuses other roles),
its outcomes carry ``details["shaping"] = true``, and its status only says whether a
penalty applied: ``correct`` for none, ``incorrect`` otherwise.

>>> v = LengthPenalty(max_length=10, buffer=4)
>>> [o.score for o in v.score([_s(6), _s(8), _s(12)])]
[0.0, -0.5, -1.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.core import BaseVerifier, Check
from trustgrpo.verifiers.params import ge


@dataclass(frozen=True)
class LengthParams:
    """Parameters of ``overlong`` / ``length``."""

    max_length: int = field(metadata=ge(1))
    """L_max: at this length the penalty is full (usually ``generation.max_new_tokens``)."""
    buffer: int = field(default=0, metadata=ge(0))
    """L_cache: the penalty grows linearly over the last ``buffer`` units before
    ``max_length``; 0 gives a step (no penalty, then full)."""
    unit: Literal["tokens", "chars"] = "tokens"
    """Length in generated tokens (``Sample.num_tokens``) or in characters."""
    penalty: float = field(default=1.0, metadata=ge(0))
    """Size of the full penalty."""

    def problems(self) -> list[str]:
        if self.buffer > self.max_length:
            return [f"buffer: expected at most max_length ({self.max_length}), got {self.buffer}"]
        return []


class LengthPenalty(BaseVerifier[LengthParams]):
    """DAPO soft overlong punishment (shaping)."""

    type = "overlong"
    Params = LengthParams
    shaping = True

    def check(self, sample: Sample) -> Check:
        p = self.params
        n = sample.num_tokens if p.unit == "tokens" else len(sample.completion)
        start = p.max_length - p.buffer
        if n <= start:
            frac = 0.0
        elif n <= p.max_length:
            frac = (n - start) / p.buffer
        else:
            frac = 1.0
        score = -p.penalty * frac
        details = {"shaping": True, "length": n, "unit": p.unit}
        return Check("correct" if frac == 0 else "incorrect", score + 0.0, details)

    def canaries(self, sample: Sample) -> list[tuple[str, str]]:
        """None: shaping is not verification."""
        return []


def _s(tokens: int) -> Sample:
    """A one-off sample (for the examples)."""
    return Sample("p", 0, 0, "", "x" * tokens, None, num_tokens=tokens)


__all__ = ["LengthParams", "LengthPenalty"]
