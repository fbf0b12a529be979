"""``regex`` / ``format``, ``json_schema`` and ``overlong`` against their case tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trustgrpo.errors import ConfigError
from trustgrpo.verifiers import (
    FormatVerifier,
    JsonSchemaVerifier,
    LengthPenalty,
    RegexVerifier,
    Sample,
)


def s(completion: str, reference: str | None = None, num_tokens: int = 0) -> Sample:
    return Sample("p", 0, 0, "q", completion, reference, num_tokens=num_tokens)


# ---------------------------------------------------------------- format

FORMAT_CASES = [
    ("<think>2+2</think><answer>4</answer>", "correct"),
    ("<think>\nlong\nthought\n</think>\n<answer>\n4\n</answer>\n", "correct"),
    ("  <think>x</think>  <answer>4</answer>  ", "correct"),
    ("<think></think><answer>4</answer>", "correct"),  # empty thinking is allowed
    ("<think>x</think><answer></answer>", "incorrect"),  # format only, no answer
    ("<think>x</think><answer>  \n </answer>", "incorrect"),
    ("<answer>4</answer>", "incorrect"),
    ("<think>x</think>", "incorrect"),
    ("<think>x</think><answer>4</answer><answer>5</answer>", "incorrect"),
    ("<think>x</think><think>y</think><answer>4</answer>", "incorrect"),
    ("<think>x<think>y</think><answer>4</answer>", "incorrect"),
    ("<think>x</think><answer>4</answer> trailing", "incorrect"),
    ("preamble <think>x</think><answer>4</answer>", "incorrect"),
    ("<answer>4</answer><think>x</think>", "incorrect"),
    ("", "incorrect"),
]


@pytest.mark.parametrize(("completion", "status"), FORMAT_CASES)
def test_format_case_table(completion: str, status: str) -> None:
    (o,) = FormatVerifier().score([s(completion)])
    assert o.status == status


@pytest.mark.parametrize(
    ("completion", "score"),
    [
        ("<think>x</think><answer>4</answer>", 1.0),
        ("<think>x</think> 4", 0.25),  # two of four tags, scaled by partial_max 0.5
        ("<answer>4</answer>", 0.25),
        ("<answer>4</answer><think>x</think>", 0.5),  # all four tags, wrong order
        ("<think>x</think><answer>4</answer><answer>5</answer>", 0.25),  # answer tags twice
        ("nothing", 0.0),
    ],
)
def test_format_partial_credit(completion: str, score: float) -> None:
    (o,) = FormatVerifier(partial_credit=True).score([s(completion)])
    assert o.score == pytest.approx(score)
    assert o.status == ("correct" if score == 1.0 else "incorrect")


def test_custom_regex_modes_and_flags() -> None:
    assert RegexVerifier(pattern=r"\d+").score([s("42")])[0].status == "correct"
    assert RegexVerifier(pattern=r"\d+").score([s("x 42")])[0].status == "incorrect"
    assert RegexVerifier(pattern=r"\d+", mode="search").score([s("x 42")])[0].status == "correct"
    v = RegexVerifier(pattern="yes", ignore_case=True)
    assert v.score([s("YES")])[0].status == "correct"


def test_catastrophic_backtracking_is_a_timeout() -> None:
    v = RegexVerifier(pattern=r"(a+)+$", timeout_s=0.2)
    (o,) = v.score([s("a" * 40 + "b")])
    assert o.status == "timeout" and o.score is None


def test_regex_params_are_checked() -> None:
    with pytest.raises(ConfigError) as e:
        RegexVerifier(pattern="(", partial_max=1.5)
    text = str(e.value)
    assert "regex.pattern: not a valid regular expression" in text
    assert "regex.partial_max: expected a number < 1" in text
    with pytest.raises(ConfigError, match="pattern: missing"):
        RegexVerifier()


# ---------------------------------------------------------------- json_schema

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}

JSON_CASES = [
    ('{"name": "Ada", "age": 36}', "correct"),
    ('  {"age": 36, "name": "Ada"}\n', "correct"),
    ('{"name": "Ada"}', "incorrect"),  # missing key
    ('{"name": "Ada", "age": -1}', "incorrect"),
    ('{"name": "Ada", "age": 36.5}', "incorrect"),
    ('{"name": "Ada", "age": 36, "x": 1}', "incorrect"),
    ('{"name": "Ada", "age": 36', "incorrect"),  # truncated
    ('{"name": "Ada", "age": NaN}', "incorrect"),
    ('{"name": "Ada", "age": 36, "age": 37}', "incorrect"),  # duplicate key
    ("", "incorrect"),
    ("[]", "incorrect"),
]


@pytest.mark.parametrize(("completion", "status"), JSON_CASES)
def test_json_schema_case_table(completion: str, status: str) -> None:
    (o,) = JsonSchemaVerifier(schema=SCHEMA).score([s(completion)])
    assert o.status == status, o.details


def test_json_schema_reports_paths_and_messages() -> None:
    (o,) = JsonSchemaVerifier(schema=SCHEMA).score([s('{"name": 1, "age": -1}')])
    assert o.details["error_count"] == 2
    assert any(m.startswith("age:") for m in o.details["errors"])


def test_json_extraction_and_reference_match() -> None:
    fenced = JsonSchemaVerifier(schema=SCHEMA, extract="code_block")
    ok = '```json\n{"name": "Ada", "age": 36}\n```'
    assert fenced.score([s(f"Here:\n{ok}")])[0].status == "correct"
    two = ok + '\n```json\n{"name": "Bob", "age": 1}\n```'
    assert fenced.score([s(two)])[0].status == "incorrect"
    exact = JsonSchemaVerifier(schema={"type": "object"}, match_reference=True)
    ref = '{"a": 1, "b": [true]}'
    assert exact.score([s('{"b": [true], "a": 1}', ref)])[0].status == "correct"
    assert exact.score([s('{"b": [1], "a": 1}', ref)])[0].status == "incorrect"  # true != 1
    assert exact.score([s('{"b": [true], "a": 1.0}', ref)])[0].status == "incorrect"
    assert exact.score([s('{"a": 1}', None)])[0].status == "abstain"


def test_json_schema_file_content_is_part_of_the_version(tmp_path: Path) -> None:
    f = tmp_path / "schema.json"
    f.write_text(json.dumps(SCHEMA))
    a = JsonSchemaVerifier(schema_file=str(f))
    f.write_text(json.dumps({**SCHEMA, "required": ["name"]}))
    b = JsonSchemaVerifier(schema_file=str(f))
    assert a.version != b.version
    assert JsonSchemaVerifier(schema=SCHEMA).version == JsonSchemaVerifier(schema=SCHEMA).version


def test_json_schema_params_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"json_schema.schema: not a valid JSON Schema"):
        JsonSchemaVerifier(schema={"type": "objekt"})
    with pytest.raises(ConfigError, match="exactly one of schema"):
        JsonSchemaVerifier()
    with pytest.raises(ConfigError, match="schema_file: cannot read"):
        JsonSchemaVerifier(schema_file="/nonexistent/schema.json")


# ---------------------------------------------------------------- overlong (DAPO)


@pytest.mark.parametrize(
    ("tokens", "score"),
    [(0, 0.0), (16, 0.0), (17, -0.25), (18, -0.5), (20, -1.0), (21, -1.0), (1000, -1.0)],
)
def test_dapo_soft_overlong_punishment(tokens: int, score: float) -> None:
    # L_max = 20, L_cache = 4: no penalty up to 16, linear to -1 at 20, -1 beyond.
    (o,) = LengthPenalty(max_length=20, buffer=4).score([s("x", num_tokens=tokens)])
    assert o.score == pytest.approx(score)
    assert o.status == ("correct" if score == 0 else "incorrect")
    assert o.details["shaping"] is True


def test_length_in_characters_with_a_step_and_a_scale() -> None:
    v = LengthPenalty(max_length=5, unit="chars", penalty=0.5)
    assert [o.score for o in v.score([s("abcde"), s("abcdef")])] == [0.0, -0.5]


def test_length_params_are_checked() -> None:
    with pytest.raises(ConfigError, match="overlong.max_length: missing"):
        LengthPenalty()
    with pytest.raises(ConfigError, match=r"buffer: expected at most max_length \(4\), got 5"):
        LengthPenalty(max_length=4, buffer=5)
