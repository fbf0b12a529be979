"""Group-relative advantages against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustgrpo.advantage import (
    EPS,
    group_advantages,
    process_advantages,
    zero_variance_groups,
)

SQRT_THIRD = math.sqrt(1 / 3)


def test_group_scale_matches_hand_computation() -> None:
    adv = group_advantages([1.0, 0.0, 1.0, 0.0], 4, "group")
    expected = 0.5 / (SQRT_THIRD + EPS)
    np.testing.assert_allclose(adv, [expected, -expected, expected, -expected], rtol=1e-12)


def test_missing_rewards_are_excluded_and_get_zero() -> None:
    adv = group_advantages([1.0, math.nan, 0.0, 0.0], 4, "group")
    # scored: [1, 0, 0]; mean 1/3; sample var ((2/3)^2 + 2 (1/3)^2) / 2 = 1/3
    s = SQRT_THIRD + EPS
    np.testing.assert_allclose(adv, [(2 / 3) / s, 0.0, (-1 / 3) / s, (-1 / 3) / s], rtol=1e-12)


def test_zero_variance_group_has_zero_advantage() -> None:
    adv = group_advantages([1.0, 1.0, 1.0, 0.0, 1.0, 0.0], 3, "group")
    assert adv[:3].tolist() == [0.0, 0.0, 0.0]
    assert adv[3] < 0 < adv[4]


def test_single_scored_sample_gets_zero() -> None:
    assert group_advantages([math.nan, 5.0, math.nan], 3).tolist() == [0.0, 0.0, 0.0]


def test_batch_scale() -> None:
    adv = group_advantages([1.0, 0.0, 1.0, 1.0], 2, "batch")
    # batch std of [1, 0, 1, 1] (ddof 1) = 0.5
    np.testing.assert_allclose(adv, [0.5 / (0.5 + EPS), -0.5 / (0.5 + EPS), 0.0, 0.0])


def test_none_scale_is_dr_grpo_centering() -> None:
    assert group_advantages([3.0, 1.0, 2.0, 2.0], 2, "none").tolist() == [1.0, -1.0, 0.0, 0.0]


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="group_size"):
        group_advantages([1.0, 2.0, 3.0], 2)
    with pytest.raises(ValueError, match="scale"):
        group_advantages([1.0, 2.0], 2, "grup")  # type: ignore[arg-type]


def test_zero_variance_groups() -> None:
    r = np.array([1.0, 1.0, 0.0, 1.0, math.nan, 2.0])
    assert zero_variance_groups(r, 2).tolist() == [True, False, True]


def test_process_supervision_reward_to_go() -> None:
    # two episodes: rewards-to-go [3, 2, 1] and [1, 1]; at t=0 values 3,1; t=1 values 2,1
    out = process_advantages([np.array([1.0, 1.0, 1.0]), np.array([0.0, 1.0])], scale="none")
    np.testing.assert_allclose(out[0], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(out[1], [-1.0, -0.5])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 6).flatmap(
        lambda g: st.tuples(
            st.just(g),
            st.lists(
                st.one_of(st.floats(-5, 5), st.just(math.nan)), min_size=g, max_size=g * 4
            ).filter(lambda x: len(x) % g == 0),
        )
    )
)
def test_properties(args: tuple[int, list[float]]) -> None:
    g, rewards = args
    adv = group_advantages(rewards, g, "none")
    r = np.asarray(rewards).reshape(-1, g)
    a = adv.reshape(-1, g)
    assert np.all(np.isfinite(a))
    assert np.all(a[np.isnan(r)] == 0)
    # centred: advantages of scored samples sum to zero per group
    np.testing.assert_allclose(np.where(np.isnan(r), 0, a).sum(axis=1), 0, atol=1e-9)


def test_process_supervision_terminated_and_discounted() -> None:
    """A terminated episode's reward-to-go is 0 after its end (it stays in the comparison);
    a truncated one leaves it. gamma discounts the reward-to-go."""
    from trustgrpo.advantage import process_advantages_padded, reward_to_go

    np.testing.assert_allclose(reward_to_go(np.array([[1.0, 2.0, 4.0]]), 0.5), [[3.0, 4.0, 4.0]])
    rewards = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    term = process_advantages_padded(rewards, [3, 1], 2, [False, True], scale="none")
    # t=0: 3 vs 1; t=1: 2 vs 0 (terminated); t=2: 1 vs 0
    np.testing.assert_allclose(term, [[1.0, 1.0, 0.5], [-1.0, 0.0, 0.0]])
    trunc = process_advantages_padded(rewards, [3, 1], 2, [False, False], scale="none")
    np.testing.assert_allclose(trunc, [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    # groups are independent; the one-group helper agrees with the batched one
    both = process_advantages_padded(np.vstack([rewards, rewards]), [3, 1, 3, 1], 2, None, "none")
    np.testing.assert_allclose(both, np.vstack([trunc, trunc]))
    one = process_advantages([np.ones(3), np.ones(1)], "none", terminated=[False, True])
    np.testing.assert_allclose(one[0], term[0])
    np.testing.assert_allclose(one[1], term[1, :1])
