"""The embedded demo as a benchmark workload: its data, a cached warm start, run configs.

Shared by ``bench/monitors.py`` and ``bench/ledger.py --training``: both measure what a
component costs on the demo's GRPO step (16 prompts x 8 completions, a 2-layer, 128-wide
Llama) by training with it on and off.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
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
    """The demo's run file from the warm start: ``steps`` GRPO steps, no periodic evaluation
    and no verifier self-test (the same in every arm), plus ``overrides``."""
    base = [
        f"grpo.max_steps={steps}",
        f"run.seed={seed}",
        "grpo.eval_every=0",
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
        self.seconds: Counter[str] = Counter()

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
