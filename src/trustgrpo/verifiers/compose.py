"""The reward of a run: its verifiers, weighted and gated, and the failure policy.

A :class:`Reward` holds the run file's ``[[verifiers]]`` as :class:`Component` objects, in
file order. :meth:`Reward.score` runs every component on every sample (all outcomes are
kept and recorded, one per component) and combines them into one reward per sample.

How the reward of one sample is computed
----------------------------------------
Each component ``c`` (weight ``w_c``) contributes a value ``v_c``:

* a scored outcome (``correct`` / ``incorrect``) contributes its ``score``;
* an ``error``, ``timeout`` or ``abstain`` outcome contributes the number the run file sets
  in ``[reward] on_error`` / ``on_timeout`` / ``on_abstain``; if that is ``"mask"`` (the
  default), the sample is **masked**: its reward is NaN, it is left out of its group's
  advantage statistics and gets advantage 0.

The gate passes when every ``gate`` component's outcome is ``correct``. Then::

    reward = Σ_gate w·v  +  [gate passes] · Σ_reward w·v  +  Σ_shaping w·v

So a gate's own weight is added when it passes (its score is 1), a gate with weight 0 is a
pure condition, and when it fails the ``reward`` components count 0 (they are still run and
recorded, and an error among them then masks nothing, since it cannot change the reward).
``shaping`` components (length penalties) are always added. A sample is masked when any
component whose value enters the sum is masked: any gate or shaping component, and the
reward components when the gate passes (or when there is no gate).

Every outcome is counted per component and status in :attr:`RewardResult.counts`
(``"<name>/<status>"``), with ``masked`` and ``gate_failed`` totals: the trainer logs them as
step metrics, so failures are visible even when they are scored as a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trustgrpo.errors import ConfigError
from trustgrpo.verifiers.base import (
    STATUSES,
    Outcome,
    Sample,
    Verifier,
    jsonable,
    safe_score,
    source_hash,
    verifier_id,
)

if TYPE_CHECKING:
    from trustgrpo.verifiers.selftest import Mismatch, SelfTestReport

Role = Literal["reward", "gate", "shaping"]
Policy = float | Literal["mask"]


@dataclass(frozen=True)
class FailurePolicy:
    """What an unscored outcome is worth: ``"mask"`` or a number, per status."""

    on_error: Policy = "mask"
    on_timeout: Policy = "mask"
    on_abstain: Policy = "mask"

    def value(self, status: str) -> Policy:
        """The policy for an unscored status."""
        return {"error": self.on_error, "timeout": self.on_timeout, "abstain": self.on_abstain}[
            status
        ]

    @classmethod
    def from_config(cls, reward: Any) -> FailurePolicy:
        """From a :class:`~trustgrpo.config.RewardConfig`."""

        def conv(v: Any) -> Policy:
            return "mask" if v == "mask" else float(v)

        return cls(conv(reward.on_error), conv(reward.on_timeout), conv(reward.on_abstain))


@dataclass(frozen=True)
class Component:
    """One ``[[verifiers]]`` entry: a verifier, its weight and its role."""

    verifier: Verifier
    weight: float = 1.0
    role: Role = "reward"
    type: str = ""
    """Registered type (or ``package.module:function``) it was built from."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Parameters as given in the run file."""

    @property
    def name(self) -> str:
        """The verifier's display name."""
        return self.verifier.name

    @property
    def id(self) -> str:
        """``name@version``."""
        return verifier_id(self.verifier)


@dataclass
class RewardResult:
    """The scores of one batch."""

    outcomes: list[list[Outcome]]
    """Per sample, one outcome per component in run-file order."""
    rewards: np.ndarray
    """Final reward per sample (float64); NaN where the failure policy masks the sample."""
    counts: dict[str, int]
    """``"<name>/<status>"`` for every component and status, plus ``masked`` and
    ``gate_failed``."""


