"""Deliberately flawed reward functions (TRL-shaped) for the monitor scenarios.

Each one is a plausible bug: named in a run file as ``monitor_flaws:<name>`` (the test
folder is put on ``sys.path`` by ``conftest.py``).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

_RNG = random.Random()  # not the trainer's generators: a flaky verifier must not move them


def pays_for_length(completions: list[str], **_: Any) -> list[float]:
    """Pays for length, not correctness (a reward model's length bias, Singhal et al.)."""
    return [min(1.0, len(c.strip()) / 12) for c in completions]


def format_only(completions: list[str], **_: Any) -> list[float]:
    """Accepts any answer in the right format (one digit), right or wrong."""
    return [1.0 if re.fullmatch(r"[0-9]", c.strip()) else 0.0 for c in completions]


def coin_flip(completions: list[str], answer: list[str], **_: Any) -> list[float]:
    """Exact match, but one time in five the verdict is flipped (a flaky service)."""
    out = []
    for c, a in zip(completions, answer, strict=True):
        ok = c.strip() == a
        out.append(float(ok != (_RNG.random() < 0.2)))
    return out


def flaky_after(completions: list[str], answer: list[str], switch: str, **_: Any) -> list[float]:
    """Exact match until the file ``switch`` exists; then the grading service is down."""
    if Path(switch).exists():
        raise ConnectionError("grading service unavailable")
    return [float(c.strip() == a) for c, a in zip(completions, answer, strict=True)]


def drifts_after(completions: list[str], answer: list[str], switch: str, **_: Any) -> list[float]:
    """Exact match until the file ``switch`` exists; then a 'new version' of a dependency
    accepts the answer anywhere in the completion."""
    lenient = Path(switch).exists()
    return [
        float(a in c if lenient else c.strip() == a)
        for c, a in zip(completions, answer, strict=True)
    ]


CALLS: list[int] = []
"""Batch sizes ``slow_exact`` was called with."""


def slow_exact(completions: list[str], answer: list[str], **_: Any) -> list[float]:
    """A correct but slow verifier (a remote grader): 20 ms per call."""
    import time

    CALLS.append(len(completions))
    time.sleep(0.02)
    return [float(c.strip() == a) for c, a in zip(completions, answer, strict=True)]
