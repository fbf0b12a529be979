"""Each record-reading detector on synthetic streams: it fires within a bounded number of
steps after its flaw starts, and stays silent on the clean counterpart (the same stream, same
seed, without the flaw)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from monitor_synthetic import COMPONENTS, Stream

from trustgrpo.monitors import Alert, Context, Monitor, load_config

CONFIG = {"group_bias": {"column": "category"}}


def run(stream: Stream, raw: dict[str, Any] | None = None) -> list[Alert]:
    monitor = Monitor(load_config(raw or CONFIG), Context(COMPONENTS, seed=stream.seed))
    out: list[Alert] = []
    for data, metrics in stream:
        out += monitor.on_rewards(data) + monitor.on_metrics(data.step, metrics)
    return out


# flaw, detector, check prefix, onset, fire within (steps after the onset)
SCENARIOS = [
    ("length_pays", "length_bias", "reward_tracks_length", 1, 100),
    ("incorrect_longer", "length_bias", "incorrect_longer", 100, 200),
    ("format_only", "component_dominance", "format", 1, 80),
    ("category_gap", "group_bias", "success:b", 1, 250),
    ("no_signal", "saturation", "zero_variance_groups", 1, 25),
    ("errors_start", "verifier_health", "failures:accuracy", 100, 10),
    ("abstains_start", "verifier_health", "abstain_rise:accuracy", 100, 20),
    ("entropy_collapse", "training_health", "entropy_collapse", 100, 40),
    ("kl_spike", "training_health", "kl_spike", 100, 1),
    ("repetition", "training_health", "repetition", 100, 25),
]


@pytest.mark.parametrize(("flaw", "detector", "check", "onset", "within"), SCENARIOS)
def test_fires_within_bound_and_clean_counterpart_is_silent(
    flaw: str, detector: str, check: str, onset: int, within: int
) -> None:
    steps = onset + within + 20
    for seed in (0, 1):
        alerts = run(Stream(seed=seed, steps=steps, flaw=flaw, onset=onset))
        hits = [a for a in alerts if a.detector == detector and a.check.startswith(check)]
        assert hits, f"{flaw} (seed {seed}): no {detector}/{check} alert in {steps} steps"
        assert onset <= hits[0].step <= onset + within, (flaw, hits[0].step)
        a = hits[0]
        assert (
            a.statistic < a.threshold
            if check == "entropy_collapse"
            else (a.statistic >= a.threshold)
        )
        clean = run(Stream(seed=seed, steps=steps))
        assert [a for a in clean if a.detector == detector] == [], (flaw, clean)


def test_alert_fields_and_evidence() -> None:
    alerts = run(Stream(seed=0, steps=120, flaw="length_pays"))
    a = alerts[0]
    assert (a.detector, a.severity, a.action) == ("length_bias", "review", "review")
    assert a.threshold == 0.3 and a.statistic > 0.9
    assert 0 < len(a.evidence) <= 16 and all(isinstance(r, int) for r in a.evidence)
    step_refs = range((a.step - 1) * 64, a.step * 64)  # the stream's refs for that step
    assert set(a.evidence) <= set(step_refs)
    assert "length" in a.message and a.details["length_share"] >= 0.5
    body = a.to_body()
    assert set(body) == {
        "step",
        "detector",
        "check",
        "severity",
        "statistic",
        "threshold",
        "evidence",
        "action",
        "message",
        "details",
    }
    back = Alert.from_body(body, 7)
    assert back.index == 7 and back.to_body() == body


def test_cooldown_and_max_action() -> None:
    raw = {
        **CONFIG,
        "cooldown_steps": 10,
        "max_action": "warn",
        "saturation": {"action": "halt", "window": 5},
    }
    alerts = [
        a
        for a in run(Stream(seed=0, steps=60, flaw="no_signal"), raw)
        if a.detector == "saturation"
    ]
    assert [a.step for a in alerts] == [5, 15, 25, 35, 45, 55]
    assert {a.severity for a in alerts} == {"warn"}


def test_disabled_detector_is_not_built() -> None:
    raw = {"length_bias": {"enabled": False}, "group_bias": {"column": ""}}
    monitor = Monitor(load_config(raw), Context(COMPONENTS))
    assert "length_bias" not in monitor.names and "group_bias" not in monitor.names
    assert "saturation" in monitor.names and "canaries" not in monitor.names  # offline


def test_masked_and_empty_steps_do_not_break_detectors() -> None:
    stream = iter(Stream(seed=0, steps=3))
    data, _ = next(stream)
    data.rewards[:] = np.nan
    data.scores[:] = np.nan
    monitor = Monitor(load_config(CONFIG), Context(COMPONENTS))
    for _ in range(60):
        monitor.on_rewards(data)
        monitor.on_metrics(data.step, {"entropy": float("nan"), "kl": 0.0})
