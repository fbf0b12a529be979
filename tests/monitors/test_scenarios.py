"""Short real training runs (tiny model, real trainer, ledger and verifiers) with deliberately
flawed verifiers: each detector must fire within a bounded number of steps, and a clean run
with every detector on must stay silent."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from monitor_tasks import write_rows

from trustgrpo.callbacks import Callback, RunInfo, StepBatch
from trustgrpo.cli import main
from trustgrpo.config import dump_toml, from_dict
from trustgrpo.ledger import LedgerReader
from trustgrpo.monitors import DETECTORS, Alert, monitor_run
from trustgrpo.trainer import RunResult, Trainer

Tiny = Callable[..., dict[str, Any]]
FLAWED = {"reward": {"self_test": 0}}  # the start-of-run self-test would refuse these verifiers


def train(raw: dict[str, Any], *callbacks: Callback) -> tuple[Trainer, RunResult]:
    trainer = Trainer(from_dict(raw), callbacks=callbacks, progress=False)
    return trainer, trainer.train()


def alerts_of(trainer: Trainer) -> list[Alert]:
    return list(trainer.monitors[0].alerts)  # type: ignore[attr-defined]


def first(alerts: list[Alert], detector: str, check: str = "") -> Alert:
    hits = [a for a in alerts if a.detector == detector and a.check.startswith(check)]
    assert hits, f"no {detector}/{check} alert; got {[(a.detector, a.check) for a in alerts]}"
    return hits[0]


def ledger_alerts(run_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    with LedgerReader.open_readonly(run_dir) as reader:
        return [(e.index, e.body) for e in reader.events() if e.kind == "alert"]


def assert_evidence_is_the_steps_reward_events(run_dir: Path, alert: Alert) -> None:
    assert alert.evidence and all(isinstance(r, int) for r in alert.evidence), alert.evidence
    with LedgerReader.open_readonly(run_dir) as reader:
        for r in alert.evidence:
            ev = reader.get_event(int(r))  # type: ignore[arg-type]
            assert ev.kind == "reward" and ev.body["step"] == alert.step


class Switch(Callback):
    """Creates a file at the end of step ``at`` (an outside change during the run)."""

    def __init__(self, path: Path, at: int) -> None:
        self.path, self.at = path, at

    def on_step_end(self, run: RunInfo, batch: StepBatch) -> bool | None:
        if batch.step == self.at:
            self.path.write_text("on")
        return None


def test_clean_run_with_every_detector_is_silent(tiny: Tiny, tmp_path: Path) -> None:
    canaries = write_rows(
        tmp_path / "canaries.jsonl",
        [
            {"id": "wrong", "prompt": "01", "completion": "0", "reference": "1"},
            {"id": "both", "prompt": "01", "completion": "1 0", "reference": "1"},
            {"id": "empty", "prompt": "10", "completion": "", "reference": "1"},
        ],
    )
    probes = write_rows(
        tmp_path / "probes.jsonl",
        [
            {"id": "right", "prompt": "0", "completion": "1", "reference": "1", "expected": 1},
            {"id": "wrong", "prompt": "0", "completion": "11", "reference": "1"},
        ],
    )
    raw = tiny(
        "ones",
        [
            {"type": "numeric", "extract": "full", "name": "accuracy"},
            {"type": "overlong", "max_length": 3, "buffer": 2, "role": "shaping", "weight": 0.1},
        ],
        steps=60,
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
            "saturation": {"window": 10},
            "training_health": {"window": 10},
        },
    )
    trainer, result = train(raw)
    assert trainer.monitors[0].monitor.names == list(DETECTORS)  # type: ignore[attr-defined]
    assert not result.stopped_early and result.steps == 60
    assert alerts_of(trainer) == []
    assert ledger_alerts(result.run_dir) == []
    assert main(["monitor", str(result.run_dir)]) == 0


def test_verifier_paying_for_length_trips_length_bias(tiny: Tiny) -> None:
    raw = tiny(
        "ones",
        [{"type": "monitor_flaws:pays_for_length"}],
        steps=32,
        lr=2e-3,
        max_new_tokens=12,
        monitors={"max_action": "review", "length_bias": {"window": 10}},
        **FLAWED,
    )
    trainer, result = train(raw)
    alert = first(alerts_of(trainer), "length_bias", "reward_tracks_length")
    assert alert.step <= 30 and alert.statistic >= 0.3
    assert alert.details["length_share"] >= 0.5
    assert_evidence_is_the_steps_reward_events(result.run_dir, alert)
    recorded = dict(ledger_alerts(result.run_dir))
    assert recorded[alert.index]["detector"] == "length_bias"  # type: ignore[index]
    # offline, the same detectors over the ledger find the same alerts with the same evidence
    with LedgerReader.open_readonly(result.run_dir) as reader:
        report = monitor_run(reader)
    online = [
        (a.step, a.detector, a.check, a.evidence)
        for a in alerts_of(trainer)
        if a.detector in report.detectors
    ]
    offline = [(a.step, a.detector, a.check, a.evidence) for a in report.alerts]
    assert offline == online


def test_any_answer_in_format_passes_a_canary_and_halts(tiny: Tiny, tmp_path: Path) -> None:
    canaries = write_rows(
        tmp_path / "canaries.jsonl",
        [{"id": "wrong-digit", "prompt": "01", "completion": "0", "reference": "1"}],
    )
    raw = tiny(
        "ones",
        [{"type": "monitor_flaws:format_only"}],
        steps=10,
        monitors={"canaries": {"file": str(canaries), "builtin": 0}},
        **FLAWED,
    )
    run_file = tmp_path / "canary.toml"
    run_file.write_text(dump_toml(from_dict(raw).to_dict()))
    assert main(["train", str(run_file), "--quiet"]) == 3  # halted before the first update
    run_dir = Path(raw["run"]["output_dir"]) / raw["run"]["name"]
    ((_, body),) = ledger_alerts(run_dir)
    assert (body["detector"], body["check"], body["step"]) == ("canaries", "canary", 1)
    assert (body["severity"], body["action"]) == ("halt", "halt")
    assert body["evidence"][0]["canary"] == "wrong-digit"
    assert not (run_dir / "checkpoints").exists()  # no step completed
    assert main(["monitor", str(run_dir)]) == 1


def test_overoptimised_policy_trips_held_out_gap(tiny: Tiny, tmp_path: Path) -> None:
    """Gao et al.: a warm-started policy that answers "1" is trained by a verifier paying for
    length; the training reward rises, the held-out exact verifier's success falls."""
    from trustgrpo.sft import warm_start

    warm = tmp_path / "warm"
    base = tiny(
        "ones", name="sft", sft={"steps": 120, "target_template": "{answer}", "learning_rate": 1e-2}
    )
    warm_start(from_dict(base), warm, progress=False)
    raw = tiny(
        "ones",
        [{"type": "monitor_flaws:pays_for_length", "correct_at": 0.5}],
        steps=22,
        lr=2e-3,
        max_new_tokens=12,
        monitors={"max_action": "review", "held_out": {"verifier": {"type": "exact"}, "every": 10}},
        **FLAWED,
    )
    raw["policy"] = {"model": str(warm)}
    trainer, _ = train(raw)
    gap = first(alerts_of(trainer), "held_out", "proxy_gold_gap")
    drop = first(alerts_of(trainer), "held_out", "held_out_drop")
    assert gap.step <= 21 and drop.step <= 21
    assert gap.evidence and "completion" in gap.evidence[0]  # type: ignore[operator]


