"""False alarms: over 20 seeds of clean runs, each detector raises at most one alert per 1,000
steps.

* fast: 20 synthetic clean runs (:mod:`synthetic`: a run that learns, with abstains, a
  rising format component, category columns, slowly decaying entropy) × 400 steps, every
  record-reading detector;
* slow (``--runslow``): the same × 2,000 steps, and 20 real tiny training runs × 100 steps
  with every detector on (held-out verifier, canaries, probes, categories included).

Run ``pytest tests/monitors/test_false_alarms.py --runslow -s`` to see the rates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from monitor_synthetic import COMPONENTS, Stream
from monitor_tasks import write_rows

from trustgrpo.config import from_dict
from trustgrpo.monitors import DETECTORS, Context, Monitor, load_config
from trustgrpo.trainer import Trainer

SEEDS = 20
LIMIT = 1 / 1000


def rates(counts: Counter[str], steps: int, what: str) -> dict[str, float]:
    out = {name: counts[name] / steps for name in DETECTORS}
    print(f"\n{what}: {steps} steps")
    for name, r in out.items():
        print(f"  {name:20s} {counts[name]:3d} alerts  {1000 * r:.2f} per 1,000 steps")
    return out


def synthetic_rates(steps: int) -> dict[str, float]:
    cfg = load_config({"group_bias": {"column": "category"}})
    counts: Counter[str] = Counter()
    for seed in range(SEEDS):
        monitor = Monitor(cfg, Context(COMPONENTS, seed=seed))
        for data, metrics in Stream(seed=seed, steps=steps):
            for a in monitor.on_rewards(data) + monitor.on_metrics(data.step, metrics):
                counts[a.detector] += 1
    return rates(counts, SEEDS * steps, f"synthetic clean runs, {SEEDS} seeds")


def test_false_alarm_rate_on_synthetic_clean_runs() -> None:
    for name, r in synthetic_rates(400).items():
        assert r <= LIMIT, name


@pytest.mark.slow
def test_false_alarm_rate_on_long_synthetic_clean_runs() -> None:
    for name, r in synthetic_rates(2000).items():
        assert r <= LIMIT, name


@pytest.mark.slow
def test_false_alarm_rate_on_real_clean_runs(
    tiny: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """Real tiny runs that learn ("1" is the answer; accuracy rises from ~0.2 to ~0.5 in 100
    steps, DAPO overlong shaping, every detector on with small windows)."""
    canaries = write_rows(
        tmp_path / "canaries.jsonl",
        [
            {"id": "wrong", "prompt": "01", "completion": "0", "reference": "1"},
            {"id": "both", "prompt": "01", "completion": "1 0", "reference": "1"},
        ],
    )
    probes = write_rows(
        tmp_path / "probes.jsonl",
        [
            {"id": "right", "prompt": "0", "completion": "1", "reference": "1", "expected": 1},
            {"id": "wrong", "prompt": "0", "completion": "11", "reference": "1"},
        ],
    )
    steps = 100
    counts: Counter[str] = Counter()
    for seed in range(SEEDS):
        raw = tiny(
            "ones",
            [
                {"type": "numeric", "extract": "full", "name": "accuracy"},
                {
                    "type": "overlong",
                    "max_length": 3,
                    "buffer": 2,
                    "role": "shaping",
                    "weight": 0.1,
                },
            ],
            name=f"clean-{seed}",
            seed=seed,
            steps=steps,
            lr=5e-3,
            max_new_tokens=3,
            monitors={
                "length_bias": {"window": 10},
                "component_dominance": {"window": 10},
                "held_out": {"verifier": {"type": "exact"}, "every": 10},
                "canaries": {"file": str(canaries), "every": 10},
                "probe_drift": {"file": str(probes), "every": 10},
                "group_bias": {"column": "kind", "window": 10, "min_groups": 5},
                "verifier_health": {"window": 10},
                "training_health": {"window": 10},
            },
            ledger={"enabled": False},
        )
        trainer = Trainer(from_dict(raw), progress=False)
        trainer.train()
        for a in trainer.monitors[0].alerts:  # type: ignore[attr-defined]
            print(f"  seed {seed} step {a.step}: {a.detector}/{a.check} {a.statistic:.3g}")
            counts[a.detector] += 1
    for name, r in rates(counts, SEEDS * steps, f"real tiny clean runs, {SEEDS} seeds").items():
        assert r <= LIMIT, name
