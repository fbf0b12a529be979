"""``audit replay``: re-run recorded verifiers on stored inputs, refuse changed versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trustgrpo.callbacks import RunInfo, StepBatch
from trustgrpo.ledger import Ledger
from trustgrpo.ledger.audit import redact
from trustgrpo.ledger.callback import LedgerCallback
from trustgrpo.ledger.replay import replay
from trustgrpo.verifiers.base import Outcome, Sample


@dataclass
class EndsWith:
    """A tiny deterministic verifier: correct when the completion ends with the reference."""

    name: str = "ends"
    version: str = "v1"
    flip_every: int = 0  # >0: a drifted verifier that disagrees on some samples

    def score(self, samples: Sequence[Sample]) -> list[Outcome]:
        out = []
        for k, s in enumerate(samples):
            ok = s.completion.rstrip(".").endswith(s.reference or "\0")
            if self.flip_every and k % self.flip_every == 0:
                ok = not ok
            details = {"tests": s.metadata.get("tests")}
            out.append(
                Outcome(
                    float(ok),
                    "correct" if ok else "incorrect",
                    f"{self.name}@{self.version}",
                    details,
                )
            )
        return out


def record(
    run_dir: Path,
    verifier: Any,
    steps: int = 3,
    config: dict[str, Any] | None = None,
    url: str | None = None,
) -> None:
    with Ledger.open(run_dir, url=url) as ledger:
        cb = LedgerCallback(ledger)
        run = RunInfo(run_dir, config or {"verifiers": []}, 0, False)
        cb.on_train_start(run)
        for step in range(1, steps + 1):
            samples = [
                Sample(
                    f"p{g}",
                    g,
                    i,
                    f"{step}+{g}=?",
                    f"It is {step + g + i % 2}.",
                    str(step + g),
                    {"tests": [g]},
                )
                for g in range(2)
                for i in range(4)
            ]
            outcomes = [[o] for o in verifier.score(samples)]
            rewards = np.array([o[0].score for o in outcomes], dtype=np.float64)
            batch = StepBatch(step, samples, outcomes, rewards, rewards - rewards.mean(), 4)
            cb.on_step_rewards(run, batch)
            cb.on_step_end(run, batch)
        cb.on_train_end(run, {})


def test_replay_matches(run_dir: Path, store_url: str | None) -> None:
    record(run_dir, EndsWith(), url=store_url)
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        report = replay(reader, verifiers={"ends@v1": EndsWith()})
    assert report.ok
    assert report.events == 24 and report.counts == {"match": 24}


def test_changed_verifier_is_not_replayed(run_dir: Path) -> None:
    record(run_dir, EndsWith())
    with Ledger.open_readonly(run_dir) as reader:
        report = replay(reader, verifiers={"ends@v2": EndsWith(version="v2")})
    assert not report.ok
    assert report.counts == {"version_mismatch": 24}
    assert "version expected v1 (recorded), found v2 (installed)" in report.results[0].message


def test_drifted_verifier_mismatches(run_dir: Path) -> None:
    record(run_dir, EndsWith())
    with Ledger.open_readonly(run_dir) as reader:
        report = replay(reader, step=2, verifiers={"ends@v1": EndsWith(flip_every=3)})
    assert not report.ok
    assert report.events == 8
    assert report.counts == {"match": 5, "mismatch": 3}
    bad = next(r for r in report.results if r.status == "mismatch")
    assert bad.step == 2 and "(recorded)" in bad.message and "(replayed)" in bad.message


def test_unknown_verifier_and_sampling(run_dir: Path) -> None:
    record(run_dir, EndsWith())
    with Ledger.open_readonly(run_dir) as reader:
        report = replay(reader, sample=5, seed=3, verifiers={"other@v1": EndsWith(name="other")})
        again = replay(reader, sample=5, seed=3, verifiers={})
    assert report.events == 5 and report.counts == {"unknown_verifier": 5}
    assert [r.event for r in report.results] == [r.event for r in again.results]


def test_redacted_inputs_are_skipped(run_dir: Path, store_url: str | None) -> None:
    record(run_dir, EndsWith(), steps=1, url=store_url)
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        first = next(e for e in reader.events() if e.kind == "reward")
        h = first.body["completion_blob"]  # content-addressed: shared by equal completions
        sharing = sum(e.body.get("completion_blob") == h for e in reader.events())
    assert sharing == 2
    redact(run_dir, h, url=store_url, reason="test")
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        report = replay(reader, verifiers={"ends@v1": EndsWith()})
    assert report.ok
    assert report.counts == {"match": 6, "redacted": 2}
    assert "was redacted" in next(r for r in report.results if r.status == "redacted").message


def test_verifiers_rebuilt_from_the_recorded_config(run_dir: Path) -> None:
    """Without an override, verifiers come from the run_started config (through ``build``)."""
    seen: list[Any] = []

    def build(config: Any) -> tuple[dict[str, Any], str]:
        seen.append(config)
        return {"ends@v1": EndsWith()}, ""

    record(run_dir, EndsWith(), config={"verifiers": [{"type": "ends", "name": "ends"}]})
    with Ledger.open_readonly(run_dir) as reader:
        report = replay(reader, build=build)
    assert report.ok and report.counts == {"match": 24}
    assert seen == [{"verifiers": [{"type": "ends", "name": "ends"}]}]


def test_with_the_verifier_registry(run_dir: Path) -> None:
    """The default path: ``trustgrpo.verifiers.registry.build_verifier`` on the recorded specs."""
    registry = pytest.importorskip("trustgrpo.verifiers.registry")
    spec = {"type": "exact", "name": "exact", "weight": 1.0, "role": "reward"}
    record(run_dir, registry.build_verifier(dict(spec)), steps=1, config={"verifiers": [spec]})
    with Ledger.open_readonly(run_dir) as reader:
        report = replay(reader)
    assert report.ok, [r.message for r in report.results]
    assert report.counts == {"match": 8}
