"""Synthetic reward-event streams: a clean GRPO run that learns, and one flaw at a time.

A step draws ``prompts`` prompts from a pool; each gets ``group`` completions. The clean run
learns: prompt ``i`` is solved with probability ``sigmoid(difficulty_i + rise · t / steps)``,
lengths do not depend on correctness, a format component rises with accuracy, a few
completions are abstained on (rows without a reference) at a constant rate, the category
column is independent of difficulty, entropy decays slowly and the KL is noisy but steady.
Each ``flaw`` changes one of these, as the matching failure mode would.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from trustgrpo.monitors import ComponentInfo, StepData
from trustgrpo.verifiers.base import STATUSES

CORRECT, INCORRECT, ABSTAIN, ERROR = (
    STATUSES.index(s) for s in ("correct", "incorrect", "abstain", "error")
)
COMPONENTS = (
    ComponentInfo("accuracy", "reward", "numeric", "accuracy@1"),
    ComponentInfo("format", "reward", "regex", "format@1"),
)
WORDS = [f"w{i}" for i in range(400)]

FLAWS = (
    "length_pays",
    "incorrect_longer",
    "format_only",
    "category_gap",
    "no_signal",
    "errors_start",
    "abstains_start",
    "entropy_collapse",
    "kl_spike",
    "repetition",
)


@dataclass
class Stream:
    """A synthetic run; iterate it for ``(StepData, metrics)`` per step."""

    seed: int = 0
    steps: int = 500
    prompts: int = 8
    group: int = 8
    pool: int = 256
    flaw: str = ""
    onset: int = 100
    """Step at which a flaw starts (those that have an onset)."""
    texts: bool = True

    def __iter__(self) -> Iterator[tuple[StepData, Mapping[str, float]]]:
        rng = np.random.default_rng(self.seed)
        texts = np.random.default_rng(10_000 + self.seed)
        self._prose = [" ".join(texts.choice(WORDS, int(k))) for k in texts.integers(6, 60, 256)]
        self._loops = [
            " ".join(list(texts.choice(WORDS, 3)) * int(k)) for k in texts.integers(2, 20, 256)
        ]
        difficulty = rng.normal(-1.0, 1.0, self.pool)
        base_len = rng.integers(20, 200, self.pool).astype(float)
        category = rng.choice(np.array(["a", "b", "c"]), self.pool)
        for t in range(1, self.steps + 1):
            yield self._step(rng, t, difficulty, base_len, category)

    def _step(
        self,
        rng: np.random.Generator,
        t: int,
        difficulty: np.ndarray,
        base_len: np.ndarray,
        category: np.ndarray,
    ) -> tuple[StepData, Mapping[str, float]]:
        flaw, on = self.flaw, t >= self.onset
        ids = rng.choice(self.pool, self.prompts, replace=False)
        pid = np.repeat(ids, self.group)
        n = len(pid)
        progress = t / self.steps
        logit = difficulty[pid] + 2.5 * progress
        if flaw == "category_gap":
            logit = logit - 4.0 * progress * (category[pid] == "b")
        if flaw in ("format_only", "no_signal"):
            logit = np.full(n, -6.0 if flaw == "format_only" else 8.0)
        correct = rng.random(n) < 1 / (1 + np.exp(-logit))
        lengths = np.maximum(1.0, rng.normal(base_len[pid], 0.3 * base_len[pid]))
        if flaw == "incorrect_longer" and on:
            lengths = np.where(correct, lengths, lengths * (1 + 3 * (t - self.onset) / self.steps))
        accuracy = correct.astype(float)
        fmt_p = (
            min(0.95, 0.5 + 0.5 * progress)
            if flaw != "format_only"
            else min(0.98, 0.1 + 2 * progress)
        )
        fmt = (rng.random(n) < fmt_p).astype(float)
        if flaw == "no_signal":
            fmt = np.ones(n)
        if flaw == "length_pays":
            grow = 1 + 2 * progress
            lengths = np.maximum(1.0, rng.normal(60 * grow, 25, n))
            accuracy = np.clip(lengths / 200, 0, 1)
            correct = accuracy >= 0.5
        status = np.zeros((n, 2), dtype=np.int8)
        status[:, 0] = np.where(correct, CORRECT, INCORRECT)
        status[:, 1] = np.where(fmt > 0, CORRECT, INCORRECT)
        scores = np.stack([accuracy, fmt], axis=1)
        abstain_p = 0.01 + (0.2 if flaw == "abstains_start" and on else 0.0)
        error_p = 0.001 + (0.1 if flaw == "errors_start" and on else 0.0)
        u = rng.random(n)
        status[u < abstain_p, 0] = ABSTAIN
        status[(u >= abstain_p) & (u < abstain_p + error_p), 0] = ERROR
        unscored = status[:, 0] >= ABSTAIN
        scores[unscored, 0] = np.nan
        rewards = scores[:, 0] + 0.1 * scores[:, 1]
        if flaw == "length_pays":
            rewards = scores[:, 0].copy()
        completions: list[str] = []
        if self.texts:
            looping = flaw == "repetition" and on
            pick = rng.integers(0, len(self._prose), n)
            loop = looping & (rng.random(n) < 0.8) if looping else np.zeros(n, dtype=bool)
            completions = [
                self._loops[k] if lp else self._prose[k] for k, lp in zip(pick, loop, strict=True)
            ]
        data = StepData(
            step=t,
            components=COMPONENTS,
            group=np.repeat(np.arange(self.prompts), self.group),
            lengths=np.round(lengths),
            rewards=rewards,
            scores=scores,
            status=status,
            refs=list(range((t - 1) * n, t * n)),
            completions=completions,
            metadata=[{"category": str(category[p])} for p in pid],
        )
        entropy = 1.0 - 0.4 * progress + rng.normal(0, 0.03)
        if flaw == "entropy_collapse" and on:
            entropy = max(0.01, 0.6 * np.exp(-(t - self.onset) / 10))
        kl = float(rng.lognormal(np.log(0.02 + 0.02 * progress), 0.3))
        if flaw == "kl_spike" and t == self.onset:
            kl = 1.5
        return data, {"entropy": float(entropy), "kl": kl, "loss": 0.0}
