"""Detectors on the shape of the reward: length bias, component dominance, saturation.

All three read nothing but the record (they run offline too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trustgrpo.errors import ConfigError
from trustgrpo.monitors._alert import Finding, Ref
from trustgrpo.monitors._base import Context, Detector, Windows
from trustgrpo.monitors._data import CORRECT, FORMAT_TYPES, StepData
from trustgrpo.monitors._stats import (
    length_share,
    pooled_rho,
    welch_greater,
    within_group_rank_sums,
    zero_variance,
)


@dataclass
class _LengthStep:
    sxy: float
    sxx: float
    syy: float
    n: int
    lengths: np.ndarray
    rewards: np.ndarray
    moments: np.ndarray
    """Per class (correct, incorrect): count, Σ length, Σ length²."""

    def summary(self) -> np.ndarray:
        """What the window sums: Σx̃ỹ, Σx̃², Σỹ², n, then the six moments."""
        return np.concatenate(([self.sxy, self.sxx, self.syy, self.n], self.moments.ravel()))


def _moments(lengths: np.ndarray, correct: np.ndarray) -> np.ndarray:
    c = correct.astype(np.float64)
    powers = np.stack([np.ones_like(lengths), lengths, lengths * lengths])
    return (powers @ np.stack([c, 1.0 - c], axis=1)).T


class LengthBias(Detector):
    """Reward that tracks completion length.

    ``reward_tracks_length``: the within-group Spearman ρ(length, reward) pooled over the
    window (same prompt, different lengths: prompt difficulty cannot cause it) is at least
    ``threshold``, *and* a length-only reward model explains at least ``gain_share`` of the
    reward gain since the reference window (Singhal et al. 2023, arXiv:2310.03716, who
    found that length alone reproduces most RLHF reward gains).

    ``incorrect_longer``: (mean length of incorrect − of correct) / mean length grew by
    ``divergence`` since the reference window, with a one-sided test at ``alpha`` (Dr. GRPO,
    arXiv:2503.20783: GRPO's 1/|o| normalisation lengthens incorrect answers).
    """

    name = "length_bias"

    @classmethod
    def active(cls, cfg: object, ctx: Context) -> bool:
        return super().active(cfg, ctx) and ctx.language

    def __init__(self, cfg: object, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.w: Windows[_LengthStep] = Windows(self.cfg.window, _LengthStep.summary)

    def on_rewards(self, data: StepData) -> list[Finding]:
        ok = ~np.isnan(data.rewards)
        sums = within_group_rank_sums(data.lengths, data.rewards, data.group, data.layout)
        lengths = data.lengths[ok]
        moments = _moments(lengths, data.correct[ok])
        self.w.add(_LengthStep(*sums, lengths, data.rewards[ok], moments))
        if not self.w.disjoint:
            return []
        found = []
        ref, cur = self.w.reference, self.w.current
        sxy, sxx, syy, count = self.w.total[:4].tolist()
        rho = pooled_rho(sxy, sxx, syy)
        n = int(count)
        c = self.cfg
        if n >= c.min_samples and rho >= c.threshold:
            gain, share = length_share(
                np.concatenate([s.lengths for s in ref]),
                np.concatenate([s.rewards for s in ref]),
                np.concatenate([s.lengths for s in cur]),
                np.concatenate([s.rewards for s in cur]),
            )
            if gain >= c.min_gain and share >= c.gain_share:
                found.append(
                    Finding(
                        "reward_tracks_length",
                        rho,
                        c.threshold,
                        f"reward tracks completion length within groups (Spearman ρ = "
                        f"{rho:.2f} over the last {c.window} steps, {n} samples), and length "
                        f"alone explains {share:.0%} of the reward gain of {gain:+.3f} since the "
                        "first steps: the verifier may pay for length, not correctness",
                        self._longest_rewarded(data),
                        {"samples": n, "gain": gain, "length_share": share},
                    )
                )
        div = self._divergence()
        if div is not None:
            found.append(div)
        return found

    def _divergence(self) -> Finding | None:
        c = self.cfg
        a = self.w.on_reference(
            "gap", lambda r: _gap(np.sum([s.moments for s in r], axis=0), c.min_per_class)
        )
        b = _gap(self.w.total[4:].reshape(2, 3), c.min_per_class)
        if a is None or b is None:
            return None
        growth, var = b[0] - a[0], a[1] + b[1]
        if growth < c.divergence:
            return None
        p = welch_greater(growth, var)
        if p >= c.alpha:
            return None
        return Finding(
            "incorrect_longer",
            growth,
            c.divergence,
            f"incorrect completions grew longer than correct ones: their length gap rose from "
            f"{a[0]:+.2f} to {b[0]:+.2f} mean lengths (p = {p:.1g}); GRPO's per-sequence "
            "length normalisation rewards long wrong answers (Dr. GRPO)",
            (),
            {"gap_reference": a[0], "gap_current": b[0], "p_value": p},
        )

    def _longest_rewarded(self, data: StepData) -> list[Ref]:
        ok = np.flatnonzero(~np.isnan(data.rewards))
        order = ok[np.lexsort((-data.lengths[ok], -data.rewards[ok]))]
        return self.evidence(data.refs[int(i)] for i in order)


def _gap(m: np.ndarray, min_per_class: int) -> tuple[float, float] | None:
    """(gap, variance): (mean length incorrect − mean length correct) / mean length, from
    the summed per-class moments ``m``."""
    (n_good, s_good, q_good), (n_bad, s_bad, q_bad) = m
    if n_good < min_per_class or n_bad < min_per_class:
        return None
    scale = (s_good + s_bad) / (n_good + n_bad) or 1.0
    mean_good, mean_bad = s_good / n_good, s_bad / n_bad
    var_good = max(0.0, (q_good - n_good * mean_good**2) / (n_good - 1))
    var_bad = max(0.0, (q_bad - n_bad * mean_bad**2) / (n_bad - 1))
    gap = (mean_bad - mean_good) / scale
    var = (var_bad / n_bad + var_good / n_good) / scale**2
    return float(gap), float(var)


@dataclass
class _ComponentStep:
    sums: np.ndarray
    counts: np.ndarray
    acc_correct: int
    n: int


class ComponentDominance(Detector):
    """A non-accuracy component (format, shaping) whose mean score rose by ``min_rise``
    since the reference window while no accuracy component rose by more than ``flat`` and
    accuracy is below ``ceiling`` (TRL issue #5298: format reward up, accuracy near zero)."""

    name = "component_dominance"

    def __init__(self, cfg: object, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        comps = ctx.components
        names = [c.name for c in comps]
        wanted = tuple(self.cfg.accuracy)
        unknown = [a for a in wanted if a not in names]
        if unknown:
            raise ConfigError(
                [
                    f"monitors.component_dominance.accuracy: unknown component {unknown[0]!r} "
                    f"(the run's verifiers: {', '.join(names)})"
                ]
            )
        if wanted:
            self.acc = [i for i, c in enumerate(comps) if c.name in wanted]
        else:
            self.acc = [
                i for i, c in enumerate(comps) if c.role != "shaping" and c.type not in FORMAT_TYPES
            ]
        self.aux = [i for i in range(len(comps)) if i not in self.acc]
        self.w: Windows[_ComponentStep] = Windows(self.cfg.window)

    @classmethod
    def active(cls, cfg: object, ctx: Context) -> bool:
        return super().active(cfg, ctx) and len(ctx.components) >= 2

    def on_rewards(self, data: StepData) -> list[Finding]:
        if not self.acc or not self.aux:
            return []
        scored = ~np.isnan(data.scores)
        acc_ok = (data.status[:, self.acc] == CORRECT).all(axis=1)
        self.w.add(
            _ComponentStep(
                np.where(scored, data.scores, 0.0).sum(axis=0),
                scored.sum(axis=0),
                int(acc_ok.sum()),
                len(data),
            )
        )
        if not self.w.disjoint:
            return []
        ref, cur = self.w.on_reference("means", _means), _means(list(self.w.current))
        rise = cur - ref
        acc = rise[self.acc]
        if np.isnan(acc).all():  # accuracy never scored in a window: nothing to compare
            return []
        acc_rise = float(np.nanmax(acc))
        acc_rate = sum(s.acc_correct for s in self.w.current) / max(
            1, sum(s.n for s in self.w.current)
        )
        c = self.cfg
        if acc_rise > c.flat or acc_rate >= c.ceiling:
            return []
        found = []
        for j in self.aux:
            if rise[j] >= c.min_rise:
                comp = self.ctx.components[j]
                acc_names = ", ".join(self.ctx.components[i].name for i in self.acc)
                found.append(
                    Finding(
                        comp.name,
                        float(rise[j]),
                        c.min_rise,
                        f"{comp.name} ({comp.role}) rose from {ref[j]:.3f} to {cur[j]:.3f} "
                        f"while accuracy ({acc_names}) stayed flat ({acc_rise:+.3f}, success "
                        f"{acc_rate:.1%}): the policy is learning the {comp.name} check, not "
                        "the task",
                        self._evidence(data, j, acc_ok),
                        {
                            "reference": float(ref[j]),
                            "current": float(cur[j]),
                            "accuracy_rise": acc_rise,
                            "accuracy_success": acc_rate,
                        },
                    )
                )
        return found

    def _evidence(self, data: StepData, j: int, acc_ok: np.ndarray) -> list[Ref]:
        s = data.scores[:, j]
        idx = np.flatnonzero(~acc_ok & ~np.isnan(s))
        idx = idx[np.argsort(-s[idx], kind="stable")]
        return self.evidence(data.refs[int(i)] for i in idx)


def _means(steps: list[_ComponentStep]) -> np.ndarray:
    sums = np.sum([s.sums for s in steps], axis=0)
    counts = np.sum([s.counts for s in steps], axis=0)
    return np.divide(sums, counts, out=np.full(len(sums), math.nan), where=counts > 0)


class Saturation(Detector):
    """The share of groups with zero reward variance over the window is at least
    ``threshold``: those groups have zero advantage and give no gradient (DAPO,
    arXiv:2503.14476; Dr. GRPO, arXiv:2503.20783 reports ``frac_reward_zero_std``)."""

    name = "saturation"

    def __init__(self, cfg: object, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.w: Windows[tuple[int, int, int]] = Windows(self.cfg.window)

    def on_rewards(self, data: StepData) -> list[Finding]:
        if not len(data):
            return []
        flat, first = zero_variance(data.rewards, data.group, data.layout)
        solved = data.correct[first] & flat
        self.w.add((len(flat), int(flat.sum()), int(solved.sum())))
        if not self.w.full:
            return []
        groups = sum(s[0] for s in self.w.current)
        zero = sum(s[1] for s in self.w.current)
        solved_n = sum(s[2] for s in self.w.current)
        frac = zero / max(1, groups)
        c = self.cfg
        if frac < c.threshold:
            return []
        why = (
            "the task is solved; stop, or give harder prompts"
            if solved_n >= zero / 2
            else "the task is too hard or the verifier never pays; check both"
        )
        return [
            Finding(
                "zero_variance_groups",
                frac,
                c.threshold,
                f"{frac:.0%} of groups over the last {c.window} steps had equal rewards "
                f"({solved_n} all correct, {zero - solved_n} all not): no learning signal; " + why,
                self.evidence(data.refs[int(i)] for i in first[flat]),
                {"groups": groups, "zero_variance": zero, "all_correct": solved_n},
            )
        ]
