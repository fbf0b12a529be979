"""The statistics behind the detectors: small, pure, vectorised, tested on hand-built cases.

The per-step ones (:func:`group_layout`, :func:`centered_ranks`) run on every training step
and use numpy only; the tests (:func:`fisher_greater`, :func:`welch_greater`) use scipy and
run only once an effect is already large enough to matter, so the common step costs no
scipy call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def group_layout(group: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(row, col, width)``: each sample's group row and position in it, for padding the
    samples of a step into a (groups × width) array."""
    order = np.argsort(group, kind="stable")
    _, inverse, counts = np.unique(group[order], return_inverse=True, return_counts=True)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    row = np.empty(len(group), dtype=np.int64)
    col = np.empty(len(group), dtype=np.int64)
    row[order] = inverse
    col[order] = np.arange(len(group)) - starts[inverse]
    return row, col, int(counts.max()) if len(counts) else 0


def padded(values: np.ndarray, row: np.ndarray, col: np.ndarray, width: int) -> np.ndarray:
    """``values`` laid out as (groups × width), NaN where a group is shorter."""
    out = np.full((int(row.max()) + 1 if len(row) else 0, width), np.nan)
    out[row, col] = values
    return out


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks within each row of a (groups × width) array, minus the row's mean rank.

    NaN entries are left out (their result is 0). Ties get the average rank, as in
    ``scipy.stats.rankdata``. O(width²) per row, meant for group sizes up to about 64.

    >>> centered_ranks(np.array([[3.0, 1.0, 2.0, np.nan]])).tolist()
    [[1.0, -1.0, 0.0, 0.0]]
    """
    valid = ~np.isnan(x)
    a = np.where(valid, x, 0.0)
    vj = valid[:, None, :]
    less = ((a[:, None, :] < a[:, :, None]) & vj).sum(axis=2)
    equal = ((a[:, None, :] == a[:, :, None]) & vj).sum(axis=2)
    ranks = less + (equal + 1) / 2.0
    n = valid.sum(axis=1, keepdims=True)
    return np.where(valid, ranks - (n + 1) / 2.0, 0.0)


def within_group_rank_sums(
    x: np.ndarray, y: np.ndarray, group: np.ndarray
) -> tuple[float, float, float, int]:
    """``(Σ x̃ỹ, Σ x̃², Σ ỹ², n)`` of within-group centred ranks, over the groups in which
    both ``x`` and ``y`` vary (NaN in either leaves the sample out).

    Summed over steps, ``Σx̃ỹ / sqrt(Σx̃² Σỹ²)`` is a Spearman correlation stratified by
    group: it compares completions of the same prompt only, so prompt difficulty (which moves
    both length and reward) cannot create it.
    """
    if not len(x):
        return 0.0, 0.0, 0.0, 0
    row, col, width = group_layout(group)
    bad = np.isnan(x) | np.isnan(y)
    xp = padded(np.where(bad, np.nan, x), row, col, width)
    yp = padded(np.where(bad, np.nan, y), row, col, width)
    rx, ry = centered_ranks(xp), centered_ranks(yp)
    keep = (np.abs(rx).sum(axis=1) > 0) & (np.abs(ry).sum(axis=1) > 0)
    rx, ry = rx[keep], ry[keep]
    n = int((~np.isnan(xp[keep]) & ~np.isnan(yp[keep])).sum())
    return float((rx * ry).sum()), float((rx * rx).sum()), float((ry * ry).sum()), n


def pooled_rho(sxy: float, sxx: float, syy: float) -> float:
    """The correlation of summed centred ranks (0 when either side never varies)."""
    den = math.sqrt(sxx * syy)
    return sxy / den if den > 0 else 0.0


def length_share(
    len_ref: np.ndarray,
    r_ref: np.ndarray,
    len_cur: np.ndarray,
    r_cur: np.ndarray,
    max_buckets: int = 8,
) -> tuple[float, float]:
    """``(total gain, share explained by length)`` of the reward from one window to another.

    A length-only reward model (the mean reward of each length bucket, pooled over both
    windows) predicts a gain from the change in the length distribution alone; its share of
    the actual gain is what length explains (Singhal et al. 2023, arXiv:2310.03716, compare
    reward within length buckets). Lengths with at most 16 distinct values are their own
    buckets; otherwise ``max_buckets`` quantile buckets. The share is NaN when there is no
    gain.

    >>> lr, lc = np.array([1.0, 1, 2, 2]), np.array([2.0, 2, 3, 3])
    >>> [round(x, 3) for x in length_share(lr, lr / 3, lc, lc / 3)]  # reward = length / 3
    [0.333, 1.0]
    """
    ok_r, ok_c = ~np.isnan(r_ref), ~np.isnan(r_cur)
    len_ref, r_ref, len_cur, r_cur = len_ref[ok_r], r_ref[ok_r], len_cur[ok_c], r_cur[ok_c]
    if not len(r_ref) or not len(r_cur):
        return 0.0, math.nan
    total = float(r_cur.mean() - r_ref.mean())
    both = np.concatenate([len_ref, len_cur])
    values = np.unique(both)
    if len(values) <= 16:
        edges = values
        b_ref, b_cur = np.searchsorted(edges, len_ref), np.searchsorted(edges, len_cur)
    else:
        edges = np.unique(np.quantile(both, np.linspace(0, 1, max_buckets + 1)[1:-1]))
        b_ref = np.searchsorted(edges, len_ref, side="right")
        b_cur = np.searchsorted(edges, len_cur, side="right")
    nb = len(edges) + 1
    b_all = np.concatenate([b_ref, b_cur])
    sums = np.bincount(b_all, weights=np.concatenate([r_ref, r_cur]), minlength=nb)
    counts = np.bincount(b_all, minlength=nb)
    means = np.divide(sums, counts, out=np.zeros(nb), where=counts > 0)
    predicted = float(means[b_cur].mean() - means[b_ref].mean())
    if total <= 0:
        return total, math.nan
    return total, predicted / total


def fisher_greater(k1: int, n1: int, k0: int, n0: int) -> float:
    """One-sided Fisher exact p-value that rate ``k1/n1`` exceeds rate ``k0/n0``."""
    table = [[k1, n1 - k1], [k0, n0 - k0]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)


def welch_greater(diff: float, variance: float) -> float:
    """One-sided normal p-value that a difference with this variance is above 0."""
    if variance <= 0:
        return 0.0 if diff > 0 else 1.0
    return float(stats.norm.sf(diff / math.sqrt(variance)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control, any dependence).

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = round(running, 12)
    return out


def repeat_rate(text: str, n: int) -> float | None:
    """Share of a text's n-grams that repeat an earlier one: 1 − distinct / total.

    Units are words, or characters when the text has no spaces. None when the text has
    fewer than ``2n`` units (too short to repeat anything).

    >>> repeat_rate("a b c a b c a b c", 3)
    0.5714285714285714
    >>> repeat_rate("the cat sat on the mat", 3)
    0.0
    """
    units: Sequence[str] = text.split() if " " in text.strip() else list(text.strip())
    if len(units) < 2 * n:
        return None
    grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def zero_variance(rewards: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: ``(no variance, row of the group's first sample)``; a group with fewer than
    two scored samples has no variance (as in :func:`trustgrpo.advantage.zero_variance_groups`)."""
    row, col, width = group_layout(group)
    g = padded(rewards, row, col, width)
    valid = ~np.isnan(g)
    hi = np.where(valid, g, -np.inf).max(axis=1)
    lo = np.where(valid, g, np.inf).min(axis=1)
    first = np.full(g.shape[0], -1, dtype=np.int64)
    first[row[::-1]] = np.arange(len(row))[::-1]
    return (valid.sum(axis=1) < 2) | (hi == lo), first
