"""Composition: weights, gates, shaping, the failure policy and its effect on advantages."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from trustgrpo.advantage import group_advantages
from trustgrpo.config import Config, RewardConfig, VerifierSpec
from trustgrpo.errors import ConfigError
from trustgrpo.verifiers import (
    FormatVerifier,
    FunctionVerifier,
    LengthPenalty,
    NumericVerifier,
    Outcome,
    Sample,
    build_reward,
)
from trustgrpo.verifiers.compose import Component, FailurePolicy, Reward


def s(completion: str, reference: str = "4", num_tokens: int = 0) -> Sample:
    return Sample("p", 0, 0, "2+2=", completion, reference, num_tokens=num_tokens)


def reward(*components: Component, **policy: Any) -> Reward:
    return Reward(list(components), FailurePolicy(**policy))


GATE = Component(FormatVerifier(name="fmt"), weight=0.2, role="gate")
ACC = Component(NumericVerifier(name="acc", extract="answer_tag"), weight=1.0, role="reward")
LEN = Component(LengthPenalty(name="len", max_length=10, buffer=4), weight=0.5, role="shaping")


@pytest.mark.parametrize(
    ("completion", "tokens", "expected"),
    [
        ("<think>x</think><answer>4</answer>", 0, 0.2 + 1.0),  # gate passes, right answer
        ("<think>x</think><answer>5</answer>", 0, 0.2 + 0.0),  # gate passes, wrong answer
        ("<answer>4</answer>", 0, 0.0),  # right answer, bad format: accuracy counts 0
        ("<think>x</think><answer>4</answer>", 8, 0.2 + 1.0 - 0.5 * 0.5),  # shaping added
        ("<answer>4</answer>", 12, 0.0 - 0.5),  # shaping added even when the gate fails
    ],
)
def test_gate_weights_and_shaping(completion: str, tokens: int, expected: float) -> None:
    result = reward(GATE, ACC, LEN).score([s(completion, num_tokens=tokens)])
    assert result.rewards[0] == pytest.approx(expected)
    assert [o.verifier for o in result.outcomes[0]] == [GATE.id, ACC.id, LEN.id]


def test_every_component_outcome_is_kept_and_counted() -> None:
    r = reward(GATE, ACC)
    result = r.score(
        [s("<think>x</think><answer>4</answer>"), s("<answer>4</answer>"), s("<think></think>")]
    )
    assert [[o.status for o in row] for row in result.outcomes] == [
        ["correct", "correct"],
        ["incorrect", "correct"],  # still run and recorded when the gate fails
        ["incorrect", "incorrect"],
    ]
    assert result.counts["fmt/correct"] == 1 and result.counts["fmt/incorrect"] == 2
    assert result.counts["acc/correct"] == 2 and result.counts["acc/error"] == 0
    assert result.counts["gate_failed"] == 2 and result.counts["masked"] == 0
    assert result.rewards.dtype == np.float64


def _fails(status: str) -> Any:
    def f(completions: list[str], **kw: Any) -> list[float | None]:
        if status == "error":
            raise RuntimeError("grader down")
        return [None] * len(completions)

    return f


@pytest.mark.parametrize("status", ["error", "abstain"])
def test_failures_are_masked_by_default_and_counted(status: str) -> None:
    bad = Component(FunctionVerifier(_fails(status), name="flaky"))
    result = reward(bad).score([s("4"), s("5")])
    assert np.isnan(result.rewards).all()
    assert result.counts[f"flaky/{status}"] == 2 and result.counts["masked"] == 2


def test_failures_scored_as_a_configured_value_are_still_counted() -> None:
    bad = Component(FunctionVerifier(_fails("error"), name="flaky"), weight=2.0)
    result = reward(bad, ACC, on_error=-1.0).score([s("<answer>4</answer>")])
    assert result.rewards.tolist() == [2.0 * -1.0 + 1.0]
    assert result.counts["flaky/error"] == 1 and result.counts["masked"] == 0


def test_a_failed_gate_makes_errors_in_reward_components_irrelevant() -> None:
    bad = Component(FunctionVerifier(_fails("error"), name="flaky"))
    r = reward(GATE, bad)
    # Gate fails: the reward part is 0 whatever the erroring component would have said.
    assert r.score([s("no format")]).rewards.tolist() == [0.0]
    # Gate passes: the error matters, and masks the sample.
    assert math.isnan(r.score([s("<think>x</think><answer>4</answer>")]).rewards[0])


def test_an_erroring_gate_masks_or_takes_the_configured_value() -> None:
    gate = Component(FunctionVerifier(_fails("error"), name="g"), weight=0.5, role="gate")
    assert math.isnan(reward(gate, ACC).score([s("<answer>4</answer>")]).rewards[0])
    scored = reward(gate, ACC, on_error=0.0).score([s("<answer>4</answer>")])
    assert scored.rewards.tolist() == [0.0]  # not correct, so accuracy does not count


def test_combine_is_the_documented_formula() -> None:
    r = reward(GATE, ACC, LEN, on_timeout=-0.5)

    def o(c: Component, status: str, score: float | None) -> Outcome:
        return Outcome(score, status, c.id)  # type: ignore[arg-type]

    rows = [
        [o(GATE, "correct", 1.0), o(ACC, "timeout", None), o(LEN, "correct", 0.0)],
        [o(GATE, "correct", 1.0), o(ACC, "abstain", None), o(LEN, "correct", 0.0)],
    ]
    result = r.combine(rows)
    assert result.rewards[0] == pytest.approx(0.2 + 1.0 * -0.5)
    assert math.isnan(result.rewards[1])
    assert result.counts["acc/timeout"] == 1 and result.counts["acc/abstain"] == 1


def test_masked_samples_get_zero_advantage_and_leave_the_group_statistics() -> None:
    def f(completions: list[str], **kw: Any) -> list[float | None]:
        return [None if c == "?" else float(c == "4") for c in completions]

    r = reward(Component(FunctionVerifier(f)))
    rewards = r.score([s(c) for c in ["4", "?", "5", "5"]]).rewards
    adv = group_advantages(rewards, 4, scale="none")
    assert adv[1] == 0.0  # the masked sample
    # mean over the three scored samples only: 1/3
    np.testing.assert_allclose(adv[[0, 2, 3]], [2 / 3, -1 / 3, -1 / 3])


def test_empty_and_shaping_only_compositions_are_refused() -> None:
    with pytest.raises(ConfigError, match="empty reward"):
        Reward([])
    with pytest.raises(ConfigError, match="shaping alone verifies nothing"):
        Reward([LEN])
    with pytest.raises(ConfigError, match="'acc' is used twice"):
        Reward([ACC, ACC])
    with pytest.raises(ConfigError, match="at least one"):
        build_reward(Config())


def test_build_reward_from_a_config_and_its_inventory() -> None:
    cfg = Config(
        verifiers=(
            VerifierSpec("format", weight=0.1, role="gate"),
            VerifierSpec("numeric", name="acc", params={"extract": "answer_tag"}),
            VerifierSpec("overlong", weight=0.5, role="shaping", params={"max_length": 32}),
        ),
        reward=RewardConfig(on_error=0.0, on_timeout="mask"),
    )
    r = build_reward(cfg)
    assert [(c.name, c.role, c.weight) for c in r.components] == [
        ("format", "gate", 0.1),
        ("acc", "reward", 1.0),
        ("overlong", "shaping", 0.5),
    ]
    assert r.policy == FailurePolicy(on_error=0.0, on_timeout="mask", on_abstain="mask")
    inv = r.inventory()
    assert [e["id"] for e in inv] == [c.id for c in r.components]
    assert inv[1]["type"] == "numeric" and inv[1]["params"]["extract"] == "answer_tag"
    assert len(inv[1]["source_hash"]) == 64 and inv[1]["role"] == "reward"
    assert r.score([s("<think>x</think><answer>4</answer>")]).rewards[0] == pytest.approx(1.1)


def test_score_of_no_samples() -> None:
    result = reward(ACC).score([])
    assert result.outcomes == [] and result.rewards.shape == (0,)
