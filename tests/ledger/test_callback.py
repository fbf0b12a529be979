"""LedgerCallback: what a training run writes, hook by hook."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from trustgrpo.callbacks import CheckpointInfo, RunInfo, StepBatch
from trustgrpo.ledger import Ledger
from trustgrpo.ledger.audit import verify
from trustgrpo.ledger.callback import LedgerCallback
from trustgrpo.verifiers.base import Outcome, Sample

G = 4


def make_batch(step: int, groups: int = 2) -> StepBatch:
    samples, outcomes = [], []
    for g in range(groups):
        prompt = f"What is {step} + {g}?"
        for i in range(G):
            answer = step + g if i % 2 == 0 else step + g + 1
            samples.append(
                Sample(
                    prompt_id=f"p{g}",
                    group_id=g,
                    index=i,
                    prompt=prompt,
                    completion=f"The answer is {answer}.",
                    reference=str(step + g),
                    metadata={"tests": [1, 2], "source": Path("/data/x.jsonl")} if g == 0 else {},
                    num_tokens=5 + i,
                    truncated=i == 3,
                )
            )
            if i == 2:  # a verifier failure: masked, never a silent zero
                oc = [Outcome(None, "error", "exact@1a2b", {"error": "boom"}, 0.5)]
            else:
                ok = answer == step + g
                oc = [
                    Outcome(
                        1.0 if ok else 0.0,
                        "correct" if ok else "incorrect",
                        "exact@1a2b",
                        {"extracted": str(answer), "np": np.float64(0.25)},
                        0.12345,
                    )
                ]
            outcomes.append(oc)
    rewards = np.array([np.nan if i % G == 2 else float(i % 2 == 0) for i in range(groups * G)])
    advantages = np.array(
        [0.0 if i % G == 2 else (0.8 if i % 2 == 0 else -0.8) for i in range(groups * G)]
    )
    return StepBatch(step, samples, outcomes, rewards, advantages, G)


def run_training(run_dir: Path, url: str | None, steps: range, resumed: bool = False) -> None:
    ledger = Ledger.open(run_dir, url=url)
    cb = LedgerCallback(ledger)
    run = RunInfo(
        run_dir=run_dir,
        config={
            "grpo": {"num_generations": G},
            "verifiers": [{"type": "exact", "name": "exact"}],
            "out": Path("runs"),
        },
        start_step=steps.start - 1,
        resumed=resumed,
        provenance={"code": {"git": "abc"}, "packages": {"numpy": np.__version__}},
    )
    cb.on_train_start(run)
    for step in steps:
        batch = make_batch(step)
        cb.on_step_rewards(run, batch)
        batch.metrics.update({"loss": 0.1 * step, "kl": np.float32(0.01), "reward/mean": 0.5})
        assert cb.on_step_end(run, batch) is None
        if step % 2 == 0:
            ckpt = run_dir / "checkpoints" / f"step-{step}"
            cb.on_checkpoint(run, CheckpointInfo(step, ckpt, "cd" * 32))
    cb.on_train_end(
        run, {"steps": steps.stop - 1, "stopped_early": False, "metrics": {"x": math.nan}}
    )
    ledger.close()


def test_a_run_is_recorded(run_dir: Path, store_url: str | None) -> None:
    run_training(run_dir, store_url, range(1, 4))
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        events = list(reader.events())
        kinds = [e.kind for e in events]
        assert kinds[0] == "run_started"
        assert kinds[-1] == "run_finished"
        assert kinds.count("reward") == 3 * 2 * G
        assert kinds.count("step") == 3 and kinds.count("checkpoint") == 1
        start = events[0].body
        assert start["config"]["out"] == "runs" and start["start_step"] == 0
        assert start["ledger"]["key"] == (run_dir / "ledger.pub").read_text().strip()
        rewards = [e for e in events if e.kind == "reward"]
        r = rewards[0].body
        assert (r["step"], r["prompt_id"], r["group_id"], r["index"]) == (1, "p0", 0, 0)
        assert reader.get_text(r["prompt_blob"]) == "What is 1 + 0?"
        assert reader.get_text(r["completion_blob"]) == "The answer is 1."
        assert reader.get_text(r["reference_blob"]) == "1"
        assert reader.get_text(r["metadata_blob"]) == '{"source":"/data/x.jsonl","tests":[1,2]}'
        assert rewards[4].body["metadata_blob"] is None  # group 1 has no metadata
        assert r["outcomes"] == [
            {
                "verifier": "exact@1a2b",
                "status": "correct",
                "score": 1,
                "details": {"extracted": "1", "np": 0.25},
                "duration_ms": 0.123,
            }
        ]
        assert (r["reward"], r["advantage"], r["num_tokens"], r["truncated"]) == (1, 0.8, 5, False)
        masked = rewards[2].body
        assert masked["reward"] is None and masked["advantage"] == 0
        assert masked["outcomes"][0]["status"] == "error" and masked["outcomes"][0]["score"] is None
        step = next(e for e in events if e.kind == "step").body
        assert step == {
            "step": 1,
            "num_samples": 8,
            "group_size": G,
            "metrics": {"loss": 0.1, "kl": pytest.approx(0.01), "reward/mean": 0.5},
        }
        ckpt = next(e for e in events if e.kind == "checkpoint").body
        assert ckpt == {"step": 2, "weights_sha256": "cd" * 32, "path": "checkpoints/step-2"}
        assert events[-1].body["result"]["metrics"] == {"x": "NaN"}
        # the end is signed; the step ends were signed too
        cps = reader.checkpoints()
        assert cps[-1].size == len(events)
        report = verify(reader, deep=True)
    assert report.ok, report.problems
    assert not report.warnings


def test_a_resumed_run_continues_the_log(run_dir: Path, store_url: str | None) -> None:
    run_training(run_dir, store_url, range(1, 3))
    run_training(run_dir, store_url, range(3, 5), resumed=True)
    with Ledger.open_readonly(run_dir, url=store_url) as reader:
        kinds = [e.kind for e in reader.events()]
        assert kinds.count("run_started") == 1 and kinds.count("run_resumed") == 1
        resumed = next(e for e in reader.events() if e.kind == "run_resumed")
        assert resumed.body["start_step"] == 2
        assert verify(reader).ok


def test_hot_path_does_not_write(run_dir: Path) -> None:
    """on_step_rewards only queues: nothing reaches the store until the writer runs."""
    ledger = Ledger.open(run_dir, background=False, batch_size=10_000)
    cb = LedgerCallback(ledger)
    run = RunInfo(run_dir=run_dir, config={}, start_step=0, resumed=False)
    cb.on_step_rewards(run, make_batch(1))
    with Ledger.open_readonly(run_dir) as reader:
        assert reader.size() == 0
        assert ledger.flush() == 2 * G
        assert reader.size() == 2 * G
    ledger.close()


def test_saved_weights_have_their_events_on_disk(run_dir: Path) -> None:
    """After on_checkpoint returns, the rewards that shaped the weights are durable and signed."""
    ledger = Ledger.open(run_dir, max_delay=60.0)  # the writer would otherwise wait a minute
    cb = LedgerCallback(ledger)
    run = RunInfo(run_dir=run_dir, config={}, start_step=0, resumed=False)
    cb.on_step_rewards(run, make_batch(1))
    cb.on_checkpoint(run, CheckpointInfo(1, run_dir / "checkpoints" / "step-1", "ef" * 32))
    with Ledger.open_readonly(run_dir) as reader:
        assert reader.size() == 2 * G + 1
        latest = reader.latest_checkpoint()
        assert latest is not None and latest.size == 2 * G + 1
    ledger.close()