def test_format_rising_with_flat_accuracy_trips_component_dominance(tiny: Tiny) -> None:
    """TRL #5298: the format reward climbs while accuracy stays at zero (the answer "2"
    cannot even be written)."""
    raw = tiny(
        "two",
        [
            {"type": "regex", "pattern": "[01]", "name": "format"},
            {"type": "numeric", "extract": "full", "name": "accuracy"},
        ],
        steps=26,
        lr=1e-2,
        max_new_tokens=1,
        monitors={"max_action": "review", "component_dominance": {"window": 10}},
        **FLAWED,
    )
    trainer, result = train(raw)
    alert = first(alerts_of(trainer), "component_dominance", "format")
    assert alert.step <= 25 and alert.details["accuracy_success"] == 0.0
    assert_evidence_is_the_steps_reward_events(result.run_dir, alert)


def test_nondeterministic_verifier_is_named(tiny: Tiny) -> None:
    raw = tiny(
        "ones",
        [{"type": "monitor_flaws:coin_flip"}],
        steps=6,
        monitors={"max_action": "review"},
        **FLAWED,
    )
    trainer, result = train(raw)
    alert = first(alerts_of(trainer), "nondeterminism")
    assert alert.step <= 5
    assert alert.check == "mismatch:monitor_flaws:coin_flip"
    assert "monitor_flaws:coin_flip@" in alert.message
    assert_evidence_is_the_steps_reward_events(result.run_dir, alert)


