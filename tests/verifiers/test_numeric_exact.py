"""``numeric`` and ``exact`` against their case tables, with the grader bugs they must not have."""

from __future__ import annotations

import pytest

from trustgrpo.errors import ConfigError
from trustgrpo.verifiers import ExactVerifier, NumericVerifier, Sample
from trustgrpo.verifiers.exact import outputs_match
from trustgrpo.verifiers.extract import extract_answer, find_numbers, parse_number


def s(completion: str, reference: str | None = "42") -> Sample:
    return Sample("p", 0, 0, "q", completion, reference)


# (params, completion, reference, status, score)
NUMERIC_CASES = [
    ({}, " 42", "42", "correct", 1.0),
    ({}, "42<eos>", "42", "correct", 1.0),
    ({}, "The answer is 42.", "42", "correct", 1.0),
    ({}, "41 + 1 = 42", "42", "correct", 1.0),
    ({}, "I think 42, no wait, 41", "42", "incorrect", 0.0),  # the last number counts
    ({}, "no idea", "42", "incorrect", 0.0),  # no number: the model failed, not abstain
    ({}, "", "42", "incorrect", 0.0),
    ({}, "42", None, "abstain", None),  # no reference: cannot judge
    ({}, "42", "forty-two", "abstain", None),  # non-numeric reference: cannot judge
    ({}, "-17", "-17", "correct", 1.0),
    ({}, "5-3 is 2", "2", "correct", 1.0),  # "5-3" is not "-3"
    ({}, "1,234", "1234", "correct", 1.0),
    ({}, "0.50", "0.5", "correct", 1.0),
    ({}, "3/4", "0.75", "incorrect", 0.0),  # the last number of "3/4" is 4
    ({}, "1e3", "1000", "correct", 1.0),
    ({"extract": "first_number"}, "42 then 41", "42", "correct", 1.0),
    ({"extract": "full"}, " 85", "85", "correct", 1.0),
    ({"extract": "full"}, "85<eos>", "85", "correct", 1.0),
    ({"extract": "full"}, "850", "85", "incorrect", 0.0),  # the demo's sloppy teacher
    ({"extract": "full"}, "85 86", "85", "incorrect", 0.0),
    ({"extract": "full"}, "3/4", "0.75", "correct", 1.0),
    ({"extract": "boxed"}, r"so \boxed{42}.", "42", "correct", 1.0),
    ({"extract": "boxed"}, r"\boxed{41} \boxed{42}", "42", "incorrect", 0.0),  # hedging
    ({"extract": "boxed"}, r"\boxed{42} \boxed{42}", "42", "correct", 1.0),
    ({"extract": "boxed"}, "42", "42", "incorrect", 0.0),
    ({"extract": "answer_tag"}, "<answer> 42 </answer>", "42", "correct", 1.0),
    ({"extract": "answer_tag"}, "<answer>41</answer><answer>42</answer>", "42", "incorrect", 0.0),
    ({"extract": "answer_tag"}, "<answer></answer>", "42", "incorrect", 0.0),
    ({"tolerance": 0.01}, "3.141", "3.14159", "correct", 1.0),
    ({"tolerance": 0.001}, "3.14", "3.14159", "incorrect", 0.0),
    ({"rel_tolerance": 0.01}, "1005", "1000", "correct", 1.0),
    ({"rel_tolerance": 0.001}, "1005", "1000", "incorrect", 0.0),
]


@pytest.mark.parametrize(("params", "completion", "reference", "status", "score"), NUMERIC_CASES)
def test_numeric_case_table(
    params: dict, completion: str, reference: str | None, status: str, score: float | None
) -> None:
    (o,) = NumericVerifier(**params).score([s(completion, reference)])
    assert (o.status, o.score) == (status, score), o.details


def test_numeric_failure_says_why() -> None:
    v = NumericVerifier()
    no_number, wrong = v.score([s("no idea"), s("41")])
    assert no_number.details["reason"] == "no number found"
    assert wrong.details == {"reason": "wrong value", "extracted": "41"}
    assert v.score([s("42")])[0].details == {"extracted": "42"}


def test_numeric_outcome_names_its_verifier_and_version() -> None:
    v = NumericVerifier(name="acc")
    (o,) = v.score([s("42")])
    assert o.verifier == f"acc@{v.version}" and len(v.version) == 12
    assert o.duration_ms >= 0


def test_numeric_rejects_bad_params_naming_the_field() -> None:
    with pytest.raises(ConfigError) as e:
        NumericVerifier(tolerance=-1, extract="middle")
    text = str(e.value)
    assert "numeric.tolerance: expected a number ≥ 0, got -1" in text
    assert "numeric.extract: expected one of" in text


def test_numbers_are_found_and_parsed_exactly() -> None:
    assert find_numbers("x=-3, y=.5, z=1,234,567 and 2.") == ["-3", ".5", "1,234,567", "2"]
    assert parse_number("0.1") + parse_number("0.2") == parse_number("0.3")  # exact, not float
    assert parse_number("1/0") is None
    assert parse_number("") is None
    assert extract_answer("42<|im_end|>junk 7", "last_number") == ("42", "")


# (params, completion, reference, status)
EXACT_CASES = [
    ({}, "Paris", "Paris", "correct"),
    ({}, "  Paris \n", "Paris", "correct"),
    ({}, "paris", "Paris", "incorrect"),
    ({"case_sensitive": False}, "PARIS", "paris", "correct"),
    ({}, "Paris.", "Paris", "incorrect"),
    ({"strip_punctuation": True}, "Paris.", "Paris", "correct"),
    ({}, "New  York", "New York", "incorrect"),
    ({"collapse_whitespace": True}, "New \n York", "New York", "correct"),
    ({}, "ｆｕｌｌ", "full", "correct"),  # NFKC folds full-width letters
    ({"unicode": "none"}, "ｆｕｌｌ", "full", "incorrect"),
    ({}, "", "Paris", "incorrect"),
    ({}, "Paris", None, "abstain"),
    ({"extract": "last_line"}, "thinking...\nParis", "Paris", "correct"),
    ({"extract": "answer_tag"}, "<answer>Paris</answer>", "Paris", "correct"),
    ({"extract": "boxed"}, r"\boxed{Paris}", "Paris", "correct"),
    # open-r1's code_reward compared lines with zip(): a prefix of the expected lines passed.
    ({}, "1\n2", "1\n2\n3", "incorrect"),
    ({}, "1\n2\n3\n4", "1\n2\n3", "incorrect"),
    ({}, "1\r\n2 \n3\n", "1\n2\n3", "correct"),
]


@pytest.mark.parametrize(("params", "completion", "reference", "status"), EXACT_CASES)
def test_exact_case_table(
    params: dict, completion: str, reference: str | None, status: str
) -> None:
    (o,) = ExactVerifier(**params).score([s(completion, reference)])
    assert o.status == status, o.details
    assert o.score == {"correct": 1.0, "incorrect": 0.0, "abstain": None}[status]


def test_output_comparison_is_whole_not_zip() -> None:
    expected = "1\n2\n3\n"
    assert outputs_match("1\n2\n3", expected)
    assert not outputs_match("1\n2\n", expected)  # prefix
    assert not outputs_match("1\n2\n3\nPASS\n", expected)  # trailing garbage
    assert not outputs_match("", expected)
