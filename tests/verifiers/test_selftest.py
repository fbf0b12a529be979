"""The start-of-run self-test and the determinism check catch broken verifiers."""

from __future__ import annotations

from typing import Any

import pytest

from trustgrpo.config import Config, VerifierSpec
from trustgrpo.errors import VerifierError
from trustgrpo.verifiers import (
    FunctionVerifier,
    MathVerifier,
    Sample,
    build_reward,
    gold_samples,
    register_canary,
)
from trustgrpo.verifiers.compose import Component, Reward
from trustgrpo.verifiers.selftest import CANARIES
from trustgrpo.verifiers.testing import MisbehavingVerifier

REFS = ["12", "-3", "0.5", "1234"]


def trainer_samples(refs: list[str] = REFS) -> list[Sample]:
    """What the trainer passes: the completion is the raw reference answer."""
    return [Sample(f"p{i}", 0, i, f"q{i}", r, r) for i, r in enumerate(refs)]


@pytest.mark.parametrize(
    "spec",
    [
        VerifierSpec("numeric"),
        VerifierSpec("numeric", params={"extract": "full"}),
        VerifierSpec("numeric", params={"extract": "first_number"}),
        VerifierSpec("numeric", params={"extract": "boxed"}),
        VerifierSpec("numeric", params={"extract": "answer_tag"}),
        VerifierSpec("exact"),
        VerifierSpec("exact", params={"extract": "answer_tag", "case_sensitive": False}),
        VerifierSpec("math", params={"workers": 1}),
        VerifierSpec("math", params={"extract": "answer_tag", "workers": 1}),
        VerifierSpec("format", role="gate"),
    ],
    ids=lambda s: f"{s.type}-{dict(s.params)}",
)
def test_builtins_pass_their_own_self_test(spec: VerifierSpec) -> None:
    report = build_reward(Config(verifiers=(spec,))).self_test(trainer_samples())
    assert report.ok, report.summary()
    kinds = {c.kind for c in report.cases}
    assert kinds == {"gold", "canary"}
    assert len(report.cases) > len(REFS)  # canaries ran too


def test_a_verifier_that_rejects_gold_answers_fails() -> None:
    def strict(completions: list[str], answer: list[str], **kw: Any) -> list[float]:
        # a broken grader: wants a full stop after the answer
        return [float(c == a + ".") for c, a in zip(completions, answer, strict=True)]

    report = Reward([Component(FunctionVerifier(strict, name="strict"))]).self_test(
        trainer_samples()
    )
    assert not report.ok
    assert {c.kind for c in report.failures} == {"gold"}
    with pytest.raises(VerifierError) as e:
        report.raise_if_failed()
    text = str(e.value)
    assert "strict@" in text and "gold answer: 4 failed (expected correct)" in text
    assert "prompt p0: completion '12' -> incorrect (score 0.0)" in text


def test_a_verifier_that_accepts_canaries_fails() -> None:
    def lenient(completions: list[str], answer: list[str], **kw: Any) -> list[float]:
        return [float(a in c or not c.strip()) for c, a in zip(completions, answer, strict=True)]

    report = Reward([Component(FunctionVerifier(lenient, name="lenient"))]).self_test(
        trainer_samples()
    )
    labels = {c.label for c in report.failures}
    assert labels == {"empty", "whitespace"}
    assert "canary 'empty': 4 failed (expected not correct)" in report.summary()


def test_registered_canaries_catch_a_hedge_accepting_grader() -> None:
    def any_number(completions: list[str], answer: list[str], **kw: Any) -> list[float]:
        return [float(a in c.split()) for c, a in zip(completions, answer, strict=True)]

    register_canary("hedge-test", "several answers", lambda s, v: f"{s.reference} 7 8 9")
    try:
        comp = Component(FunctionVerifier(any_number), type="hedge-test")
        report = Reward([comp]).self_test(trainer_samples(["12"]))
    finally:
        del CANARIES["hedge-test"]
    assert [c.label for c in report.failures] == ["several answers"]