@pytest.mark.parametrize(("max_share", "rescored"), [(0.001, 1), (1.0, 10)])
def test_re_scoring_a_slow_verifier_keeps_to_its_share(
    tiny: Tiny, max_share: float, rescored: int
) -> None:
    import monitor_flaws

    monitor_flaws.CALLS.clear()
    raw = tiny(
        "ones",
        [{"type": "monitor_flaws:slow_exact"}],
        name=f"slow-{max_share}",
        steps=10,
        monitors={"nondeterminism": {"max_share": max_share}, "canaries": {"enabled": False}},
        data={"eval": ""},
        **FLAWED,
    )
    trainer, _ = train(raw)
    assert monitor_flaws.CALLS.count(32) == 10  # training: one batch per step
    assert monitor_flaws.CALLS.count(8) == rescored  # the monitor's samples
    assert alerts_of(trainer) == []


def test_verifier_that_starts_failing_trips_verifier_health(tiny: Tiny, tmp_path: Path) -> None:
    switch = tmp_path / "service-down"
    raw = tiny(
        "ones",
        [{"type": "monitor_flaws:flaky_after", "switch": str(switch)}],
        steps=12,
        monitors={"max_action": "review"},
        **FLAWED,
    )
    trainer, _ = train(raw, Switch(switch, 8))
    alert = first(alerts_of(trainer), "verifier_health", "failures:monitor_flaws:flaky_after")
    assert alert.step == 9 and "failed (error or timeout)" in alert.message


def test_reward_function_drift_trips_probe_set(tiny: Tiny, tmp_path: Path) -> None:
    switch = tmp_path / "upgraded"
    probes = write_rows(
        tmp_path / "probes.jsonl",
        [
            {"id": "extra-digit", "prompt": "01", "completion": "11", "reference": "1"},
            {"id": "exact", "prompt": "0", "completion": "1", "reference": "1", "expected": 1},
        ],
    )
    raw = tiny(
        "ones",
        [{"type": "monitor_flaws:drifts_after", "switch": str(switch)}],
        steps=12,
        monitors={"max_action": "review", "probe_drift": {"file": str(probes), "every": 5}},
        **FLAWED,
    )
    trainer, _ = train(raw, Switch(switch, 8))
    alert = first(alerts_of(trainer), "probe_drift")
    assert alert.step == 11  # the first check after the change (checks at 1, 6, 11)
    assert [e["probe"] for e in alert.evidence] == ["extra-digit"]  # type: ignore[index]


def test_solved_task_trips_saturation(tiny: Tiny) -> None:
    raw = tiny("ones", steps=50, lr=1e-2, max_new_tokens=1)
    trainer, result = train(raw)
    alert = first(alerts_of(trainer), "saturation")
    assert alert.step <= 50 and alert.severity == "warn"
    assert "solved" in alert.message
    assert {a.severity for a in alerts_of(trainer)} == {"warn"}
    assert main(["monitor", str(result.run_dir)]) == 0  # warnings alone do not fail


def test_monitors_do_not_change_training(tiny: Tiny) -> None:
    monitors = {
        "held_out": {"verifier": {"type": "exact"}, "every": 2},
        "canaries": {"every": 2},
        "nondeterminism": {"sample": 32},
    }
    _, on = train(tiny("ones", name="on", steps=5, monitors=monitors))
    _, off = train(tiny("ones", name="off", steps=5, monitors={"enabled": False}))

    def fingerprint(run_dir: Path) -> list[dict[str, Any]]:
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "eval/"))} for r in rows]

    assert fingerprint(on.run_dir) == fingerprint(off.run_dir)
    weights = "checkpoints/step-5/model.safetensors"
    assert (on.run_dir / weights).read_bytes() == (off.run_dir / weights).read_bytes()


