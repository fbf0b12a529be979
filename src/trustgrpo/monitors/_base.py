"""The detector protocol and the windows detectors keep.

A detector sees each step twice: :meth:`Detector.on_rewards` with the step's reward events
(the monitor phase, before the update) and :meth:`Detector.on_metrics` with the step's
scalars (loss, KL, entropy; after the update). It returns :class:`Finding` objects; the
:class:`~trustgrpo.monitors.Monitor` turns them into alerts (severity, cooldown, action).

Detectors whose class sets ``live = True`` need the running trainer (its verifiers or its
policy); the others read nothing but the record, so ``trustgrpo monitor`` recomputes them
from a ledger.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from trustgrpo.monitors._alert import Finding, Ref
from trustgrpo.monitors._data import ComponentInfo, StepData

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Live:
    """What live detectors may use of the running trainer."""

    reward: Any
    """The run's :class:`~trustgrpo.verifiers.Reward` (``components``, ``score``,
    ``rescore``, ``self_test``)."""
    complete: Callable[[Sequence[Any]], list[Any]]
    """Greedy completions of prompts by the current policy (``Trainer.complete``)."""
    train_prompts: Sequence[Any] = ()
    eval_prompts: Sequence[Any] = ()
    config: Any = None
    """The run's :class:`~trustgrpo.config.Config` (data columns, sandbox, source path)."""
    tokenizer: Any = None
    """The policy's tokenizer (for held-out prompt files with a chat template)."""


@dataclass
class Context:
    """What every detector knows about the run."""

    components: tuple[ComponentInfo, ...]
    seed: int = 0
    max_evidence: int = 16
    live: Live | None = None
    source: str = ""
    """Path of the run file (relative monitor files are looked up next to it)."""
    language: bool = True
    """Completions are text. False for control runs, whose "completions" are action
    sequences and whose lengths are episode lengths (often the return itself): length bias
    and n-gram repetition do not apply there."""
    base: Path = field(default_factory=Path.cwd)


class Detector:
    """Base class: no-op hooks."""

    name: ClassVar[str] = ""
    live: ClassVar[bool] = False
    """True when the detector needs the running trainer (not recomputable offline)."""

    def __init__(self, cfg: Any, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx

    @classmethod
    def active(cls, cfg: Any, ctx: Context) -> bool:
        """Whether this detector has anything to do in this run."""
        return bool(cfg.enabled) and (not cls.live or ctx.live is not None)

    def on_rewards(self, data: StepData) -> list[Finding]:
        """The step's reward events (before the update)."""
        return []

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> list[Finding]:
        """The step's scalars (after the update)."""
        return []

    def evidence(self, refs: Iterable[Ref]) -> list[Ref]:
        """The first ``max_evidence`` refs."""
        out: list[Ref] = []
        for r in refs:
            if len(out) >= self.ctx.max_evidence:
                break
            out.append(r)
        return out


class Windows(Generic[T]):
    """Per-step summaries: the first ``size`` steps seen (the reference, frozen once full)
    and the last ``size`` steps (the current window).

    ``part``: a step's numbers to sum; ``total`` is then their sum over the current window,
    kept as steps come and go (exact for the counts, integer lengths and half-integer ranks
    detectors sum). Arrays that gain rows (a category seen for the first time) are padded
    with zeros.
    """

    def __init__(self, size: int, part: Callable[[T], np.ndarray] | None = None) -> None:
        self.size = size
        self.reference: list[T] = []
        self.current: deque[T] = deque(maxlen=size)
        self.steps = 0
        self._frozen: dict[str, Any] = {}
        self._part = part
        self.total: np.ndarray = np.zeros(0)
        """Σ ``part(step)`` over the current window (empty before the first step)."""

    def on_reference(self, key: str, fn: Callable[[list[T]], R]) -> R:
        """``fn(reference)``; computed once when the reference window is full (it does not
        change after that), on every call before."""
        if len(self.reference) < self.size:
            return fn(self.reference)
        if key not in self._frozen:
            self._frozen[key] = fn(self.reference)
        return self._frozen[key]

    def add(self, item: T) -> None:
        self.steps += 1
        if len(self.reference) < self.size:
            self.reference.append(item)
        if self._part is not None:
            self.total = padded_sum(self.total, self._part(item))
            if len(self.current) == self.size:  # the oldest step leaves the window
                self.total = padded_sum(self.total, -self._part(self.current[0]))
        self.current.append(item)

    @property
    def full(self) -> bool:
        """The current window is full."""
        return len(self.current) == self.size

    @property
    def disjoint(self) -> bool:
        """Reference and current windows are both full and share no step."""
        return self.steps >= 2 * self.size


def padded_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b``; when one has more rows, the other counts as zero there."""
    if a.shape == b.shape:
        return a + b
    if not a.size:
        return b.copy()
    out = np.zeros((max(len(a), len(b)), *a.shape[1:]), dtype=np.result_type(a, b))
    out[: len(a)] += a
    out[: len(b)] += b
    return out