class Reward:
    """The weighted, gated sum of a run's verifiers (see the module docstring)."""

    def __init__(
        self, components: Sequence[Component], policy: FailurePolicy | None = None
    ) -> None:
        comps = tuple(components)
        if not comps:
            raise ConfigError(["verifiers: expected at least one verifier (an empty reward)"])
        if all(c.role == "shaping" for c in comps):
            raise ConfigError(
                [
                    "verifiers: expected at least one verifier with role 'reward' or 'gate' "
                    "(shaping alone verifies nothing)"
                ]
            )
        names = [c.name for c in comps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError([f"verifiers: names must be distinct, {dup[0]!r} is used twice"])
        for i, c in enumerate(comps):
            if not math.isfinite(c.weight):
                raise ConfigError(
                    [f"verifiers[{i}].weight: expected a finite number, got {c.weight!r}"]
                )
        self.components = comps
        self.policy = policy or FailurePolicy()

    # ------------------------------------------------------------------ scoring

    def score(self, samples: Sequence[Sample]) -> RewardResult:
        """Run every component on ``samples`` and combine the outcomes."""
        per_component = [safe_score(c.verifier, samples) for c in self.components]
        outcomes = [list(row) for row in zip(*per_component, strict=True)] if samples else []
        return self.combine(outcomes)

    def combine(self, outcomes: Sequence[Sequence[Outcome]]) -> RewardResult:
        """The rewards and counts for outcomes already computed (pure; see the docstring)."""
        counts = {f"{c.name}/{s}": 0 for c in self.components for s in STATUSES}
        counts["masked"] = 0
        counts["gate_failed"] = 0
        rewards = np.empty(len(outcomes), dtype=np.float64)
        k = len(self.components)
        for i, row in enumerate(outcomes):
            if len(row) != k:
                raise ValueError(f"outcomes[{i}]: expected {k} outcomes, got {len(row)}")
            for c, o in zip(self.components, row, strict=True):
                counts[f"{c.name}/{o.status}"] += 1
            r, gate_ok = self._one(row)
            rewards[i] = r
            counts["masked"] += math.isnan(r)
            counts["gate_failed"] += not gate_ok
        return RewardResult([list(r) for r in outcomes], rewards, counts)

    def _value(self, o: Outcome) -> float:
        if o.score is not None:
            return o.score
        v = self.policy.value(o.status)
        return math.nan if v == "mask" else float(v)

    def _one(self, row: Sequence[Outcome]) -> tuple[float, bool]:
        gate_ok = all(
            o.status == "correct"
            for c, o in zip(self.components, row, strict=True)
            if c.role == "gate"
        )
        total = 0.0
        for c, o in zip(self.components, row, strict=True):
            if c.role == "reward" and not gate_ok:
                continue
            v = self._value(o)
            if math.isnan(v):
                return math.nan, gate_ok
            total += c.weight * v
        return total, gate_ok

    # ------------------------------------------------------------------ ledger

    def inventory(self) -> list[dict[str, Any]]:
        """Per component: name, type, version, id, source hash, weight, role, parameters.

        What a verifier's ``describe()`` says beyond those keys (the code verifier's sandbox
        isolation, say) is kept under ``info``.
        """
        std = ("type", "params", "source_hash", "dependencies")
        out = []
        for c in self.components:
            v = c.verifier
            describe = getattr(v, "describe", None)
            info: dict[str, Any] = dict(describe()) if callable(describe) else {}
            entry = {
                "name": v.name,
                "type": c.type or info.get("type", type(v).__name__),
                "version": v.version,
                "id": c.id,
                "source_hash": info.get("source_hash") or source_hash(v),
                "weight": c.weight,
                "role": c.role,
                "params": info.get("params", dict(c.params)),
                "dependencies": info.get("dependencies", {}),
            }
            extra = {k: x for k, x in info.items() if k not in std}
            if extra:
                entry["info"] = extra
            out.append(jsonable(entry))
        return out

    # ------------------------------------------------------------------ checks

    def self_test(self, samples: Sequence[Sample], *, canaries: bool = True) -> SelfTestReport:
        """Gold answers must be ``correct``, canaries must not: a :class:`SelfTestReport`.

        See :func:`trustgrpo.verifiers.selftest.self_test`.
        """
        from trustgrpo.verifiers.selftest import self_test

        return self_test(self.components, samples, canaries=canaries)

    def rescore(
        self, samples: Sequence[Sample], outcomes: Sequence[Sequence[Outcome]]
    ) -> list[Mismatch]:
        """Score ``samples`` again and list every difference from ``outcomes`` (determinism).

        See :func:`trustgrpo.verifiers.selftest.rescore`.
        """
        from trustgrpo.verifiers.selftest import rescore

        return rescore(self.components, samples, outcomes)

    def close(self) -> None:
        """Release what the verifiers hold (their ``close`` methods, if any)."""
        for c in self.components:
            close = getattr(c.verifier, "close", None)
            if callable(close):
                close()

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.role}:{c.id}×{c.weight:g}" for c in self.components)
        return f"Reward({parts})"


def build_reward(cfg: Any) -> Reward:
    """The :class:`Reward` of a run file: its ``[[verifiers]]`` and ``[reward]`` policy."""
    from trustgrpo.verifiers.registry import build_component

    if not cfg.verifiers:
        raise ConfigError(["verifiers: expected at least one [[verifiers]] table"])
    comps = [
        build_component(spec, cfg, path=f"verifiers[{i}]") for i, spec in enumerate(cfg.verifiers)
    ]
    return Reward(comps, FailurePolicy.from_config(cfg.reward))


__all__ = ["Component", "FailurePolicy", "Reward", "RewardResult", "build_reward"]
