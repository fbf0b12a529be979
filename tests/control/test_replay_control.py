"""The environment as the verifier: reward events carry the episode, ``audit replay``
re-simulates it and reproduces every return exactly; tampered actions or seeds mismatch."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

from trustgrpo import Trainer
from trustgrpo.cli import main
from trustgrpo.config import control_config
from trustgrpo.ledger import LedgerReader
from trustgrpo.ledger.replay import replay
from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.env import EnvVerifier, describe_start, format_actions
from trustgrpo.verifiers.registry import build_verifier


def _train(tmp_path: Path, env: str, *extra: str) -> Path:
    sets = [
        f'run.output_dir="{tmp_path}"',
        'run.name="r"',
        "grpo.max_steps=2",
        "grpo.prompts_per_step=2",
        "grpo.num_generations=3",
        "env.eval_episodes=0",
        *extra,
    ]
    return Trainer(control_config(env, sets), progress=False).train().run_dir


def _rewards(run: Path) -> list[Any]:
    with LedgerReader.open_readonly(run) as reader:
        return [e for e in reader.events() if e.kind == "reward"]


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("cartpole"), "CartPole-v1")


def test_reward_events_record_the_episode(cartpole_run: Path) -> None:
    events = _rewards(cartpole_run)
    assert len(events) == 2 * 2 * 3
    with LedgerReader.open_readonly(cartpole_run) as reader:
        body = events[0].body
        meta = json.loads(reader.get_text(body["metadata_blob"]) or "")
        prompt = json.loads(reader.get_text(body["prompt_blob"]) or "")
        actions = json.loads(reader.get_text(body["completion_blob"]) or "")
    assert prompt == {"env": "CartPole-v1", "seed": meta["seed"]}
    assert body["prompt_id"] == str(meta["seed"])
    assert meta["env"] == "CartPole-v1" and meta["env_version"] == 1
    assert meta["gymnasium"] == gym.__version__
    assert len(actions) == meta["length"] == body["num_tokens"]
    assert set(actions) <= {0, 1} and meta["terminated"] != meta["truncated"]
    (outcome,) = body["outcomes"]
    assert outcome["verifier"].startswith("env@") and outcome["status"] == "correct"
    assert outcome["score"] == meta["return"] == body["reward"] == len(actions)
    assert outcome["details"] == {
        "seed": meta["seed"],
        "length": meta["length"],
        "terminated": meta["terminated"],
        "truncated": meta["truncated"],
    }
    # the G episodes of a group share a seed; groups have their own
    seeds = [(e.body["step"], e.body["group_id"], e.body["prompt_id"]) for e in events]
    per_group: dict[tuple[int, int], set[str]] = {}
    for step, group, seed in seeds:
        per_group.setdefault((step, group), set()).add(seed)
    assert all(len(s) == 1 for s in per_group.values())
    assert len({next(iter(s)) for s in per_group.values()}) == 4


def test_audit_replay_reproduces_every_return(
    cartpole_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "replay", str(cartpole_run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["counts"] == {"match": 12}
    assert main(["audit", "verify", str(cartpole_run)]) == 0
    with LedgerReader.open_readonly(cartpole_run) as reader:
        report = replay(reader)
    _assert_exact(report)


def _assert_exact(report: Any) -> None:
    """Replay compares scores with a tolerance; an environment's return must be exact."""
    assert report.results
    for r in report.results:
        assert r.replayed is not None and r.replayed["score"] == r.recorded["score"], r
        assert r.replayed["status"] == r.recorded["status"] == "correct"


def _tamper_blob(run: Path, h: str, text: str) -> None:
    db = sqlite3.connect(run / "ledger.db")
    db.execute("UPDATE blobs SET data = ? WHERE hash = ?", (text.encode(), h))
    db.commit()
    db.close()


