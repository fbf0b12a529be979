"""``trustgrpo report``: usage, exit codes, and reports of ledgers that are not clean."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from trustgrpo.cli import main
from trustgrpo.ledger import Ledger, LedgerReader
from trustgrpo.ledger.replay import replay
from trustgrpo.report import build_report, cohen_kappa, collect
from trustgrpo.report._collect import Subset

ROOT = Path(__file__).resolve().parents[2]


def test_help_names_the_options() -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as info:
        main(["report", "--help"])
    assert info.value.code == 0
    text = buf.getvalue()
    for option in ("RUN", "--out", "--pdf", "--replay-sample", "--url"):
        assert option in text


def test_writes_the_report_where_asked(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["plain"], run)
    assert main(["report", str(run), "--replay-sample", "2"]) == 0
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(run), "--out", str(out), "--replay-sample", "0"]) == 0
    assert out.is_file()
    assert str(out) in capsys.readouterr().out
    assert "disabled with --replay-sample 0" in out.read_text()


def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no ledger in" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--replay-sample", "-1"]) == 2


def test_pdf_without_chromium_is_a_usage_error(
    runs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRUSTGRPO_CHROMIUM", str(tmp_path / "no-such-browser"))
    out = tmp_path / "r.html"
    assert (
        main(["report", str(runs["plain"]), "--out", str(out), "--pdf", "--replay-sample", "0"])
        == 2
    )
    assert "needs Chromium" in capsys.readouterr().err
    assert out.is_file()  # the HTML was written first


def test_a_tampered_ledger_is_reported_as_such(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["plain"], run)
    db = sqlite3.connect(run / "ledger.db")
    idx, leaf = db.execute("SELECT idx, data FROM events WHERE kind = 'reward' LIMIT 1").fetchone()
    forged = bytes(leaf).replace(b'"num_tokens":', b'"num_tokens":1', 1)
    db.execute(
        "UPDATE events SET data = ?, leaf_hash = ? WHERE idx = ?",
        (forged, hashlib.sha256(b"\x00" + forged).digest(), idx),
    )
    db.commit()
    db.close()
    assert main(["report", str(run), "--replay-sample", "0"]) == 0
    assert "does NOT verify" in capsys.readouterr().err
    html = (run / "report.html").read_text()
    assert "DOES NOT VERIFY" in html and "FAILED" in html
    # The problem, where it is: the signed span that holds the forged event.
    spans = [(int(a), int(b)) for a, b in re.findall(r"events (\d+)\.\.(\d+) differ", html)]
    assert spans and any(a <= idx <= b for a, b in spans), spans


def _event_ids(report: object) -> set[int]:
    return {r.event for r in report.results}  # type: ignore[attr-defined]


def test_replay_sample_is_the_one_audit_replay_draws(runs: dict[str, Path]) -> None:
    """So that a third party's `audit replay --sample N --seed S` re-scores the same events."""
    with LedgerReader.open_readonly(runs["reviewed"]) as reader:
        for n, seed in ((5, 0), (17, 3), (500, 1)):
            s = collect(reader, replay_sample=n, replay_seed=seed)
            ours = replay(Subset(reader, [i for i, *_ in s.sessions] + s.replay_pick))
            theirs = replay(reader, sample=n, seed=seed)
            assert _event_ids(ours) == _event_ids(theirs)
            assert ours.counts == theirs.counts and ours.events == theirs.events


