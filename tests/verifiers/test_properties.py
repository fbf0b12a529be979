"""Properties that hold for every input: rewards are finite or masked, never NaN by accident;
and every example in the verifier modules' docstrings runs."""

from __future__ import annotations

import doctest
import importlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustgrpo.verifiers import FunctionVerifier, Outcome, Sample
from trustgrpo.verifiers.base import UNSCORED
from trustgrpo.verifiers.compose import Component, FailurePolicy, Reward

ROLES = ("reward", "gate", "shaping")
policy_value = st.one_of(st.just("mask"), st.floats(-2, 2, allow_nan=False))


def _const(completions: list[str], **kw: Any) -> list[float]:
    return [0.0] * len(completions)


@st.composite
def rewards_and_rows(draw: Any) -> tuple[Reward, list[list[Outcome]]]:
    k = draw(st.integers(1, 4))
    roles = draw(st.lists(st.sampled_from(ROLES), min_size=k, max_size=k))
    if all(r == "shaping" for r in roles):
        roles[0] = "reward"
    weights = draw(st.lists(st.floats(-3, 3, allow_nan=False), min_size=k, max_size=k))
    comps = [
        Component(FunctionVerifier(_const, name=f"v{i}"), w, r)  # type: ignore[arg-type]
        for i, (w, r) in enumerate(zip(weights, roles, strict=True))
    ]
    policy = FailurePolicy(draw(policy_value), draw(policy_value), draw(policy_value))
    status = st.sampled_from(["correct", "incorrect", "abstain", "error", "timeout"])
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        row = []
        for c in comps:
            s = draw(status)
            score = None if s in UNSCORED else draw(st.floats(-1, 1, allow_nan=False))
            row.append(Outcome(score, s, c.id))
        rows.append(row)
    return Reward(comps, policy), rows


@settings(max_examples=300, deadline=None)
@given(rewards_and_rows())
def test_reward_is_finite_or_masked_exactly_by_policy(case: tuple[Reward, list]) -> None:
    reward, rows = case
    result = reward.combine(rows)
    for row, r in zip(rows, result.rewards, strict=True):
        gate_ok = all(
            o.status == "correct"
            for c, o in zip(reward.components, row, strict=True)
            if c.role == "gate"
        )
        counted = [
            o for c, o in zip(reward.components, row, strict=True) if c.role != "reward" or gate_ok
        ]
        must_mask = any(
            o.status in UNSCORED and reward.policy.value(o.status) == "mask" for o in counted
        )
        assert math.isnan(r) == must_mask
        assert math.isnan(r) or math.isfinite(r)
    assert result.counts["masked"] == sum(math.isnan(r) for r in result.rewards)
    assert sum(v for k, v in result.counts.items() if "/" in k) == len(rows) * len(
        reward.components
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.floats(), st.integers(), st.booleans(), st.text()),
        min_size=1,
        max_size=8,
    )
)
def test_whatever_a_function_returns_scores_are_finite_or_absent(values: list[Any]) -> None:
    def f(completions: list[str], **kw: Any) -> list[Any]:
        return values

    samples = [Sample("p", 0, i, "", "x", None) for i in range(len(values))]
    for o in FunctionVerifier(f).score(samples):
        assert o.score is None or math.isfinite(o.score)
        assert (o.score is None) == (o.status in UNSCORED)


MODULES = [
    "base",
    "core",
    "params",
    "extract",
    "exact",
    "numeric",
    "math_answer",
    "regex",
    "json_schema",
    "length",
    "function",
    "selftest",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    mod = importlib.import_module(f"trustgrpo.verifiers.{name}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