def test_a_tampered_seed_mismatches(tmp_path: Path) -> None:
    run = _train(tmp_path, "CartPole-v1")
    events = _rewards(run)
    second = events[3].body  # group 1 of step 1
    with LedgerReader.open_readonly(run) as reader:
        start = json.loads(reader.get_text(second["prompt_blob"]) or "")
    _tamper_blob(run, second["prompt_blob"], describe_start("CartPole-v1", start["seed"] + 1))
    with LedgerReader.open_readonly(run) as reader:
        report = replay(reader)
    status = {r.event: r.status for r in report.results}
    tampered = {e.index for e in events if e.body["prompt_blob"] == second["prompt_blob"]}
    assert len(tampered) == 3
    assert all(status[i] == "mismatch" for i in tampered)
    assert sum(s == "match" for s in status.values()) == len(events) - 3
    assert not report.ok
    assert main(["audit", "verify", str(run)]) == 1  # and the blob no longer hashes right


def test_a_tampered_action_mismatches(tmp_path: Path) -> None:
    run = _train(tmp_path, "Pendulum-v1", "grpo.prompts_per_step=1", "grpo.max_steps=1")
    events = _rewards(run)
    body = events[1].body
    with LedgerReader.open_readonly(run) as reader:
        actions = json.loads(reader.get_text(body["completion_blob"]) or "")
    actions[57][0] = round(actions[57][0] / 2, 3)  # one torque out of 200
    _tamper_blob(run, body["completion_blob"], json.dumps(actions))
    with LedgerReader.open_readonly(run) as reader:
        report = replay(reader)
    assert [r.status for r in report.results] == ["match", "mismatch", "match"]
    assert "(recorded)" in report.results[1].message


def _verifier(env_id: str = "CartPole-v1", **params: Any) -> Any:
    return build_verifier({"type": "env", "id": env_id, **params})


def test_env_verifier_outcomes() -> None:
    v = _verifier()
    assert isinstance(v, EnvVerifier) and v.id.startswith("env@")
    env = gym.make("CartPole-v1")
    env.reset(seed=11)
    actions, total, done = [], 0.0, False
    while not done:
        _, r, term, trunc, _ = env.step(0)
        actions.append(0)
        total += float(r)
        done = term or trunc
    prompt = describe_start("CartPole-v1", 11)
    whole, cut, extra, other = v.score(
        [
            Sample("11", 0, 0, prompt, format_actions_list(actions)),
            Sample("11", 0, 1, prompt, format_actions_list(actions[:-1])),
            Sample("11", 0, 2, prompt, format_actions_list([*actions, 0])),
            Sample("11", 0, 3, describe_start("Acrobot-v1", 11), "[0]"),
        ]
    )
    assert (whole.status, whole.score) == ("correct", total)
    assert whole.details["terminated"] and not whole.details["truncated"]
    assert cut.status == "error" and "had not ended" in cut.details["error"]
    assert extra.status == "error" and "ended after" in extra.details["error"]
    assert other.status == "error" and "Acrobot-v1" in other.details["error"]
    v.close()


def format_actions_list(actions: list[int]) -> str:
    import numpy as np

    return format_actions(np.asarray(actions, dtype=np.int64))


def test_version_covers_environment_and_parameters() -> None:
    a, b = _verifier(), _verifier()
    assert a.version == b.version
    assert _verifier(max_episode_steps=100).version != a.version
    assert _verifier("Acrobot-v1").version != a.version
    deps = a.describe()["dependencies"]
    assert deps["gymnasium"] == gym.__version__ and len(deps["env_source_sha256"]) == 64


def test_box_actions_round_trip_bit_for_bit(tmp_path: Path) -> None:
    """Pendulum (Box actions, float32): replay must send the very same floats."""
    run = _train(tmp_path, "Pendulum-v1", "grpo.prompts_per_step=1", "grpo.max_steps=1")
    with LedgerReader.open_readonly(run) as reader:
        report = replay(reader)
        (first, *_) = _rewards(run)
        actions = json.loads(reader.get_text(first.body["completion_blob"]) or "")
    assert report.ok and report.counts == {"match": 3}
    _assert_exact(report)
    assert len(actions) == 200 and all(len(a) == 1 and -2.0 <= a[0] <= 2.0 for a in actions)