def test_resumed_run_raises_the_same_alerts(tiny: Tiny) -> None:
    """The record-reading detectors are warmed up from the ledger on resume, so a run cut
    after step 14 and resumed from its step-10 checkpoint raises what the uninterrupted run
    raises; offline, the redone steps 11-14 count once."""
    common = dict(lr=2e-3, max_new_tokens=12, **FLAWED)
    monitors = {"max_action": "review", "length_bias": {"window": 8}, "cooldown_steps": 5}
    verifiers = [{"type": "monitor_flaws:pays_for_length"}]
    full, _ = train(tiny("ones", verifiers, name="full", steps=28, monitors=monitors, **common))
    cut = from_dict(
        tiny(
            "ones",
            verifiers,
            name="cut",
            steps=14,
            monitors=monitors,
            grpo={"checkpoint_every": 10},
            **common,
        )
    )
    Trainer(cut, progress=False).train()
    shutil.rmtree(cut.run_dir / "checkpoints" / "step-14")  # as if killed before it: 11-14 redone
    longer = dataclasses.replace(cut, grpo=dataclasses.replace(cut.grpo, max_steps=28))
    resumed = Trainer(longer, resume=True, progress=False)
    resumed.train()

    def key(alerts: list[Alert]) -> list[tuple[int, str, str]]:
        return [(a.step, a.detector, a.check) for a in alerts if a.detector == "length_bias"]

    expected = key(alerts_of(full))
    assert any(step > 14 for step, _, _ in expected), expected
    assert key([Alert.from_body(b) for _, b in ledger_alerts(cut.run_dir)]) == expected
    assert key(alerts_of(resumed)) == [k for k in expected if k[0] > 10]
    with LedgerReader.open_readonly(cut.run_dir) as reader:  # offline: each step once
        report = monitor_run(reader)
    assert report.steps == 28 and key(report.alerts) == expected


@pytest.mark.parametrize("decision", ["continue", "halt"])
def test_pause_waits_for_a_decision(tiny: Tiny, decision: str) -> None:
    """A ``pause`` alert blocks training until ``trustgrpo review resolve`` records a decision
    (from another thread here; another process in real use: the ledger takes both)."""
    import threading
    import time

    raw = tiny(
        "ones",
        [{"type": "monitor_flaws:coin_flip"}],
        name=f"pause-{decision}",
        steps=8,
        monitors={
            "nondeterminism": {"action": "pause"},
            "canaries": {"enabled": False},
            "pause_poll_s": 0.05,
            "cooldown_steps": 100,
        },
        **FLAWED,
    )
    trainer = Trainer(from_dict(raw), progress=False)
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", trainer.train()))
    thread.start()
    run_dir = trainer.run_dir
    deadline = time.monotonic() + 60
    alert_index = None
    while alert_index is None and time.monotonic() < deadline:
        time.sleep(0.05)
        if (run_dir / "ledger.db").exists():
            found = [i for i, b in ledger_alerts(run_dir) if b["action"] == "pause"]
            alert_index = found[0] if found else None
    assert alert_index is not None, "the run never paused"
    time.sleep(0.3)
    assert thread.is_alive()  # waiting
    args = [
        "review",
        "resolve",
        str(run_dir),
        str(alert_index),
        "--decision",
        decision,
        "--reviewer",
        "alice",
        "--reason",
        "checked the evidence",
    ]
    assert main(args) == 0
    thread.join(60)
    assert not thread.is_alive()
    result = out["result"]
    with LedgerReader.open_readonly(run_dir) as reader:
        decisions = [e.body for e in reader.events() if e.kind == "decision"]
    assert decisions == [
        {
            "alert": alert_index,
            "decision": decision,
            "reviewer": "alice",
            "reason": "checked the evidence",
        }
    ]
    if decision == "continue":
        assert not result.stopped_early and result.steps == 8
    else:
        assert result.stopped_early
        paused_at = Alert.from_body(dict(ledger_alerts(run_dir))[alert_index]).step
        assert result.steps == paused_at - 1  # stopped before that step's update
    assert main(["audit", "verify", str(run_dir)]) == 0
