"""Hooks into the training loop (the seam for the ledger, monitors and integrations).

The trainer calls, in order::

    on_train_start(run)                         once, before the first step (also on resume)
    per step:
        on_step_rewards(run, batch)             after verify + advantage: the step's reward events
        on_step_end(run, batch)                 after the update; batch.metrics is filled.
                                                Return False to stop training (like SB3).
        on_checkpoint(run, info)                after a checkpoint was saved
    on_train_end(run, result)                   once, also when training stopped early

Callbacks never subclass the trainer; they receive a read-only ``RunInfo`` and ``StepBatch``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustgrpo.verifiers.base import Outcome, Sample


@dataclass
class RunInfo:
    """What a callback may know about the run."""

    run_dir: Path
    """The run directory (``runs/<name>``)."""
    config: Mapping[str, Any]
    """The resolved run configuration as plain data (what ``run.toml`` holds)."""
    start_step: int
    """0 for a new run; the step resumed from otherwise."""
    resumed: bool
    """True when this run continues an earlier one."""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    """Code version, package versions, model and data digests, verifier inventory."""


@dataclass
class StepBatch:
    """Everything one training step produced, for recording and monitoring."""

    step: int
    """1-based index of the step."""
    samples: Sequence[Sample]
    """All samples of the step, group by group."""
    outcomes: Sequence[Sequence[Outcome]]
    """Per sample, the outcome of each verifier component (in the run file's order)."""
    rewards: np.ndarray
    """Final reward per sample (float64); NaN where the sample is masked."""
    advantages: np.ndarray
    """Advantage per sample (float64); 0 where masked."""
    group_size: int
    """G: samples per group."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Step scalars (reward mean, loss, KL, timings...); complete at ``on_step_end``."""
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Sample index -> the reviewer's correction applied to its reward (``override``,
    ``event``, ``reward``, ``reviewer``, ``reason``); ``rewards`` already holds the corrected
    value, the outcomes still hold what the verifiers said."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint the trainer has just written."""

    step: int
    path: Path
    weights_sha256: str
    """SHA-256 of the safetensors weights file."""


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_train_start(self, run: RunInfo) -> None:
        """Called once before the first step."""

    def on_step_rewards(self, run: RunInfo, batch: StepBatch) -> None:
        """Called after the step's rewards and advantages are known, before the update."""

    def on_step_end(self, run: RunInfo, batch: StepBatch) -> bool | None:
        """Called after the update; return False to stop training."""
        return None

    def on_checkpoint(self, run: RunInfo, info: CheckpointInfo) -> None:
        """Called after a checkpoint is written."""

    def on_train_end(self, run: RunInfo, result: Mapping[str, Any]) -> None:
        """Called once at the end (also after an early stop)."""
