"""GRPO on Gymnasium end to end: every action-space type learns, the same seed gives the same
run bit for bit, a resumed run continues exactly, and the entry points work."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trustgrpo import Callback, RunInfo, StepBatch, Trainer
from trustgrpo.advantage import group_advantages
from trustgrpo.cli import main
from trustgrpo.config import Config, control_config, load

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, env: str, name: str = "run", *extra: str) -> Config:
    return control_config(
        env,
        [
            f'run.output_dir="{tmp_path}"',
            f'run.name="{name}"',
            "run.threads=1",
            "env.eval_episodes=0",
            "reward.self_test=0",
            *extra,
        ],
    )


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _rewards(run_dir: Path) -> list[float]:
    return [m["reward/mean"] for m in _metrics(run_dir)]


class _Advantages(Callback):
    """Outcome supervision records exactly the group-normalised return; process supervision
    records the first action's advantage, which is the same (up to rounding) when gamma is 1
    and every episode of a group has the same length (Reach)."""

    def __init__(self) -> None:
        self.checked = 0

    def on_step_rewards(self, run: RunInfo, batch: StepBatch) -> None:
        want = group_advantages(batch.rewards, batch.group_size, "group")
        if run.config["env"]["supervision"] == "outcome":
            assert np.array_equal(batch.advantages, want)
        elif run.config["env"]["gamma"] == 1.0:
            np.testing.assert_allclose(batch.advantages, want, rtol=1e-9, atol=1e-12)
        assert [s.metadata["return"] for s in batch.samples] == batch.rewards.tolist()
        self.checked += 1


OUTCOME = 'env.supervision="outcome"'
PROCESS = ('env.supervision="process"', "env.gamma=1.0")


@pytest.mark.parametrize(
    ("env", "extra", "margin"),
    [
        ("CartPole-v1", ("grpo.max_steps=6", OUTCOME), 25.0),
        (
            "trustgrpo_test/Reach-v0",
            ("grpo.max_steps=15", "control.hidden_sizes=[16]", OUTCOME),
            2.0,
        ),
        (
            "trustgrpo_test/Reach-v0",
            ("grpo.max_steps=15", "control.hidden_sizes=[16]", 'control.squash="tanh"', OUTCOME),
            2.0,
        ),
        (
            "trustgrpo_test/Reach-v0",
            ("grpo.max_steps=15", "control.hidden_sizes=[16]", *PROCESS),
            2.0,
        ),
        (
            "trustgrpo_test/Match-v0",
            ("grpo.max_steps=10", "grpo.prompts_per_step=8", "control.hidden_sizes=[16]", OUTCOME),
            1.5,
        ),
    ],
    ids=["discrete", "box-clip", "box-tanh", "box-process", "multidiscrete"],
)
def test_reward_rises_for_every_action_space(
    tmp_path: Path, env: str, extra: tuple[str, ...], margin: float
) -> None:
    cb = _Advantages()
    cfg = _config(tmp_path, env, "run", "ledger.enabled=false", *extra)
    result = Trainer(cfg, callbacks=[cb], progress=False).train()
    rewards = _rewards(result.run_dir)
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + margin, rewards
    assert cb.checked == len(rewards)


def test_outcome_advantages_are_recorded_as_the_trainer_used_them(tmp_path: Path) -> None:
    cb = _Advantages()
    cfg = _config(tmp_path, "CartPole-v1", "a", "grpo.max_steps=2", "ledger.enabled=false", OUTCOME)
    Trainer(cfg, callbacks=[cb], progress=False).train()
    assert cb.checked == 2


def _fingerprint(run_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if not k.startswith("time/")} for m in _metrics(run_dir)]


def _weights(run_dir: Path, step: int) -> bytes:
    return (run_dir / "checkpoints" / f"step-{step}" / "model.safetensors").read_bytes()


SAME = (
    "grpo.max_steps=3",
    "grpo.prompts_per_step=3",
    "grpo.num_generations=4",
    "env.num_envs=5",  # fewer sub-environments than episodes: a queue
    "env.eval_episodes=3",
    'env.supervision="process"',
    "env.gamma=0.9",
    "control.normalize_obs=true",
    "grpo.beta=0.01",
)


def test_same_seed_same_run_bitwise(tmp_path: Path) -> None:
    a = Trainer(_config(tmp_path, "Pendulum-v1", "a", *SAME), progress=False).train()
    b = Trainer(_config(tmp_path, "Pendulum-v1", "b", *SAME), progress=False).train()
    assert _fingerprint(a.run_dir) == _fingerprint(b.run_dir)
    assert _weights(a.run_dir, 3) == _weights(b.run_dir, 3)
    c = Trainer(_config(tmp_path, "Pendulum-v1", "c", *SAME, "run.seed=1"), progress=False)
    assert _fingerprint(c.train().run_dir) != _fingerprint(a.run_dir)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    extra = ("grpo.prompts_per_step=2", "control.normalize_obs=true", "grpo.checkpoint_every=2")
    full = Trainer(
        _config(tmp_path, "CartPole-v1", "full", "grpo.max_steps=4", *extra), progress=False
    ).train()
    cut = _config(tmp_path, "CartPole-v1", "cut", "grpo.max_steps=2", *extra)
    Trainer(cut, progress=False).train()
    longer = dataclasses.replace(cut, grpo=dataclasses.replace(cut.grpo, max_steps=4))
    resumed = Trainer(longer, resume=True, progress=False).train()
    assert resumed.steps == 4
    assert _fingerprint(resumed.run_dir) == _fingerprint(full.run_dir)
    assert _weights(resumed.run_dir, 4) == _weights(full.run_dir, 4)
    assert main(["audit", "verify", str(resumed.run_dir)]) == 0


def test_env_shortcut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(env="CartPole-v1", progress=False)
    assert trainer.config == control_config("CartPole-v1")
    assert trainer.run_dir == Path("runs/CartPole-v1")
    assert trainer.train_prompts == [] and trainer.complete([]) == []
    trainer.backend.close()
    cfg = _config(tmp_path, "trustgrpo_test/Match-v0", "m", "grpo.max_steps=2")
    result = Trainer(cfg, env="trustgrpo_test/Reach-v0", progress=False).train()
    assert json.loads(json.dumps(_metrics(result.run_dir)[-1]))["step"] == 2
    assert load(result.run_dir / "run.toml").env.id == "trustgrpo_test/Reach-v0"


def test_cli_trains_the_cartpole_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cartpole"
    argv = ["train", str(ROOT / "examples" / "cartpole.toml"), "--out", str(out), "--quiet"]
    assert main([*argv, "--set", "grpo.max_steps=2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["reward_mean"] > 0
    assert (out / "checkpoints" / "step-2" / "policy.json").is_file()


@pytest.mark.slow
def test_pendulum_is_solved(tmp_path: Path) -> None:
    cfg = load(ROOT / "examples" / "pendulum.toml", [f'run.output_dir="{tmp_path}"'])
    result = Trainer(cfg, progress=False).train()
    assert result.eval_return is not None and result.eval_return > -250
