"""Detectors on health and fairness: verifier health, group bias, training health.

All three read nothing but the record (they run offline too).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping

import numpy as np

from trustgrpo.monitors._alert import Finding, Ref
from trustgrpo.monitors._base import Context, Detector, Windows
from trustgrpo.monitors._data import ABSTAIN, ERROR, TIMEOUT, StepData
from trustgrpo.monitors._stats import fisher_greater, holm, repeat_rate, welch_greater

MIN_HEALTH_SAMPLES = 100
"""Outcomes a component needs before its failure rate is judged (one demo step has 128)."""
REPEAT_SAMPLES = 32
"""Completions per step whose n-gram repeat rate is measured (evenly spaced): the rate is a
mean, and long completions make the count the cost."""


class VerifierHealth(Detector):
    """Error, timeout and abstain rates per verifier component, and their change.

    ``failures:<name>``: the error + timeout share in the window is ≥ ``max_failure_rate``,
    or it rose by ≥ ``max_failure_rise`` since the reference window (one-sided Fisher exact
    test at ``alpha``); one check, so one onset gives one alert. ``abstain_rise:<name>``: the
    abstain share rose by ≥ ``max_abstain_rise`` (same test).
    """

    name = "verifier_health"

    def __init__(self, cfg: object, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.w: Windows[np.ndarray] = Windows(self.cfg.window, np.asarray)
        """Per step: (failures, abstains, samples) per component."""

    def on_rewards(self, data: StepData) -> list[Finding]:
        if not len(data):
            return []
        st = data.status
        fail = ((st == ERROR) | (st == TIMEOUT)).sum(axis=0)
        abstain = (st == ABSTAIN).sum(axis=0)
        self.w.add(np.stack([fail, abstain, np.full_like(fail, len(data))]))
        cur = self.w.total
        ref = self.w.on_reference("sum", lambda r: np.sum(r, axis=0))
        c = self.cfg
        found = []
        for j, comp in enumerate(self.ctx.components):
            f, a, n = (int(x) for x in cur[:, j])
            if n < MIN_HEALTH_SAMPLES:
                continue
            bad = (st[:, j] == ERROR) | (st[:, j] == TIMEOUT)
            if f / n >= c.max_failure_rate:
                found.append(
                    Finding(
                        f"failures:{comp.name}",
                        f / n,
                        c.max_failure_rate,
                        f"verifier {comp.id or comp.name} failed (error or timeout) on {f} of "
                        f"{n} samples ({f / n:.1%}) over the last {len(self.w.current)} steps; "
                        "failed samples are masked, which biases the advantage",
                        self._refs(data, bad),
                        {"failed": f, "samples": n, "kind": "rate"},
                    )
                )
                continue
            if not self.w.disjoint:
                continue
            f0, a0, n0 = (int(x) for x in ref[:, j])
            for check, k1, k0, limit, what, mask in (
                ("failures", f, f0, c.max_failure_rise, "error + timeout", bad),
                ("abstain_rise", a, a0, c.max_abstain_rise, "abstain", st[:, j] == ABSTAIN),
            ):
                rise = k1 / n - k0 / n0
                if rise < limit:
                    continue
                p = fisher_greater(k1, n, k0, n0)
                if p < c.alpha:
                    found.append(
                        Finding(
                            f"{check}:{comp.name}",
                            rise,
                            limit,
                            f"verifier {comp.id or comp.name}: {what} rate rose from "
                            f"{k0 / n0:.1%} to {k1 / n:.1%} since the first steps (p = {p:.1g})",
                            self._refs(data, mask),
                            {"reference": k0 / n0, "current": k1 / n, "p_value": p, "kind": "rise"},
                        )
                    )
        return found

    def _refs(self, data: StepData, mask: np.ndarray) -> list[Ref]:
        return self.evidence(data.refs[int(i)] for i in np.flatnonzero(mask))


class GroupBias(Detector):
    """A gap between prompt categories (a metadata column) that grows during training.

    Units are groups (prompts), not samples: the G completions of one prompt are not
    independent, so a per-sample test would be overconfident. For each category and
    measure (success rate, mean reward) the gap to the rest of the data is computed in the
    reference and the current window; its growth is tested one-sided with a normal (Welch)
    approximation, and the p-values of every category and both measures are Holm-corrected
    together (family-wise error ``alpha``). An alert needs growth ≥ ``min_gap`` too.
    """

    name = "group_bias"
    MEASURES = ("success", "reward")

    def __init__(self, cfg: object, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.w: Windows[np.ndarray] = Windows(self.cfg.window, np.asarray)
        """Per step: (categories, measures, [count, Σ, Σ²]) over groups."""
        self.codes: dict[str, int] = {}
        self.last: tuple[np.ndarray, np.ndarray] = (np.zeros(0, int), np.zeros(0, int))

    @classmethod
    def active(cls, cfg: object, ctx: Context) -> bool:
        return super().active(cfg, ctx) and bool(cfg.column)  # type: ignore[attr-defined]

    def on_rewards(self, data: StepData) -> list[Finding]:
        if not len(data):
            return []
        lay = data.layout
        row, first, ng = lay.row, lay.first, lay.groups
        col = self.cfg.column
        meta = data.metadata
        code = self._code
        cats = np.array(
            [code(meta[i].get(col) if meta else None) for i in first.tolist()], dtype=np.int64
        )
        ok = ~np.isnan(data.rewards)
        counts = np.bincount(row[ok], minlength=ng).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            success = np.bincount(row[ok], weights=data.correct[ok], minlength=ng) / counts
            reward = np.bincount(row[ok], weights=data.rewards[ok], minlength=ng) / counts
        stats_ = np.zeros((len(self.codes), 2, 3))
        for m, values in enumerate((success, reward)):
            good = ~np.isnan(values)
            c, v = cats[good], values[good]
            nc = len(self.codes)
            stats_[:, m, 0] = np.bincount(c, minlength=nc)
            stats_[:, m, 1] = np.bincount(c, weights=v, minlength=nc)
            stats_[:, m, 2] = np.bincount(c, weights=v * v, minlength=nc)
        self.w.add(stats_)
        self.last = (first, cats)
        if not self.w.disjoint or len(self.codes) < 2:
            return []
        return self._test(data)

    def _code(self, value: object) -> int:
        key = "(missing)" if value is None else str(value)
        return self.codes.setdefault(key, len(self.codes))

    def _sum(self, steps: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(self.codes), 2, 3))
        for x in steps:
            out[: len(x)] += x
        return out

    def _test(self, data: StepData) -> list[Finding]:
        c = self.cfg
        ref = self._sum([self.w.on_reference("sum", self._sum)])
        cur = self._sum([self.w.total])
        names = {v: k for k, v in self.codes.items()}
        tests: list[tuple[str, int, float, float, float, float]] = []
        for code in range(len(self.codes)):
            for m, measure in enumerate(self.MEASURES):
                a = _category_gap(ref[:, m], code, c.min_groups)
                b = _category_gap(cur[:, m], code, c.min_groups)
                if a is None or b is None:
                    continue
                growth = b[0] - a[0]
                p = welch_greater(growth, a[1] + b[1]) if growth >= c.min_gap else 1.0
                tests.append((measure, code, growth, p, a[0], b[0]))
        if not any(t[2] >= c.min_gap for t in tests):
            return []
        adjusted = holm([t[3] for t in tests])
        found = []
        first, cats = self.last
        for (measure, code, growth, p, g0, g1), padj in zip(tests, adjusted, strict=True):
            if growth >= c.min_gap and padj < c.alpha:
                name = names[code]
                refs = [data.refs[int(i)] for i, k in zip(first, cats, strict=True) if k == code]
                found.append(
                    Finding(
                        f"{measure}:{name}",
                        growth,
                        c.min_gap,
                        f"{c.column} = {name!r} falls behind the rest: its {measure} gap grew "
                        f"from {g0:+.3f} to {g1:+.3f} (Holm-adjusted p = {padj:.1g} over "
                        f"{len(tests)} tests)",
                        self.evidence(refs),
                        {
                            "gap_reference": g0,
                            "gap_current": g1,
                            "p_value": p,
                            "p_holm": padj,
                            "tests": len(tests),
                        },
                    )
                )
        return found


def _mean_var(n: float, s: float, q: float) -> tuple[float, float]:
    mean = s / n
    return mean, max(0.0, (q - n * mean * mean) / (n - 1))


def _category_gap(window: np.ndarray, code: int, min_groups: int) -> tuple[float, float] | None:
    """(mean of the rest − mean of the category, its variance), over groups; ``window`` is
    (categories, [count, Σ, Σ²])."""
    inside = window[code]
    rest = window.sum(axis=0) - inside
    if inside[0] < min_groups or rest[0] < min_groups:
        return None
    ma, va = _mean_var(*inside)
    mb, vb = _mean_var(*rest)
    return float(mb - ma), float(va / inside[0] + vb / rest[0])


class TrainingHealth(Detector):
    """Symptoms of an unstable update, from the step's scalars and completions.

    ``entropy_collapse``: median entropy of the window < ``entropy_floor`` × that of the
    reference window, while success is below ``solved`` (Cui et al. 2025,
    arXiv:2505.22617). ``kl_spike``: a step's KL > ``kl_spike`` × the previous window's
    median and > ``kl_min``. ``repetition``: the mean n-gram repeat rate of completions is
    ≥ ``max_repeat`` and rose by ``repeat_rise`` since the reference window.
    """

    name = "training_health"

    def __init__(self, cfg: object, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        size = self.cfg.window
        self.entropy: Windows[float] = Windows(size)
        self.success: deque[float] = deque(maxlen=size)
        self.kl: deque[float] = deque(maxlen=size)
        self.repeat: Windows[float] = Windows(size)

    def on_rewards(self, data: StepData) -> list[Finding]:
        ok = ~np.isnan(data.rewards)
        if ok.any():
            self.success.append(float(data.correct[ok].mean()))
        if not data.completions or not self.ctx.language:
            return []
        stride = max(1, len(data.completions) // REPEAT_SAMPLES)
        picked = range(0, len(data.completions), stride)
        rates = [(i, repeat_rate(data.completions[i], self.cfg.ngram)) for i in picked]
        measured = [(i, r) for i, r in rates if r is not None]
        if not measured:
            return []
        self.repeat.add(math.fsum(r for _, r in measured) / len(measured))
        c = self.cfg
        if not self.repeat.full:
            return []
        now = statistics.fmean(self.repeat.current)
        before = self.repeat.on_reference("mean", statistics.fmean)
        if now < c.max_repeat or now - before < c.repeat_rise:
            return []
        measured.sort(key=lambda x: -x[1])
        return [
            Finding(
                "repetition",
                now,
                c.max_repeat,
                f"completions repeat themselves: {now:.0%} of their {c.ngram}-grams are "
                f"repeats over the last {c.window} steps (first steps: {before:.0%})",
                self.evidence(data.refs[i] for i, _ in measured),
                {"reference": before},
            )
        ]

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> list[Finding]:
        c = self.cfg
        found = []
        ent = _finite(metrics.get("entropy"))
        if ent is not None:
            self.entropy.add(ent)
            if self.entropy.disjoint:
                ref = self.entropy.on_reference("median", statistics.median)
                now = statistics.median(self.entropy.current)
                succ = statistics.fmean(self.success) if self.success else 0.0
                ratio = now / ref if ref > 0 else math.inf
                if ratio < c.entropy_floor and succ < c.solved:
                    found.append(
                        Finding(
                            "entropy_collapse",
                            ratio,
                            c.entropy_floor,
                            f"policy entropy collapsed to {ratio:.1%} of its initial level "
                            f"({now:.4g} vs {ref:.4g}) while success is {succ:.1%}: exploration "
                            "has stopped before the task is learned",
                            (),
                            {"entropy": now, "reference": ref, "success": succ},
                        )
                    )
        kl = _finite(metrics.get("kl"))
        if kl is not None and kl > 0:
            if len(self.kl) == self.kl.maxlen:
                med = statistics.median(self.kl)
                ratio = kl / med if med > 0 else math.inf
                if kl > c.kl_min and ratio > c.kl_spike:
                    found.append(
                        Finding(
                            "kl_spike",
                            ratio,
                            c.kl_spike,
                            f"KL to the reference jumped to {kl:.4g}, {ratio:.1f}× its median "
                            f"over the previous {c.window} steps ({med:.4g})",
                            (),
                            {"kl": kl, "median": med},
                        )
                    )
            self.kl.append(kl)
        return found


def _finite(x: object) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None
