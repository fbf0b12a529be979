"""Run files for control: ``[env]`` replaces prompts and verifiers; every problem is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from trustgrpo.config import (
    ConfigError,
    control_config,
    dump_toml,
    from_dict,
    load,
    reference_markdown,
    with_env,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["cartpole", "acrobot", "pendulum", "mountaincar_continuous"]


def _problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_dict(raw, base=ROOT / "examples")
    return info.value.problems


def test_an_env_id_is_a_whole_run_file() -> None:
    cfg = from_dict({"env": {"id": "CartPole-v1"}})
    assert cfg.is_control and not cfg.data.train
    (spec,) = cfg.verifiers
    assert (spec.type, spec.name) == ("env", "env")
    assert spec.params == {"id": "CartPole-v1", "kwargs": {}, "max_episode_steps": 0}


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_load_and_round_trip_through_run_toml(name: str) -> None:
    cfg = load(ROOT / "examples" / f"{name}.toml")
    assert cfg.is_control
    again = from_dict(tomllib.loads(dump_toml(cfg.to_dict())), source=cfg.source)
    assert again == cfg


@pytest.mark.parametrize("name", ["lunarlander", "lunarlander_continuous"])
def test_box2d_examples(name: str) -> None:
    """LunarLander needs Box2D; without it the run file names the missing dependency."""
    path = ROOT / "examples" / f"{name}.toml"
    try:
        import Box2D  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="Box2D is not installed"):
            load(path)
        return
    cfg = load(path)
    assert cfg.is_control and cfg.env.id == "LunarLander-v3"


def test_problems_name_their_toml_path() -> None:
    raw = {
        "env": {"id": "CartPole-v2", "supervision": "procces", "gamma": 0.0, "kwargs": 3},
        "control": {"hidden_sizes": [64, 0], "activation": "gelu"},
        "data": {"train": "data/arith/train.jsonl"},
    }
    problems = _problems(raw)
    assert "env.id: unknown Gymnasium environment 'CartPole-v2' (did you mean 'CartPole-v1'?)" in (
        problems
    )
    assert any(
        p.startswith("env.supervision: expected one of 'outcome', 'process'") for p in problems
    )
    assert "env.gamma: expected a number > 0 and ≤ 1, got 0.0" in problems
    assert "env.kwargs: expected a table, got 3" in problems
    assert "control.hidden_sizes: expected a list of integers ≥ 1, got [64, 0]" in problems
    assert any(p.startswith("control.activation: expected one of 'tanh', 'relu'") for p in problems)
    assert "data.train: an [env] run has no prompts; expected it unset" in problems
    assert len(problems) == 7, problems


def test_environment_problems_found_by_making_it() -> None:
    (p,) = _problems({"env": {"id": "CartPole-v1", "kwargs": {"nope": 1}}})
    assert p.startswith("env: cannot make 'CartPole-v1': TypeError:")
    (p,) = _problems({"env": {"id": "FrozenLake-v1"}})
    assert p == (
        "env.id: 'FrozenLake-v1': observation space: expected a Box, got Discrete (wrap the "
        "environment so that it observes a vector)"
    )
    (p,) = _problems({"env": {"id": "trustgrpo_test/NoLimit-v0"}})
    assert p.startswith("env.max_episode_steps: 'trustgrpo_test/NoLimit-v0' has no registered")
    cfg = from_dict({"env": {"id": "trustgrpo_test/NoLimit-v0", "max_episode_steps": 7}})
    assert cfg.verifiers[0].params["max_episode_steps"] == 7


def test_verifiers_in_an_env_run() -> None:
    (p,) = _problems({"env": {"id": "CartPole-v1"}, "verifiers": [{"type": "numeric"}]})
    assert p == (
        "verifiers[0].type: an [env] run is scored by its environment alone; expected no "
        "[[verifiers]] tables, got type 'numeric'"
    )
    wrong = {"type": "env", "name": "env", "id": "Acrobot-v1"}
    (p,) = _problems({"env": {"id": "CartPole-v1"}, "verifiers": [wrong]})
    assert p.startswith("verifiers[0]: expected the [env] section's environment")
    (p,) = _problems(
        {"data": {"train": "data/arith/train.jsonl"}, "verifiers": [{"type": "env", "id": "x"}]}
    )
    assert p.startswith("verifiers[0].type: 'env' scores the episodes of an [env] run")


def test_with_env_and_control_config() -> None:
    cfg = control_config("Acrobot-v1", ["grpo.max_steps=3"])
    assert cfg.grpo.max_steps == 3 and cfg.run.name == "Acrobot-v1"
    moved = with_env(cfg, "CartPole-v1")
    assert moved.env.id == "CartPole-v1" and moved.verifiers[0].params["id"] == "CartPole-v1"
    with pytest.raises(ConfigError, match="env.id: unknown Gymnasium environment"):
        control_config("NoSuchEnv-v0")


def test_reference_documents_the_new_sections() -> None:
    ref = reference_markdown()
    assert "#### `[env]`" in ref and "#### `[control]`" in ref
    assert "| `hidden_sizes` | `[64, 64]` |" in ref and "| `minibatches` | `1` |" in ref