def test_a_crashing_verifier_fails_its_self_test() -> None:
    v = MisbehavingVerifier(workers=1)
    report = Reward([Component(v)]).self_test(
        [Sample("p", 0, 0, "q", "raise", "x"), Sample("p", 0, 1, "q", "ok", "x")]
    )
    (fail,) = report.failures
    assert fail.outcome.status == "error" and "told to raise" in report.summary()


def test_verifiers_without_a_gold_completion_are_reported_as_skipped() -> None:
    cfg = Config(verifiers=(VerifierSpec("regex", params={"pattern": r"\d+"}),))
    report = build_reward(cfg).self_test(trainer_samples())
    assert report.ok
    assert report.skipped == [
        f"{build_reward(cfg).components[0].id}: no gold completion for 4 sample(s)"
    ]


def test_gold_samples_helper() -> None:
    out = gold_samples(["1+1=", "2+2="], ["2", "4"], [{"op": "+"}, None], template="{answer}")
    assert [(x.completion, x.reference, dict(x.metadata)) for x in out] == [
        ("2", "2", {"op": "+"}),
        ("4", "4", {}),
    ]
    with pytest.raises(ValueError, match="references: expected 2 items, got 1"):
        gold_samples(["a", "b"], ["1"])


def test_determinism_check_passes_for_a_deterministic_reward() -> None:
    r = build_reward(
        Config(verifiers=(VerifierSpec("numeric"), VerifierSpec("math", params={"workers": 1})))
    )
    samples = [Sample("p", 0, i, "q", c, "4") for i, c in enumerate([" 4", "5", r"\boxed{4}"])]
    result = r.score(samples)
    assert r.rescore(samples, result.outcomes) == []


def test_determinism_check_catches_a_nondeterministic_verifier() -> None:
    v = MisbehavingVerifier(workers=1)
    r = Reward([Component(v)])
    samples = [Sample("p", 0, i, "q", c, None) for i, c in enumerate(["ok", "random", "no"])]
    result = r.score(samples)
    (m,) = r.rescore(samples, result.outcomes)
    assert m.sample == 1 and m.component == v.id
    assert m.before.score != m.after.score
    assert str(m).startswith(f"sample 1 (prompt p), {v.id}: incorrect")


def test_math_canaries_include_hedges_and_a_mention_of_the_answer() -> None:
    labels = {label for label, _ in MathVerifier(workers=1).canaries(trainer_samples()[0])}
    assert {
        "empty",
        "format only",
        "empty box",
        "wrong answer",
        "several answers",
        "mentions the answer",
    } <= labels


def test_code_canaries_always_equal_and_early_exit_do_not_pass() -> None:
    pytest.importorskip("trustgrpo.verifiers.code")
    from trustgrpo.config import SandboxConfig
    from trustgrpo.errors import ConfigError

    cfg = Config(
        verifiers=(VerifierSpec("code"),),
        sandbox=SandboxConfig(timeout_s=5.0, allow_weak_isolation=True),
    )
    try:
        r = build_reward(cfg)
    except ConfigError as e:  # no usable sandbox here
        pytest.skip(str(e))
    try:
        tests = [{"call": "add(1, 2)", "expected": 3}, {"call": "add(-1, 1)", "expected": 0}]
        gold = "```python\ndef add(a, b):\n    return a + b\n```\n"
        report = r.self_test([Sample("c0", 0, 0, "write add", gold, None, {"tests": tests})])
    finally:
        r.close()
    labels = {c.label: c.outcome.status for c in report.cases}
    assert labels["gold"] == "correct", report.summary()
    assert labels["always-equal object"] == "incorrect", report.summary()
    assert labels["exit before the tests"] == "incorrect", report.summary()
    assert report.ok, report.summary()