def _hand_built(run: Path) -> None:
    """Three steps of two samples; resumed after step 1, steps 2-3 redone with new rewards."""
    inventory = [
        {
            "id": "v@1",
            "name": "v",
            "type": "exact",
            "version": "1",
            "role": "reward",
            "weight": 1.0,
            "source_hash": "ab" * 32,
            "params": {},
        }
    ]
    started = {
        "config": {"run": {"name": "hand"}, "grpo": {"max_steps": 3}, "monitors": {}},
        "provenance": {"verifiers": inventory},
        "start_step": 0,
    }
    with Ledger.open(run) as ledger:

        def step(n: int, rewards: list[float]) -> None:
            for i, r in enumerate(rewards):
                status = "correct" if r == 1 else "incorrect"
                ledger.append(
                    "reward",
                    {
                        "step": n,
                        "prompt_id": "p",
                        "group_id": 0,
                        "index": i,
                        "prompt_blob": None,
                        "completion_blob": None,
                        "num_tokens": 3 + i,
                        "truncated": False,
                        "reward": r,
                        "advantage": 0.0,
                        "outcomes": [{"verifier": "v@1", "status": status, "score": r}],
                    },
                )
            ledger.append(
                "step",
                {
                    "step": n,
                    "num_samples": 2,
                    "group_size": 2,
                    "metrics": {"reward/mean": sum(rewards) / 2, "time/update": 1.5},
                },
            )

        ledger.append("run_started", started)
        step(1, [1.0, 0.0])
        step(2, [0.0, 0.0])
        step(3, [0.0, 0.0])  # the crash: steps 2 and 3 are redone from the step-1 checkpoint
        config = {**started["config"], "grpo": {"max_steps": 4}}  # and asked for one more step
        ledger.append("run_resumed", {**started, "config": config, "start_step": 1})
        step(2, [1.0, 1.0])
        step(3, [1.0, 0.0])
        ledger.append("run_finished", {"result": {"steps": 3, "stopped_early": False}})
        ledger.sign()


def test_a_resumed_run_counts_the_steps_of_its_latest_session(tmp_path: Path) -> None:
    _hand_built(tmp_path)
    with LedgerReader.open_readonly(tmp_path) as reader:
        s = collect(reader)
    assert [r.step for r in s.steps] == [1, 2, 3]
    assert [r.reward_mean for r in s.steps] == [0.5, 1.0, 0.5]
    assert [r.success for r in s.steps] == [0.5, 1.0, 0.5]
    assert s.samples == 6 and s.reward_events == 10 and s.superseded == 4
    assert s.phase_seconds == {"update": 4.5}
    assert s.outcome_counts == [
        {"correct": 4, "incorrect": 2, "abstain": 0, "error": 0, "timeout": 0}
    ]
    assert len(s.sessions) == 2
    assert s.changes == ["event 10 (resumed at step 1): grpo.max_steps 3 → 4"]
    result = build_report(tmp_path, replay_sample=0)
    html = result.html.read_text()
    assert "4 reward events belong to steps redone after a resume" in html


def test_cohen_kappa() -> None:
    # Cohen (1960)-style 2x2 example: 20 agree yes, 15 agree no, 5 + 10 disagree
    pairs = [("y", "y")] * 20 + [("n", "n")] * 15 + [("y", "n")] * 5 + [("n", "y")] * 10
    p_o, p_e, kappa = cohen_kappa(pairs, ("y", "n"))
    assert p_o == pytest.approx(0.7)
    assert p_e == pytest.approx(0.5)  # (25/50)(30/50) + (25/50)(20/50)
    assert kappa == pytest.approx(0.4)
    assert cohen_kappa([], ("y", "n")) == (None, None, None)
    assert cohen_kappa([("y", "y")] * 4, ("y", "n"))[2] is None  # chance agreement is 1
    assert cohen_kappa([("y", "n"), ("n", "y")], ("y", "n"))[2] == pytest.approx(-1.0)


def test_detectors_are_listed_from_the_record_without_the_monitors_package(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustgrpo.report._monitors import detector_table

    with LedgerReader.open_readonly(runs["plain"]) as reader:
        s = collect(reader)
    monkeypatch.setitem(sys.modules, "trustgrpo.monitors", None)  # import fails
    table = detector_table(s.config["monitors"], s.components, s.alerts)
    assert "not installed" in table.source
    assert [d.name for d in table.detectors] == ["saturation"]
    sat = table.detectors[0]
    assert sat.active is None and sat.action == "review"
    assert {x.key: x.value for x in sat.settings} == {"window": 1, "threshold": 0.1}
    assert sat.alerts["review"] == len(s.alerts)


def test_templates_ship_with_the_package() -> None:
    """A wheel must carry the template (setuptools takes only .py files unless told)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["trustgrpo"]
    assert "report/templates/*" in patterns, (
        'pyproject.toml: add "report/templates/*" to [tool.setuptools.package-data] trustgrpo'
    )
    assert (ROOT / "src/trustgrpo/report/templates/report.html.j2").is_file()
    extras = data["project"]["optional-dependencies"]
    assert "report" in extras, "pyproject.toml: add the report extra (jinja2, matplotlib)"
    assert {"jinja2", "matplotlib"} <= {x.split(">")[0].split("=")[0] for x in extras["report"]}
