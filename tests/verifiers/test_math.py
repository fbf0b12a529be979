"""``math`` (math-verify) against its case table, with timeouts and the pool."""

from __future__ import annotations

import pytest

pytest.importorskip("math_verify")

from trustgrpo.verifiers import MathVerifier, Sample
from trustgrpo.verifiers.math_answer import parse_reference


def s(completion: str, reference: str | None) -> Sample:
    return Sample("p", 0, 0, "q", completion, reference)


# (completion, reference, status)
CASES = [
    # fractions and decimals
    (r"The answer is $\boxed{\frac{1}{2}}$.", "0.5", "correct"),
    (r"$\boxed{0.5}$", r"\frac{1}{2}", "correct"),
    (r"$\boxed{\dfrac{3}{4}}$", "3/4", "correct"),
    (r"$\boxed{0.3333333}$", r"\frac{1}{3}", "correct"),  # rounded to 6 places
    (r"$\boxed{0.33}$", r"\frac{1}{3}", "incorrect"),
    (r"$\boxed{2}$", r"\frac{1}{2}", "incorrect"),
    # plain text and LaTeX
    ("The answer is 42", "42", "correct"),
    (r"\(x = 2\sqrt{2}\)", r"2\sqrt{2}", "correct"),
    (r"$\boxed{\sqrt{8}}$", r"2\sqrt{2}", "correct"),
    (r"$\boxed{\pi}$", r"\pi", "correct"),
    (r"$\boxed{3.14}$", r"\pi", "incorrect"),
    # sets and intervals
    (r"$\boxed{\{3, 1, 2\}}$", r"\{1,2,3\}", "correct"),
    (r"$\boxed{\{1, 2\}}$", r"\{1,2,3\}", "incorrect"),
    (r"$\boxed{[0, 1)}$", "[0,1)", "correct"),
    (r"$\boxed{(0, 1)}$", "[0,1]", "incorrect"),
    # answers that are not answers
    ("", "42", "incorrect"),
    (r"\boxed{}", "42", "incorrect"),
    ("I do not know", "42", "incorrect"),
    (r"$\boxed{41}$ or $\boxed{42}$", "42", "incorrect"),  # hedging: several answers
    # no reference / unparseable reference: cannot judge
    (r"$\boxed{42}$", None, "abstain"),
    (r"$\boxed{42}$", "   ", "abstain"),
]


@pytest.mark.parametrize(("completion", "reference", "status"), CASES)
def test_math_case_table(completion: str, reference: str | None, status: str) -> None:
    (o,) = MathVerifier(workers=1).score([s(completion, reference)])
    assert o.status == status, o.details
    assert o.score == {"correct": 1.0, "incorrect": 0.0, "abstain": None}[status]


@pytest.mark.parametrize(
    ("extract", "completion", "status"),
    [
        ("answer_tag", "<answer>1/2</answer>", "correct"),
        ("answer_tag", r"<answer>\frac{1}{2}</answer>", "correct"),
        ("answer_tag", r"\boxed{0.5}", "incorrect"),
        ("answer_tag", "<answer>0.2</answer><answer>0.5</answer>", "incorrect"),
        ("answer_tag", "<answer> </answer>", "incorrect"),
        ("boxed", r"so \boxed{0.5}", "correct"),
        ("boxed", "0.5", "incorrect"),
        ("boxed", r"\boxed{0.2} then \boxed{0.5}", "incorrect"),
    ],
)
def test_math_extraction_modes(extract: str, completion: str, status: str) -> None:
    (o,) = MathVerifier(extract=extract, workers=1).score([s(completion, "0.5")])
    assert o.status == status, o.details


def test_extracted_answer_and_reason_are_recorded() -> None:
    ok, hedge = MathVerifier(extract="boxed", workers=1).score(
        [s(r"\boxed{1/2}", "0.5"), s(r"\boxed{1} \boxed{2}", "1")]
    )
    assert ok.details["extracted"] == r"\frac{1}{2}"  # as math-verify normalised it
    assert "several different" in hedge.details["reason"]


def test_reference_is_parsed_once_per_process() -> None:
    parse_reference.cache_clear()
    v = MathVerifier(workers=1)
    v.score([s(r"\boxed{7}", "7"), s(r"\boxed{8}", "7"), s("7", "7")])
    info = parse_reference.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_a_slow_comparison_is_a_timeout_not_a_zero() -> None:
    # A huge power makes SymPy work for a long time; the sample's timer stops it.
    slow = r"$\boxed{9^{9^{9^{9}}} - 9^{9^{9^{9}}} + 1}$"
    v = MathVerifier(timeout_s=0.3, workers=1)
    (o,) = v.score([s(slow, "1")])
    assert o.status == "timeout" and o.score is None
    assert o.duration_ms < 5000


def test_a_power_too_big_to_compute_is_refused_before_sympy_tries() -> None:
    # 9^(9^9) has 370 million digits: CPython computes it in C, where no timer can stop it.
    v = MathVerifier(timeout_s=30.0, workers=1)
    huge, fine = v.score(
        [s(r"$\boxed{9^{9^{9}}}$", "1"), s(r"$\boxed{2^{100} - 2^{100} + 1}$", "1")]
    )
    assert huge.status == "timeout" and "too big to compute" in huge.details["reason"]
    assert huge.duration_ms < 5000
    assert fine.status == "correct"


def test_version_includes_math_verify_version_and_ignores_pool_size() -> None:
    a, b = MathVerifier(workers=1), MathVerifier(workers=2, pool_min_batch=8)
    assert a.version == b.version
    assert MathVerifier(timeout_s=1.0).version != a.version
    assert "math-verify" in a.describe()["dependencies"]


def test_large_batches_run_in_the_pool_in_sample_order() -> None:
    refs = [str(i) for i in range(40)]
    # Every third completion is wrong; the outcomes must line up with their samples.
    samples = [s(rf"$\boxed{{{int(r) + (i % 3 == 0)}}}$", r) for i, r in enumerate(refs)]
    pooled = MathVerifier(workers=2, pool_min_batch=8).score(samples)
    local = MathVerifier(workers=1).score(samples)
    assert [o.status for o in pooled] == [o.status for o in local]
    assert [o.status for o in pooled] == [
        "incorrect" if i % 3 == 0 else "correct" for i in range(len(samples))
    ]
