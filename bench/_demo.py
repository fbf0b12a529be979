"""The embedded demo as a benchmark workload: its data, a cached warm start, run configs.

Shared by ``bench/monitors.py`` and ``bench/ledger.py --training``: both measure what a
component costs on the demo's GRPO step (16 prompts x 8 completions, a 2-layer, 128-wide
Llama) by training with it on and off.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from trustgrpo.config import Config
from trustgrpo.demo import demo_config
from trustgrpo.tasks.arithmetic import write_dataset
from trustgrpo.trainer import Trainer


def prepare(work: Path, sft_steps: int) -> tuple[Path, Path]:
    """Demo data and a (cached) warm-start model under ``work``."""
    data = work / "data"
    if not (data / "train.jsonl").exists():
        write_dataset(data, seed=0)
    warm = work / f"warmstart-{sft_steps}"
    if not (warm / "config.json").exists():
        from trustgrpo.sft import warm_start

        cfg = demo_config(data, work / "runs" / "sft", [f"sft.steps={sft_steps}"])
        t0 = time.perf_counter()
        warm_start(cfg, warm, progress=False)
        print(f"warm start: {sft_steps} SFT steps in {time.perf_counter() - t0:.0f} s")
    return data, warm


def run_config(
    data: Path, warm: Path, run_dir: Path, steps: int, seed: int, overrides: list[str]
) -> Config:
    """The demo's run file from the warm start: ``steps`` GRPO steps with the demo's own
    periodic evaluation (300 held-out prompts every 50 steps and at the end), no verifier
    self-test (the same in every arm), plus ``overrides``."""
    base = [
        f"grpo.max_steps={steps}",
        f"run.seed={seed}",
        "reward.self_test=0",
    ]
    cfg = demo_config(data, run_dir, base + overrides)
    return dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, model=str(warm)))


def step_times(trainer: Trainer) -> list[float]:
    """Train and return the step times (s) from the run's ``metrics.jsonl``."""
    trainer.train()
    lines = (trainer.config.run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["time/step"] for x in lines]


class HookTimer:
    """Adds up the wall time spent in hooks it wraps, per key (``""`` unless given)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def wrap(self, obj: Any, names: tuple[str, ...], key: str = "") -> None:
        """Replace ``obj``'s methods ``names`` by timed versions counted under ``key``."""
        for name in names:
            setattr(obj, name, self._timed(getattr(obj, name), key))

    def _timed(self, fn: Any, key: str) -> Any:
        def timed(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.seconds[key] += time.perf_counter() - t0

        return timed


def paired_ratio(on: list[list[float]], off: list[list[float]]) -> dict[str, float]:
    """On/off step-time ratios of runs made in pairs (the two runs of a pair back to back,
    with the same seed, so step ``i`` of both does the same work):

    * ``median``, ``lo``, ``hi``: over pairs, of (mean step time on / mean step time off);
    * ``per_step``: the geometric mean of the per-step ratios ``on[i] / off[i]`` over every
      pair, the 10% most extreme at each end left out. A machine that speeds up or slows down
      over seconds moves both steps of a ratio; a cost the ledger puts on one step in three
      still counts.
    """
    ratios = sorted(
        statistics.mean(a) / statistics.mean(b) for a, b in zip(on, off, strict=True) if a and b
    )
    logs = sorted(
        math.log(x / y) for a, b in zip(on, off, strict=True) for x, y in zip(a, b, strict=True)
    )
    cut = len(logs) // 10
    kept = logs[cut : len(logs) - cut] or logs
    return {
        "median": statistics.median(ratios),
        "lo": ratios[0],
        "hi": ratios[-1],
        "per_step": math.exp(statistics.fmean(kept)),
    }
