"""The statistics behind the detectors, on hand-built cases and against scipy."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from trustgrpo.advantage import zero_variance_groups
from trustgrpo.monitors import _stats
from trustgrpo.monitors._stats import (
    centered_ranks,
    fisher_greater,
    holm,
    length_share,
    pooled_rho,
    repeat_rate,
    within_group_rank_sums,
    zero_variance,
)


@pytest.mark.parametrize("module", [_stats])
def test_doctests(module: object) -> None:
    failures, _ = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert failures == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=12))
def test_centered_ranks_match_scipy_average_ranks(values: list[int]) -> None:
    x = np.array([values], dtype=float)
    expected = stats.rankdata(values) - (len(values) + 1) / 2
    assert np.allclose(centered_ranks(x)[0], expected)


def test_centered_ranks_leave_nan_out() -> None:
    x = np.array([[5.0, np.nan, 1.0, 3.0]])
    assert centered_ranks(x).tolist() == [[1.0, 0.0, -1.0, 0.0]]


def test_one_group_gives_scipy_spearman() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(1, 6, 16).astype(float)
    y = x + rng.normal(0, 1, 16)
    sxy, sxx, syy, n = within_group_rank_sums(x, y, np.zeros(16, dtype=int))
    assert n == 16
    assert pooled_rho(sxy, sxx, syy) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_pooled_rho_ignores_between_group_differences() -> None:
    """Long prompts have long, well-rewarded completions, but within each prompt length and
    reward are unrelated: the stratified correlation is 0 (a pooled one would not be)."""
    group = np.repeat(np.arange(2), 4)
    lengths = np.array([1, 2, 3, 4, 11, 12, 13, 14], dtype=float)
    rewards = np.array([0, 1, 1, 0, 5, 6, 6, 5], dtype=float)
    assert stats.spearmanr(lengths, rewards).statistic > 0.7
    sxy, sxx, syy, _ = within_group_rank_sums(lengths, rewards, group)
    assert pooled_rho(sxy, sxx, syy) == pytest.approx(0.0)


def test_groups_where_nothing_varies_are_left_out() -> None:
    group = np.repeat(np.arange(3), 2)
    lengths = np.array([1, 2, 5, 5, 1, 2], dtype=float)
    rewards = np.array([0, 1, 0, 1, 1, 1], dtype=float)
    sxy, sxx, syy, n = within_group_rank_sums(lengths, rewards, group)
    assert n == 2 and pooled_rho(sxy, sxx, syy) == pytest.approx(1.0)
    masked = rewards.copy()
    masked[1] = np.nan
    assert within_group_rank_sums(lengths, masked, group)[3] == 0


def test_length_share_is_zero_when_lengths_do_not_move() -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 10, 400).astype(float)
    before = (rng.random(400) < 0.3).astype(float)
    after = (rng.random(400) < 0.7).astype(float)
    gain, share = length_share(lengths, before, lengths, after)
    assert gain == pytest.approx(after.mean() - before.mean())
    assert share == pytest.approx(0.0, abs=0.05)


def test_length_share_with_many_lengths_uses_quantile_buckets() -> None:
    rng = np.random.default_rng(2)
    ref = rng.uniform(10, 100, 500)
    cur = rng.uniform(50, 300, 500)
    gain, share = length_share(ref, ref / 300, cur, cur / 300)
    assert gain > 0.3 and share > 0.9


def test_length_share_without_gain_is_nan() -> None:
    x = np.array([1.0, 2.0])
    assert math.isnan(length_share(x, np.array([1.0, 1.0]), x, np.array([0.0, 1.0]))[1])


def test_fisher_greater_matches_scipy() -> None:
    expected = stats.fisher_exact([[12, 8], [3, 17]], alternative="greater").pvalue
    assert fisher_greater(12, 20, 3, 20) == pytest.approx(expected)
    assert fisher_greater(3, 20, 12, 20) > 0.99


def test_holm_by_hand() -> None:
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.5, 0.001]) == [0.5, 0.002]
    assert holm([]) == []


def test_repeat_rate() -> None:
    assert repeat_rate("a b a b a b", 2) == pytest.approx(1 - 2 / 5)
    assert repeat_rate("0101010101", 2) == pytest.approx(1 - 2 / 9)  # characters
    assert repeat_rate("a b c", 3) is None


def test_zero_variance_agrees_with_the_trainer() -> None:
    rng = np.random.default_rng(3)
    rewards = rng.integers(0, 2, 64).astype(float)
    rewards[:8] = 1.0
    rewards[8:16] = np.nan
    rewards[16] = 0.0
    rewards[17:24] = np.nan  # one scored sample: no variance
    flat, first = zero_variance(rewards, np.repeat(np.arange(8), 8))
    assert flat.tolist() == zero_variance_groups(rewards, 8).tolist()
    assert first.tolist() == list(range(0, 64, 8))


def test_window_totals_follow_the_current_window() -> None:
    """A window's running total equals the sum of its current steps, padded when a step
    brings new rows (a category seen for the first time)."""
    from trustgrpo.monitors._base import Windows

    w: Windows[np.ndarray] = Windows(3, np.asarray)
    steps = [np.array([1, 2]), np.array([3, 4, 5]), np.array([6]), np.array([7, 8, 9, 10])]
    for k, x in enumerate(steps):
        w.add(x)
        want = np.zeros(max(len(s) for s in steps[: k + 1]), dtype=int)
        for s in steps[max(0, k - 2) : k + 1]:
            want[: len(s)] += s
        assert w.total[: len(want)].tolist() == want.tolist()
        assert not w.total[len(want) :].any()
