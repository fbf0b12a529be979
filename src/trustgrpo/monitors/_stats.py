"""The statistics behind the detectors: small, pure, vectorised, tested on hand-built cases.

The per-step ones (:func:`group_layout`, :func:`centered_ranks`) run on every training step
and use numpy only; the tests (:func:`fisher_greater`, :func:`welch_greater`) use scipy and
run only once an effect is already large enough to matter, so the common step costs no
scipy call.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class GroupLayout:
    """Where each sample of a step sits in a (groups × width) array: group rows in order of
    group id, positions in order of appearance. ``regular``: the samples are stored group
    after group, every group ``width`` long (how the trainer lays a step out), so padding is
    a reshape."""

    row: np.ndarray
    """Per sample, its group's row."""
    col: np.ndarray
    """Per sample, its position in the group."""
    width: int
    """Size of the largest group."""
    first: np.ndarray
    """Per group row, the index of its first sample."""
    regular: bool

    @property
    def groups(self) -> int:
        """Number of groups."""
        return len(self.first)

    def pad(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per sample) laid out as (groups × width), NaN where a group is
        shorter. A view of ``values`` when the layout is regular: do not write to it."""
        if self.regular:
            return np.asarray(values, dtype=np.float64).reshape(self.groups, self.width)
        out = np.full((self.groups, self.width), np.nan)
        out[self.row, self.col] = values
        return out


@functools.lru_cache(maxsize=16)
def regular_layout(n: int, width: int) -> tuple[np.ndarray, GroupLayout]:
    """Group ids of ``n`` samples stored group after group, ``width`` each, and their layout
    (read-only; cached, as every step of a run has the same)."""
    pos = np.arange(n)
    ids = pos // width
    lay = GroupLayout(ids, pos % width, width, pos[::width].copy(), True)
    for a in (ids, lay.col, lay.first):
        a.flags.writeable = False
    return ids, lay


def group_layout(group: np.ndarray, width: int = 0) -> GroupLayout:
    """The :class:`GroupLayout` of a step's group ids; ``width``: the run's group size, when
    known (a step laid out as the trainer lays it out then costs one comparison)."""
    n = len(group)
    if not n:
        empty = np.zeros(0, dtype=np.int64)
        return GroupLayout(empty, empty, 0, empty, True)
    if width and n % width == 0:
        ids, lay = regular_layout(n, width)
        if np.array_equal(group, ids):
            return lay
    d = np.diff(group)
    if (d >= 0).all():  # groups stored one after the other: equal sizes?
        cuts = np.flatnonzero(d) + 1
        w = int(cuts[0]) if len(cuts) else n
        if n % w == 0 and len(cuts) == n // w - 1 and not (cuts % w).any():
            return regular_layout(n, w)[1]
    order = np.argsort(group, kind="stable")
    _, inverse, counts = np.unique(group[order], return_inverse=True, return_counts=True)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    row = np.empty(n, dtype=np.int64)
    col = np.empty(n, dtype=np.int64)
    row[order] = inverse
    col[order] = np.arange(n) - starts[inverse]
    return GroupLayout(row, col, int(counts.max()), order[starts], False)


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis, minus the mean rank (rows of groups × width, or
    several such arrays stacked).

    NaN entries are left out (their result is 0). Ties get the average rank, as in
    ``scipy.stats.rankdata``. O(width²) per row, meant for group sizes up to about 64.

    >>> centered_ranks(np.array([[3.0, 1.0, 2.0, np.nan]])).tolist()
    [[1.0, -1.0, 0.0, 0.0]]
    """
    below = x[..., None, :] < x[..., :, None]
    same = x[..., None, :] == x[..., :, None]
    valid = ~np.isnan(x)
    if valid.all():  # rank − (n + 1) / 2 with rank = less + (equal + 1) / 2
        return below.sum(axis=-1) + (same.sum(axis=-1) - x.shape[-1]) / 2.0
    n = valid.sum(axis=-1, keepdims=True)  # NaN is neither less than nor equal to anything
    ranks = below.sum(axis=-1) + (same.sum(axis=-1) - n) / 2.0
    return np.where(valid, ranks, 0.0)


def within_group_rank_sums(
    x: np.ndarray, y: np.ndarray, group: np.ndarray, layout: GroupLayout | None = None
) -> tuple[float, float, float, int]:
    """``(Σ x̃ỹ, Σ x̃², Σ ỹ², n)`` of within-group centred ranks, over the groups in which
    both ``x`` and ``y`` vary (NaN in either leaves the sample out).

    Summed over steps, ``Σx̃ỹ / sqrt(Σx̃² Σỹ²)`` is a Spearman correlation stratified by
    group: it compares completions of the same prompt only, so prompt difficulty (which moves
    both length and reward) cannot create it. ``layout``: ``group_layout(group)``, when the
    caller has it already.
    """
    if not len(x):
        return 0.0, 0.0, 0.0, 0
    lay = layout if layout is not None else group_layout(group)
    bad = np.isnan(x + y)
    if bad.any():
        x, y = np.where(bad, np.nan, x), np.where(bad, np.nan, y)
    both = np.stack([lay.pad(x), lay.pad(y)])
    r = centered_ranks(both)
    keep = r.any(axis=2).all(axis=0)  # groups in which both vary
    if not keep.any():
        return 0.0, 0.0, 0.0, 0
    kept = r[:, keep].reshape(2, -1)
    (sxx, sxy), (_, syy) = (kept @ kept.T).tolist()
    n = int((~np.isnan(both[0, keep])).sum())
    return sxy, sxx, syy, n


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


def zero_variance(
    rewards: np.ndarray, group: np.ndarray, layout: GroupLayout | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per group: ``(no variance, row of the group's first sample)``; a group with fewer than
    two scored samples has no variance (as in :func:`trustgrpo.advantage.zero_variance_groups`)."""
    lay = layout if layout is not None else group_layout(group)
    g = lay.pad(rewards)
    valid = ~np.isnan(g)
    if valid.all():
        flat = g.max(axis=1) == g.min(axis=1)
    else:
        hi = np.where(valid, g, -np.inf).max(axis=1)
        lo = np.where(valid, g, np.inf).min(axis=1)
        flat = (valid.sum(axis=1) < 2) | (hi == lo)
    return flat, lay.first
