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
    and the last ``size`` steps (the current window)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reference: list[T] = []
        self.current: deque[T] = deque(maxlen=size)
        self.steps = 0
        self._frozen: dict[str, Any] = {}

    def on_reference(self, key: str, fn: Callable[[list[T]], R]) -> R:
        """``fn(reference)``; computed once when the reference window is full (it does not
        change after that), on every call before."""
        if len(self.reference) < self.size:
            return fn(self.reference)
        if key not in self._frozen:
            self._frozen[key] = fn(self.reference)
        return self._frozen[key]

    def add(self, item: T) -> T | None:
        """Add a step; returns the step that left the current window (None while it fills),
        for detectors that keep running sums."""
        self.steps += 1
        if len(self.reference) < self.size:
            self.reference.append(item)
        gone = self.current[0] if len(self.current) == self.size else None
        self.current.append(item)
        return gone

    @property
    def full(self) -> bool:
        """The current window is full."""
        return len(self.current) == self.size

    @property
    def disjoint(self) -> bool:
        """Reference and current windows are both full and share no step."""
        return self.steps >= 2 * self.size
