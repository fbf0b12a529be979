"""Pause → resolve from the page → training continues: a real training run in a subprocess
pauses on a monitor alert; a reviewer decides "continue" in the browser; the waiting trainer
reads the decision and finishes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import HERE, tiny_raw
from trustgrpo.cli import main
from trustgrpo.config import dump_toml
from trustgrpo.errors import UserError
from trustgrpo.ledger import LedgerReader

pytest.importorskip("fastapi")
STEPS = 8


def _pause_alerts(run: Path) -> list[int]:
    try:
        reader = LedgerReader.open_readonly(run)
    except UserError:  # not created yet, or its tables not yet
        return []
    with reader:
        return [
            e.index for e in reader.events() if e.kind == "alert" and e.body["action"] == "pause"
        ]


@pytest.fixture
def paused_training(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """``trustgrpo train`` in a subprocess with a flaky verifier whose nondeterminism
    pauses the run."""
    raw = tiny_raw(
        tmp_path,
        name="paused",
        steps=STEPS,
        grpo={"num_generations": 8, "eval_every": 0},
        reward={"self_test": 0},  # the self-test would refuse a flaky verifier
        monitors={
            "nondeterminism": {"action": "pause"},
            "canaries": {"enabled": False},
            "pause_poll_s": 0.05,
            "pause_timeout_s": 120,
            "cooldown_steps": 100,
        },
    )
    raw["verifiers"] = [{"type": "review_flaws:coin_flip"}]
    run_file = tmp_path / "paused.toml"
    run_file.write_text(dump_toml(raw))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "trustgrpo.cli", "train", str(run_file), "--quiet", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield tmp_path / "runs" / "paused", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_pause_is_resolved_from_the_page_and_training_continues(
    paused_training: tuple[Path, subprocess.Popen[str]],
    browser: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from trustgrpo.review.auth import Reviewers
    from trustgrpo.review.server import serve_in_background

    run, proc = paused_training
    run.mkdir(parents=True, exist_ok=True)
    token = Reviewers(run).add("alice")
    with serve_in_background(run, port=0) as server:  # before the ledger exists
        deadline = time.monotonic() + 90
        while not (alerts := _pause_alerts(run)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never paused"
            time.sleep(0.1)
        alert = alerts[0]
        time.sleep(0.3)
        assert proc.poll() is None  # waiting for a decision

        context = browser.new_context()
        page = context.new_page()
        try:
            page.goto(server.url + "/")
            page.fill("#token", token)
            page.click("form[action='/login'] button[type=submit]")
            page.wait_for_url(server.url + "/")
            assert page.locator("text=Training is paused").count() == 1
            page.click(".banner.pause >> text=Decide")
            card = page.locator(f"#alert-{alert}")
            card.locator("input[name=reason]").fill("flaky verifier, known; keep going")
            card.locator("button[value=continue]").click()
            page.wait_for_load_state()
            assert f"Alert {alert}: continue recorded" in page.locator(".notice").inner_text()
            assert "Decided continue by alice" in page.locator(f"#alert-{alert}").inner_text()
            out, err = proc.communicate(timeout=90)
            page.goto(server.url + "/")
            assert page.locator("#card-run .big").inner_text() == "finished"
            assert page.locator("meta[http-equiv=refresh]").count() == 0
        finally:
            context.close()

        assert proc.returncode == 0, err
        assert f"alert {alert} resolved: continue by alice" in err
        assert f'"steps": {STEPS}' in out and '"stopped_early": false' in out

    with LedgerReader.open_readonly(run) as reader:
        events = list(reader.events())
    decisions = [e for e in events if e.kind == "decision"]
    assert decisions[0].body == {
        "alert": alert,
        "decision": "continue",
        "reviewer": "alice",
        "reason": "flaky verifier, known; keep going",
    }
    assert decisions[0].index > alert
    assert events[-1].kind == "run_finished"
    assert max(e.body["step"] for e in events if e.kind == "step") == STEPS
    assert main(["audit", "verify", str(run)]) == 0
    capsys.readouterr()
