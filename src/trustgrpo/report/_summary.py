"""What the report knows about a run: :class:`RunSummary`, filled by
:func:`trustgrpo.report._collect.collect` in one pass over the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trustgrpo.report._review import Agreement, Decision, Review

STATUSES = ("correct", "incorrect", "abstain", "error", "timeout")


@dataclass
class Component:
    """One verifier of the reward, as recorded in the verifier inventory."""

    id: str
    """``name@version``: the version is a hash of the verifier's code and parameters."""
    name: str
    type: str = ""
    version: str = ""
    role: str = "reward"
    weight: float | None = None
    source_hash: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    """What the verifier describes beyond the standard keys (a code verifier's sandbox)."""
    recorded_in: int = 0
    """Index of the run_started / run_resumed event whose inventory lists it (-1: seen only
    in outcomes)."""

    @property
    def judges(self) -> bool:
        return self.role != "shaping"


@dataclass
class StepRow:
    """One training step, from its reward events and its step event."""

    step: int
    samples: int = 0
    reward_mean: float | None = None
    """Mean final reward over the step's unmasked samples."""
    success: float | None = None
    """Share of the step's samples that every judging component scored correct."""
    mean_tokens: float | None = None
    scores: list[float | None] = field(default_factory=list)
    """Mean score per component (over scored outcomes), in :attr:`RunSummary.components`
    order."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """The step event's metrics (empty when the step has no step event)."""


@dataclass
class AlertRow:
    """One ``alert`` event, with the decision taken on it."""

    index: int
    step: int | None
    detector: str
    check: str
    severity: str
    statistic: float | None
    threshold: float | None
    action: str
    message: str
    evidence: list[Any]
    ts: int
    decision: Decision | None = None
    excerpt: str | None = None
    """The completion of the first reward event in the evidence (untrusted text)."""
    excerpt_event: int | None = None


@dataclass
class RunSummary:
    """Everything the report shows, computed from the ledger."""

    location: str
    origin: str
    events: int
    kinds: dict[str, int]
    first_ts: int | None
    last_ts: int | None
    config: dict[str, Any]
    """The resolved run configuration recorded in ``run_started``."""
    provenance: dict[str, Any]
    sessions: list[tuple[int, str, int, int]]
    """``(event index, kind, start step, ts)`` of every run_started / run_resumed."""
    components: list[Component]
    steps: list[StepRow]
    reward_events: int
    """All reward events, superseded ones included."""
    samples: int
    """Reward events that count (not superseded)."""
    masked: int
    truncated: int
    tokens: int
    groups: int
    outcome_counts: list[dict[str, int]]
    """Per component, outcomes per status (counted samples)."""
    lengths: np.ndarray
    """Generated tokens per counted sample (for the length-vs-reward plot)."""
    rewards: np.ndarray
    """Final reward per counted sample; NaN where masked."""
    sample_steps: np.ndarray
    checkpoints: list[dict[str, Any]]
    """``checkpoint`` events: index, step, weights_sha256, path."""
    finished: dict[str, Any] | None
    """The last ``run_finished`` result."""
    alerts: list[AlertRow]
    review: Review
    agreement: Agreement
    changes: list[str] = field(default_factory=list)
    """Configuration values and verifiers that a resumed session changed."""
    superseded: int = 0
    """Reward events of a step that a later session redid (not counted)."""
    eval_keys: list[str] = field(default_factory=list)
    """``eval/...`` metrics recorded on some step."""
    phase_seconds: dict[str, float] = field(default_factory=dict)
    """Sum over counted steps of each ``time/<phase>`` metric."""
    replay_pick: list[int] = field(default_factory=list)
    """Reward events drawn for the replay sample (see :func:`collect`)."""

    @property
    def judging(self) -> list[int]:
        return [i for i, c in enumerate(self.components) if c.judges]

    @property
    def eval_rows(self) -> list[StepRow]:
        return [r for r in self.steps if any(k in r.metrics for k in self.eval_keys)]
