"""Run files: every kind of bad input gets a clear message naming its TOML path."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from trustgrpo.config import (
    SECTIONS,
    Config,
    ConfigError,
    field_docs,
    from_dict,
    load,
    parse_override,
    reference_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "arith.toml"


def _problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_dict(raw, base=ROOT / "examples")
    return info.value.problems


def _valid() -> dict:
    return {
        "data": {"train": "data/arith/train.jsonl"},
        "verifiers": [{"type": "numeric"}],
    }


def test_example_loads_and_paths_resolve_against_the_run_file() -> None:
    cfg = load(EXAMPLE)
    assert isinstance(cfg, Config)
    assert Path(cfg.data.train).is_file()
    assert cfg.verifiers[0].type == "numeric"
    assert cfg.verifiers[0].params == {"extract": "full"}


def test_unknown_key_suggests_the_closest() -> None:
    raw = _valid() | {"grpo": {"lerning_rate": 1e-4}}
    assert _problems(raw) == ["grpo.lerning_rate: unknown key (did you mean grpo.learning_rate?)"]
    assert _problems(_valid() | {"grop": {}}) == ["grop: unknown key (did you mean grpo?)"]


def test_wrong_type() -> None:
    raw = _valid() | {"grpo": {"beta": "high"}, "generation": {"stop_at_eos": 1}}
    assert set(_problems(raw)) == {
        "grpo.beta: expected a number, got 'high'",
        "generation.stop_at_eos: expected true or false, got 1",
    }


def test_out_of_range_uses_the_issue_wording() -> None:
    raw = _valid() | {"grpo": {"num_generations": 1}}
    assert _problems(raw) == ["grpo.num_generations: expected an integer ≥ 2, got 1"]
    raw = _valid() | {"generation": {"top_p": 1.5}}
    assert _problems(raw) == ["generation.top_p: expected a number > 0 and ≤ 1, got 1.5"]


def test_choice_suggestion() -> None:
    raw = _valid() | {"grpo": {"loss_aggregation": "token-mean"}}
    (msg,) = _problems(raw)
    assert msg.startswith("grpo.loss_aggregation: expected one of 'token_mean'")
    assert "did you mean 'token_mean'?" in msg


def test_missing_files() -> None:
    raw = {
        "data": {"train": "nope.jsonl"},
        "verifiers": [{"type": "numeric"}],
        "policy": {"model": "no/such/model"},
    }
    problems = _problems(raw)
    assert f"data.train: file not found: {ROOT / 'examples' / 'nope.jsonl'}" in problems
    assert any(
        p.startswith('policy.model: expected "tiny" or a local model directory') for p in problems
    )


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "grpo": {"num_generations": 0, "max_stepz": 3},
        "policy": {"hidden_size": "big"},
        "verifiers": [{"weight": 1.0}],
    }
    problems = _problems(raw)
    assert len(problems) == 5, problems
    assert 'verifiers[0].type: missing (the verifier to use, e.g. "numeric")' in problems
    assert "data.train: missing (a JSONL or Parquet file of prompts)" in problems


def test_cross_field_check() -> None:
    raw = _valid() | {"policy": {"hidden_size": 30, "num_heads": 4}}
    assert _problems(raw) == [
        "policy.num_heads: expected a divisor of policy.hidden_size (30), got 4"
    ]


def test_overrides_are_typed_and_validated() -> None:
    assert parse_override("grpo.beta=0.04") == (["grpo", "beta"], 0.04)
    assert parse_override("run.name=abc") == (["run", "name"], "abc")
    cfg = load(EXAMPLE, ["grpo.beta=0.04", "run.name=x"])
    assert cfg.grpo.beta == 0.04 and cfg.run.name == "x"
    with pytest.raises(ConfigError, match=r"grpo.num_generations: expected an integer ≥ 2, got 1"):
        load(EXAMPLE, ["grpo.num_generations=1"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load(EXAMPLE, ["beta=1"])


def test_bad_toml_and_missing_run_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[grpo\nbeta = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="run file not found"):
        load(tmp_path / "missing.toml")


def test_every_field_has_exactly_one_docstring() -> None:
    for name, cls in SECTIONS.items():
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{name}.{f.name} has no docstring"
    ref = reference_markdown()
    assert "`num_generations`" in ref and "| `beta` | `0.0` |" in ref


def test_cli_reports_config_errors_with_exit_code_2_and_no_traceback(tmp_path: Path) -> None:
    run = tmp_path / "run.toml"
    run.write_text(
        '[grpo]\nnum_generations = 1\nlerning_rate = 3\n[[verifiers]]\ntype = "numeric"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "trustgrpo.cli", "train", str(run)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "grpo.num_generations: expected an integer ≥ 2, got 1" in out.stderr
    assert "grpo.lerning_rate: unknown key (did you mean grpo.learning_rate?)" in out.stderr
    assert "data.train: missing" in out.stderr
    assert not (tmp_path / "runs").exists()  # nothing was done
