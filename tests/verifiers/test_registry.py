"""The registry: run-file checks with TOML paths, building from specs and recorded tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustgrpo.config import Config, SandboxConfig, VerifierSpec, from_dict
from trustgrpo.errors import ConfigError
from trustgrpo.verifiers import (
    ExactVerifier,
    MathVerifier,
    NumericVerifier,
    Sample,
    build_reward,
    build_verifier,
    check_specs,
    known_types,
)


def test_unknown_type_suggests_the_closest() -> None:
    (p,) = check_specs([VerifierSpec("numric")])
    assert p.startswith(
        "verifiers[0].type: unknown verifier type 'numric' (did you mean 'numeric'?)"
    )


def test_every_problem_is_reported_with_its_path() -> None:
    problems = check_specs(
        [
            VerifierSpec("numeric", params={"tolerance": -1, "extarct": "full"}),
            VerifierSpec("exact", params={"case_sensitive": "no"}),
            VerifierSpec("math", params={"timeout_s": 0, "extract": "boxd"}),
            VerifierSpec("overlong", params={"max_length": 8}),  # role must be shaping
        ]
    )
    assert problems == [
        "verifiers[0].tolerance: expected a number ≥ 0, got -1",
        "verifiers[0].extarct: unknown parameter (did you mean verifiers[0].extract?); "
        "valid: extract, tolerance, rel_tolerance, stop",
        "verifiers[1].case_sensitive: expected true or false, got 'no'",
        "verifiers[2].timeout_s: expected a number > 0, got 0",
        "verifiers[2].extract: expected one of 'auto', 'boxed', 'answer_tag', got 'boxd' "
        "(did you mean 'boxed'?)",
        "verifiers[3].role: 'overlong' is reward shaping, not verification; expected role = "
        "\"shaping\", got 'reward'",
    ]


def test_names_must_be_distinct_and_shaping_alone_is_refused() -> None:
    problems = check_specs(
        [VerifierSpec("numeric"), VerifierSpec("numeric", params={"extract": "full"})]
    )
    assert problems == [
        "verifiers[1].name: 'numeric' is already the name of verifiers[0]; give each "
        "[[verifiers]] table a distinct name"
    ]
    assert check_specs([VerifierSpec("numeric"), VerifierSpec("numeric", name="strict")]) == []
    (p,) = check_specs([VerifierSpec("overlong", role="shaping", params={"max_length": 8})])
    assert "shaping alone verifies nothing" in p


def test_config_loading_reports_verifier_problems(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n')
    raw = {"data": {"train": str(data)}, "verifiers": [{"type": "numeric", "tolerance": -1}]}
    with pytest.raises(ConfigError) as e:
        from_dict(raw)
    assert e.value.problems == ["verifiers[0].tolerance: expected a number ≥ 0, got -1"]
    raw["verifiers"] = [{"type": "numeric", "extract": "full", "weight": 2.0}]
    cfg = from_dict(raw)
    assert build_reward(cfg).components[0].weight == 2.0


def test_build_from_spec_nested_mapping_and_flat_table_agree() -> None:
    spec = VerifierSpec("numeric", name="acc", params={"extract": "full", "tolerance": 0})
    a = build_verifier(spec)
    b = build_verifier(
        {"type": "numeric", "name": "acc", "params": {"extract": "full", "tolerance": 0}}
    )
    c = build_verifier(Config(verifiers=(spec,)).to_dict()["verifiers"][0])  # as in the ledger
    assert isinstance(a, NumericVerifier)
    assert a.name == b.name == c.name == "acc"
    assert a.version == b.version == c.version
    # ints are read as floats and defaults are filled in: the same verifier, the same version
    assert (
        build_verifier({"type": "numeric", "name": "acc", "extract": "full"}).version == a.version
    )


def test_version_changes_with_every_parameter_and_not_with_the_name() -> None:
    base = ExactVerifier()
    assert ExactVerifier(name="other").version == base.version
    for params in ({"case_sensitive": False}, {"strip": False}, {"extract": "last_line"}):
        assert ExactVerifier(**params).version != base.version
    assert NumericVerifier().version != ExactVerifier().version


def test_build_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"verifier\.weight: expected a finite number"):
        build_verifier({"type": "numeric", "weight": float("nan")})
    with pytest.raises(ConfigError, match=r"verifier\.role: expected one of"):
        build_verifier({"type": "numeric", "role": "judge"})
    with pytest.raises(ConfigError, match="unknown verifier type"):
        build_verifier({"type": "nope"})


def test_all_builtin_types_are_registered() -> None:
    for t in (
        "exact",
        "numeric",
        "math",
        "regex",
        "format",
        "json_schema",
        "overlong",
        "length",
        "code",
    ):
        assert t in known_types()
    assert isinstance(build_verifier({"type": "math", "workers": 1}), MathVerifier)


def test_code_type_gets_sandbox_defaults_from_the_config() -> None:
    pytest.importorskip("trustgrpo.verifiers.code")
    cfg = Config(sandbox=SandboxConfig(timeout_s=2.0, memory_mb=256, allow_weak_isolation=True))
    try:
        v = build_verifier({"type": "code", "name": "unit"}, cfg)
    except ConfigError as e:  # no usable sandbox on this machine
        pytest.skip(str(e))
    try:
        assert v.name == "unit"
        assert v.limits.timeout_s == 2.0 and v.limits.memory_mb == 256
    finally:
        v.close()
    (p,) = check_specs([VerifierSpec("code", params={"extract": "middle"})], cfg)
    assert p.startswith("verifiers[0].extract: expected") and "'middle'" in p


def test_samples_from_a_recorded_numeric_table_score_the_same() -> None:
    spec = {"type": "numeric", "weight": 1.0, "role": "reward", "name": "", "extract": "full"}
    v = build_verifier(spec)
    (o,) = v.score([Sample("p", 0, 0, "1+1=", " 2", "2")])
    assert o.status == "correct" and o.verifier == f"numeric@{v.version}"


def test_a_recorded_config_dict_supplies_the_same_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "rec_rewards.py").write_text(
        "def acc(completions, solution, **kw):\n"
        "    return [float(c == s) for c, s in zip(completions, solution)]\n"
    )
    from trustgrpo.config import DataConfig

    cfg = Config(data=DataConfig(answer_column="solution"))
    spec = {"type": "rec_rewards:acc"}
    live = build_verifier(spec, cfg)
    replayed = build_verifier(spec, {"data": {"answer_column": "solution"}})
    assert live.version == replayed.version
    (o,) = replayed.score([Sample("p", 0, 0, "q", "4", "4")])
    assert o.status == "correct"
    # Without the config the default keyword differs: a different verifier, said so.
    assert build_verifier(spec).version != live.version
