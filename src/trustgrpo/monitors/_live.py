"""Detectors that need the running trainer: held-out gap, canaries, nondeterminism, probes.

They call the run's verifiers (or the policy) again, so they cannot be recomputed from a
ledger; ``trustgrpo monitor`` shows the alerts they recorded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from trustgrpo.errors import ConfigError
from trustgrpo.monitors._alert import Finding
from trustgrpo.monitors._base import Context, Detector, Live
from trustgrpo.monitors._checking import resolve_path
from trustgrpo.monitors._data import StepData
from trustgrpo.monitors._stats import fisher_greater
from trustgrpo.verifiers.base import Sample, safe_score


def _due(step: int, every: int) -> bool:
    """Steps 1, 1 + every, 1 + 2·every...: step 1 runs before any update (the baseline)."""
    return (step - 1) % every == 0


def _judged_correct(reward: Any, outcomes: Sequence[Sequence[Any]]) -> np.ndarray:
    """Per sample: every non-shaping component said ``correct`` (as in evaluation)."""
    judging = [c.role != "shaping" for c in reward.components]
    return np.array(
        [
            all(o.status == "correct" for o, j in zip(row, judging, strict=True) if j)
            for row in outcomes
        ],
        dtype=bool,
    )


def read_pairs(path: str, field_path: str, ctx: Context) -> list[tuple[Sample, dict[str, Any]]]:
    """Rows of a canary or probe file as samples (and each row's own fields).

    Columns: ``prompt`` and ``completion`` (required), ``reference`` (or the data's answer
    column), ``id`` (default: the row number); the others are data columns.
    """
    from trustgrpo.rollout.text import read_rows

    file = resolve_path(path, ctx.source, field_path)
    answer = getattr(getattr(ctx.live, "config", None), "data", None)
    answer_col = getattr(answer, "answer_column", "") or "answer"
    out = []
    for i, row in enumerate(read_rows(file)):
        missing = [k for k in ("prompt", "completion") if not isinstance(row.get(k), str)]
        if missing:
            raise ConfigError(
                [f"{field_path}: {file} row {i}: expected string column(s) {', '.join(missing)}"]
            )
        ref = row.get("reference", row.get(answer_col))
        meta = {
            k: v
            for k, v in row.items()
            if k not in {"prompt", "completion", "reference", answer_col, "id", "expected"}
        }
        sample = Sample(
            str(row.get("id", i)),
            i,
            0,
            row["prompt"],
            row["completion"],
            None if ref is None else str(ref),
            meta,
        )
        out.append((sample, row))
    if not out:
        raise ConfigError([f"{field_path}: {file} has no rows"])
    return out


class HeldOutGap(Detector):
    """Training reward against an independent verifier on held-out prompts (Gao, Schulman,
    Hilton 2022, arXiv:2210.10760: the proxy keeps rising while the gold reward peaks and
    falls).

    Every ``every`` steps the current policy completes the held-out prompts greedily; each
    completion is judged by the run's reward (the proxy) and by the held-out verifier (the
    gold). ``proxy_gold_gap``: the share of completions the proxy accepts and the gold
    rejects grew by ``threshold`` since step 1. ``held_out_drop``: gold success fell by
    ``drop`` from its best check while the proxy's success on the same held-out completions
    did not fall and the training success rate rose (with greedy held-out decoding and
    sampled training, only the proxy on the same completions says whether the fall is the
    verifiers disagreeing or the policy getting worse). Both must also pass a one-sided
    Fisher exact test at ``alpha``.
    """

    name = "held_out"
    live = True

    def __init__(self, cfg: Any, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        from trustgrpo.verifiers import build_verifier

        live = ctx.live
        assert live is not None
        self.verifier = build_verifier(dict(cfg.verifier), live.config)
        if cfg.prompts:
            from trustgrpo.rollout.text import load_prompts

            file = resolve_path(cfg.prompts, ctx.source, "monitors.held_out.prompts")
            prompts = load_prompts(file, live.config.data, getattr(live, "tokenizer", None))
        else:
            prompts = list(live.eval_prompts)
        if not prompts:
            raise ConfigError(
                ["monitors.held_out.prompts: no held-out prompts (name a file, or set data.eval)"]
            )
        self.prompts = prompts[: cfg.max_prompts]
        self.train: list[float] = []
        self.checks: list[tuple[int, int, int, int, float]] = []
        """(step, proxy-only count, gold-correct count, proxy-correct count, training
        success) per check."""

    @classmethod
    def active(cls, cfg: Any, ctx: Context) -> bool:
        return super().active(cfg, ctx) and bool(cfg.verifier)

    def on_rewards(self, data: StepData) -> list[Finding]:
        ok = ~np.isnan(data.rewards)
        if ok.any():
            self.train.append(float(data.correct[ok].mean()))
        if not _due(data.step, self.cfg.every):
            return []
        live: Live = self.ctx.live  # type: ignore[assignment]
        samples = live.complete(self.prompts)
        proxy = _judged_correct(live.reward, live.reward.score(samples).outcomes)
        gold = np.array([o.status == "correct" for o in safe_score(self.verifier, samples)])
        train = float(np.mean(self.train)) if self.train else 0.0
        self.train = []
        n = len(samples)
        gap_k, gold_k, proxy_k = int((proxy & ~gold).sum()), int(gold.sum()), int(proxy.sum())
        self.checks.append((data.step, gap_k, gold_k, proxy_k, train))
        if len(self.checks) == 1:
            return []
        c = self.cfg
        found = []
        first = self.checks[0]
        growth = (gap_k - first[1]) / n
        if growth >= c.threshold:
            p = fisher_greater(gap_k, n, first[1], n)
            if p < c.alpha:
                found.append(
                    Finding(
                        "proxy_gold_gap",
                        growth,
                        c.threshold,
                        f"on {n} held-out prompts the training reward accepts {gap_k / n:.0%} "
                        f"of completions that the held-out verifier {self.verifier.name} rejects "
                        f"(step {first[0]}: {first[1] / n:.0%}, p = {p:.1g}): the policy is "
                        "optimising the training verifier, not the task",
                        self._evidence(samples, proxy & ~gold),
                        {
                            "gap": gap_k / n,
                            "gap_first": first[1] / n,
                            "p_value": p,
                            "gold_success": gold_k / n,
                            "prompts": n,
                        },
                    )
                )
        best = max(self.checks[:-1], key=lambda x: x[2])
        fall = (best[2] - gold_k) / n
        if fall >= c.drop and proxy_k >= best[3] and train > best[4]:
            p = fisher_greater(best[2], n, gold_k, n)
            if p < c.alpha:
                found.append(
                    Finding(
                        "held_out_drop",
                        fall,
                        c.drop,
                        f"held-out success by {self.verifier.name} fell from {best[2] / n:.0%} "
                        f"(step {best[0]}) to {gold_k / n:.0%} while the training reward "
                        f"accepted {proxy_k / n:.0%} of the same completions (then "
                        f"{best[3] / n:.0%}) and training success rose from {best[4]:.0%} to "
                        f"{train:.0%} (p = {p:.1g}): over-optimisation",
                        self._evidence(samples, ~gold),
                        {
                            "best": best[2] / n,
                            "best_step": best[0],
                            "current": gold_k / n,
                            "proxy_then": best[3] / n,
                            "proxy_now": proxy_k / n,
                            "train_then": best[4],
                            "train_now": train,
                            "p_value": p,
                        },
                    )
                )
        return found

    def _evidence(self, samples: Sequence[Sample], mask: np.ndarray) -> list[Any]:
        return self.evidence(
            {"held_out": s.prompt_id, "completion": s.completion[:200]}
            for s, m in zip(samples, mask, strict=True)
            if m
        )


class Canaries(Detector):
    """Known-exploit completions re-scored every ``every`` steps; any one judged correct is
    an alert (the verifier is exploitable). ``builtin`` also re-runs the verifiers' own
    self-test on training prompts: their built-in canaries (empty, wrong, several answers,
    format only, an always-equal object...) must fail and the gold answers must pass."""

    name = "canaries"
    live = True

    def __init__(self, cfg: Any, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        live = ctx.live
        assert live is not None
        self.rows = read_pairs(cfg.file, "monitors.canaries.file", ctx) if cfg.file else []
        self.gold: list[Sample] = []
        prompts = list(live.train_prompts)
        if cfg.builtin and prompts:
            rng = np.random.default_rng([ctx.seed, 0xCA7A])
            idx = rng.choice(len(prompts), size=min(cfg.builtin, len(prompts)), replace=False)
            self.gold = [
                Sample(p.id, 0, k, p.text, p.reference or "", p.reference, p.metadata)
                for k, p in enumerate(prompts[int(i)] for i in idx)
            ]

    def on_rewards(self, data: StepData) -> list[Finding]:
        if not _due(data.step, self.cfg.every):
            return []
        live: Live = self.ctx.live  # type: ignore[assignment]
        found = []
        if self.rows:
            samples = [s for s, _ in self.rows]
            result = live.reward.score(samples)
            ok = _judged_correct(live.reward, result.outcomes)
            passed = [
                {
                    "canary": s.prompt_id,
                    "completion": s.completion[:200],
                    "accepted_by": [o.verifier for o in outs if o.status == "correct"],
                }
                for s, outs, k in zip(samples, result.outcomes, ok, strict=True)
                if k
            ]
            if passed:
                ids = ", ".join(str(p["canary"]) for p in passed[:5])
                found.append(
                    Finding(
                        "canary",
                        float(len(passed)),
                        0.0,
                        f"{len(passed)} of {len(samples)} canaries scored correct ({ids}): "
                        "the verifier accepts a known exploit",
                        self.evidence(passed),
                        {"passed": len(passed), "canaries": len(samples)},
                    )
                )
        if self.gold:
            report = live.reward.self_test(self.gold)
            for kind, check, what in (
                ("canary", "builtin_canary", "accepted a built-in canary"),
                ("gold", "gold_rejected", "rejected a gold answer"),
            ):
                fails = [c for c in report.failures if c.kind == kind]
                if fails:
                    found.append(
                        Finding(
                            check,
                            float(len(fails)),
                            0.0,
                            f"verifier self-test: {fails[0].component} {what} "
                            f"({len(fails)} case(s), e.g. {fails[0].label!r} on prompt "
                            f"{fails[0].prompt_id}: {fails[0].completion[:60]!r} -> "
                            f"{fails[0].outcome.status})",
                            self.evidence(
                                {
                                    "self_test": c.label,
                                    "prompt_id": c.prompt_id,
                                    "completion": c.completion[:200],
                                    "verifier": c.component,
                                    "status": c.outcome.status,
                                }
                                for c in fails
                            ),
                            {"failed": len(fails)},
                        )
                    )
        return found


class Nondeterminism(Detector):
    """A random ``sample`` of each step's samples is scored again by every component; any
    outcome whose status or score changed is an alert naming the verifier. Re-scoring keeps
    to ``max_share`` of the wall time (slow verifiers are re-scored every few steps)."""

    name = "nondeterminism"
    live = True

    def __init__(self, cfg: Any, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.started: float | None = None
        self.spent = 0.0
        """Seconds spent re-scoring, against the wall time since the first step."""

    def on_rewards(self, data: StepData) -> list[Finding]:
        now = time.perf_counter()
        if self.started is None:
            self.started = now
        batch = data.batch
        if batch is None or not len(data) or not _due(data.step, self.cfg.every):
            return []
        if self.spent > self.cfg.max_share * (now - self.started):
            return []
        try:
            return self._rescore(data, batch)
        finally:
            self.spent += time.perf_counter() - now

    def _rescore(self, data: StepData, batch: Any) -> list[Finding]:
        live: Live = self.ctx.live  # type: ignore[assignment]
        # the same samples for a step whether or not the run was resumed before it
        rng = random.Random(f"{self.ctx.seed}:{data.step}:nondeterminism")
        idx = sorted(rng.sample(range(len(data)), min(self.cfg.sample, len(data))))
        samples = [batch.samples[i] for i in idx]
        outcomes = [batch.outcomes[i] for i in idx]
        mismatches = live.reward.rescore(samples, outcomes)
        if self.cfg.ignore_timeouts:
            mismatches = [
                m for m in mismatches if "timeout" not in (m.before.status, m.after.status)
            ]
        by_verifier: dict[str, list[Any]] = {}
        for m in mismatches:
            by_verifier.setdefault(m.component, []).append(m)
        found = []
        for verifier, ms in by_verifier.items():
            name = verifier.split("@", 1)[0]
            first = ms[0]
            found.append(
                Finding(
                    f"mismatch:{name}",
                    len(ms) / len(idx),
                    0.0,
                    f"verifier {verifier} is nondeterministic: {len(ms)} of {len(idx)} re-scored "
                    f"samples changed (e.g. {first.before.status} {first.before.score} -> "
                    f"{first.after.status} {first.after.score})",
                    self.evidence(data.refs[idx[m.sample]] for m in ms),
                    {
                        "mismatches": len(ms),
                        "rescored": len(idx),
                        "changes": [
                            [m.before.status, m.before.score, m.after.status, m.after.score]
                            for m in ms[:8]
                        ],
                    },
                )
            )
        return found


class ProbeDrift(Detector):
    """A frozen set of (prompt, completion) pairs scored every ``every`` steps must keep its
    scores: against the file's ``expected`` reward where given (across runs and library
    upgrades), otherwise against the first scoring of this run."""

    name = "probe_drift"
    live = True

    def __init__(self, cfg: Any, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.rows = read_pairs(cfg.file, "monitors.probe_drift.file", ctx)
        self.expected: list[float | None] = []
        for s, row in self.rows:
            e = row.get("expected")
            if e is not None and (isinstance(e, bool) or not isinstance(e, (int, float))):
                raise ConfigError(
                    [
                        f"monitors.probe_drift.file: probe {s.prompt_id}: expected must be a "
                        f"number, got {e!r}"
                    ]
                )
            self.expected.append(None if e is None else float(e))
        self.baseline: list[tuple[float, tuple[Any, ...]]] | None = None

    @classmethod
    def active(cls, cfg: Any, ctx: Context) -> bool:
        return super().active(cfg, ctx) and bool(cfg.file)

    def on_rewards(self, data: StepData) -> list[Finding]:
        if not _due(data.step, self.cfg.every):
            return []
        live: Live = self.ctx.live  # type: ignore[assignment]
        samples = [s for s, _ in self.rows]
        result = live.reward.score(samples)
        now = [
            (float(r), tuple((o.status, o.score) for o in outs))
            for r, outs in zip(result.rewards, result.outcomes, strict=True)
        ]
        first = self.baseline is None
        if self.baseline is None:
            self.baseline = now
        changed = []
        tol = self.cfg.tolerance
        for s, exp, base, cur in zip(samples, self.expected, self.baseline, now, strict=True):
            want = exp if exp is not None else base[0]
            drift = not _close(want, cur[0], tol)
            if exp is None and not first:
                drift = drift or not _same_outcomes(base[1], cur[1], tol)
            if drift:
                changed.append(
                    {
                        "probe": s.prompt_id,
                        "expected": _num(want),
                        "reward": _num(cur[0]),
                        "outcomes": [list(x) for x in cur[1]],
                    }
                )
        if not changed:
            return []
        ex = changed[0]
        return [
            Finding(
                "drift",
                float(len(changed)),
                0.0,
                f"{len(changed)} of {len(samples)} probes changed score (e.g. {ex['probe']}: "
                f"{ex['expected']} -> {ex['reward']}): the reward function itself drifted "
                "(a library upgrade, an external service, a changed file)",
                self.evidence(changed),
                {"changed": len(changed), "probes": len(samples)},
            )
        ]


def _num(x: float) -> float | None:
    return None if np.isnan(x) else x


def _close(a: float, b: float, tol: float) -> bool:
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return abs(a - b) <= tol


def _same_outcomes(a: tuple[Any, ...], b: tuple[Any, ...], tol: float) -> bool:
    for (sa, xa), (sb, xb) in zip(a, b, strict=True):
        if sa != sb or (xa is None) != (xb is None):
            return False
        if xa is not None and abs(xa - xb) > tol:
            return False
    return True
