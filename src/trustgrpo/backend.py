"""The seam between the one GRPO trainer and the kind of policy it trains.

The trainer (``trustgrpo.trainer``) owns the loop, the advantage, the clipped-surrogate
update, the optimiser, checkpoints, callbacks and the ledger. A backend owns what depends on
the policy::

    rollout(step)            -> Batch        a step's samples, as sequences with a loss mask
    verify(batch)            -> RewardResult typed outcomes per sample and the rewards
    logprobs(model, batch, rows)             (B, T) log-probs of what was sampled, entropy
    after_update(batch)                      state that follows the update (obs statistics)
    evaluate() / complete(prompts)           held-out evaluation
    save(dir) / load(dir)                    weights in a checkpoint directory

Two backends exist: language models (:mod:`trustgrpo.policy.lm_backend`: a sequence is a
completion, a position a token) and Gymnasium control (:mod:`trustgrpo.policy.control_backend`:
a sequence is an episode, a position an action, and the environment is the verifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.compose import Reward, RewardResult


@dataclass
class Batch:
    """One step's rollout: B samples (group by group), each a sequence of up to T positions."""

    samples: list[Sample]
    """What the verifiers score and the ledger records."""
    mask: torch.Tensor
    """``(B, T)`` 1 on positions the policy chose (tokens or actions), 0 on padding."""
    truncated: torch.Tensor
    """``(B,)`` True where the sequence was cut (``max_new_tokens``, or a time limit)."""
    data: Any
    """The backend's own record (token ids, or observations and raw actions)."""
    step_rewards: np.ndarray | None = None
    """``(B, T)`` reward of each position (control runs: for process supervision)."""
    terminated: np.ndarray | None = None
    """``(B,)`` episodes that ended in a terminal state (control runs)."""


class Backend(Protocol):
    """What the trainer needs from a kind of policy (see the module docstring)."""

    @property
    def model(self) -> nn.Module:
        """The policy being trained."""
        ...

    reward: Reward
    train_prompts: list[Any]
    eval_prompts: list[Any]
    max_length: int
    """Longest possible sequence (``max_new_tokens``, or the time limit): Dr. GRPO's constant."""

    def rollout(self, step: int) -> Batch:
        """Sample the step's groups with a generator seeded from the run seed and ``step``."""
        ...

    def verify(self, batch: Batch) -> RewardResult:
        """Score every sample."""
        ...

    def logprobs(
        self, model: nn.Module, batch: Batch, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(b, T)`` log-probabilities under ``model`` of the sampled positions of ``rows``
        (all samples when None), and the mean entropy over them."""
        ...

    def reference(self) -> nn.Module:
        """A frozen copy of the initial policy (for the KL term)."""
        ...

    def after_update(self, batch: Batch) -> None:
        """Update state that must not change between rollout and update."""
        ...

    def step_metrics(self, batch: Batch) -> dict[str, float]:
        """Lengths and truncation of the step's sequences."""
        ...

    def evaluate(
        self, prompts: Sequence[Any] | None = None, batch_size: int = 128
    ) -> dict[str, float]:
        """Held-out metrics (``eval/...``); empty when there is nothing to evaluate."""
        ...

    def complete(self, prompts: Sequence[Any], batch_size: int = 128) -> list[Sample]:
        """Greedy samples for ``prompts``."""
        ...

    def self_test(self, n: int) -> None:
        """Check the verifiers before training; raise ``VerifierError`` when one fails."""
        ...

    def save(self, directory: Path) -> None:
        """Write the weights (``model.safetensors``) and what loads them."""
        ...

    def load(self, directory: Path) -> None:
        """Load weights written by :meth:`save` into the model."""
        ...

    def state(self) -> dict[str, Any]:
        """Counters kept in ``trainer_state.json`` (restored by :meth:`restore`)."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Package versions, model and data (or environment) digests for ``run_started``."""
        ...

    def close(self) -> None:
        """Release environments and verifier resources."""
        ...


def step_seed(seed: int, step: int) -> int:
    """The seed of step ``step``'s sampling generator (a function of the run seed only)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def make_backend(config: Any) -> Backend:
    """The backend for a run file: control when ``[env]`` names an environment."""
    if config.is_control:
        from trustgrpo.policy.control_backend import ControlBackend

        return ControlBackend(config)
    from trustgrpo.policy.lm_backend import LMBackend

    return LMBackend(config)


__all__ = ["Backend", "Batch", "make_backend", "step_seed"]
