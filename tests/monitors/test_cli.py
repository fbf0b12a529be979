"""``trustgrpo monitor`` and ``trustgrpo review resolve`` on a recorded run."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trustgrpo.cli import build_parser, main
from trustgrpo.config import from_dict
from trustgrpo.ledger import LedgerReader
from trustgrpo.monitors.cli import add_commands, review_subparsers
from trustgrpo.trainer import Trainer


@pytest.fixture
def flawed_run(tiny: Callable[..., dict[str, Any]]) -> Path:
    """A run whose verifier pays for length: length-bias alerts (recomputable) and a canary
    self-test alert (live, recorded)."""
    raw = tiny(
        "ones",
        [{"type": "monitor_flaws:pays_for_length"}],
        steps=24,
        lr=2e-3,
        max_new_tokens=12,
        monitors={"max_action": "review", "length_bias": {"window": 10}},
        reward={"self_test": 0},
    )
    return Trainer(from_dict(raw), progress=False).train().run_dir


def test_monitor_prints_a_table_and_exits_1(
    flawed_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitor", str(flawed_run)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("24 steps; recomputed: length_bias, verifier_health")
    assert "STEP  DETECTOR/CHECK" in lines[1]
    assert "length_bias/reward_tracks_length  review" in out
    assert "canaries/gold_rejected" in out and "recorded as event" in out
    assert "reward tracks completion length" in out

    assert main(["monitor", str(flawed_run), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    sources = {(a["detector"], a["source"]) for a in report["alerts"]}
    assert ("length_bias", "recomputed") in sources and ("canaries", "recorded") in sources
    length = next(a for a in report["alerts"] if a["detector"] == "length_bias")
    assert length["action"] == "none" and all(isinstance(e, int) for e in length["evidence"])


def test_resolve_records_a_signed_decision(
    flawed_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LedgerReader.open_readonly(flawed_run) as reader:
        alert, other = (e.index for e in reader.events() if e.kind == "alert")
        reward = next(e.index for e in reader.events() if e.kind == "reward")
        size = reader.size()
    args = ["review", "resolve", str(flawed_run), str(alert), "--decision", "continue"]
    assert main([*args, "--reviewer", "bob", "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision == {
        "event": size,
        "alert": alert,
        "decision": "continue",
        "reviewer": "bob",
        "reason": "",
    }
    assert main(["audit", "verify", str(flawed_run)]) == 0  # signed, consistent
    capsys.readouterr()
    assert main(["monitor", str(flawed_run)]) == 1
    assert "decided continue by bob" in capsys.readouterr().out

    assert main(args) == 2  # already resolved
    assert "already resolved: continue by bob" in capsys.readouterr().err
    for bad, why in [
        (str(reward), "is a 'reward' event, not an alert"),
        ("999999", "no event 999999"),
    ]:
        assert main(["review", "resolve", str(flawed_run), bad, "--decision", "halt"]) == 2
        assert why in capsys.readouterr().err
    key_args = ["review", "resolve", str(flawed_run), str(other), "--decision", "halt"]
    assert main([*key_args, "--key", str(flawed_run / "nope.key")]) == 2
    assert "signing key not found" in capsys.readouterr().err


def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert main(["monitor", str(tmp_path)]) == 2
    assert "no ledger" in capsys.readouterr().err
    assert main(["review", "resolve", str(tmp_path), "1", "--decision", "continue"]) == 2
    assert not (tmp_path / "ledger.db").exists()  # nothing created by a failed resolve


def test_clean_copy_of_a_run_without_alerts_exits_0(
    tiny: Callable[..., dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    run = Trainer(from_dict(tiny("ones", steps=5)), progress=False).train().run_dir
    assert main(["monitor", str(run)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "no alerts"
    shutil.rmtree(run / "checkpoints")  # the ledger alone is enough
    assert main(["monitor", str(run), "--json"]) == 0


def test_review_group_is_shared_with_other_modules() -> None:
    parser = argparse.ArgumentParser(prog="trustgrpo")
    sub = parser.add_subparsers(dest="command")
    add_commands(sub)
    review = review_subparsers(sub)  # what trustgrpo.review.cli will do
    review.add_parser("serve", help="serve the review page")
    assert set(review.choices) == {"resolve", "serve"}
    assert parser.parse_args(["review", "serve"]).review_command == "serve"
    assert review_subparsers(sub) is review
    top = build_parser()
    names = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"monitor", "review"} <= set(names)


@pytest.mark.parametrize("argv", [["monitor"], ["review"], ["review", "resolve"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: trustgrpo" in capsys.readouterr().out
