"""TRL-shaped reward functions as verifiers: every way a function can fail is an error."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trustgrpo.errors import ConfigError
from trustgrpo.verifiers import FunctionVerifier, Sample, build_verifier, check_specs
from trustgrpo.verifiers.compose import Component, FailurePolicy, Reward


def samples(*completions: str, reference: str = "4") -> list[Sample]:
    return [
        Sample("p", 0, i, "2+2=", c, reference, {"level": i}) for i, c in enumerate(completions)
    ]


def accuracy(completions: list[str], answer: list[str], **kw: Any) -> list[float | None]:
    return [float(c.strip() == a) for c, a in zip(completions, answer, strict=True)]


def test_scores_statuses_and_abstain() -> None:
    def f(completions: list[str], **kw: Any) -> list[float | None]:
        return [{"a": 1.0, "b": 0.0, "c": None, "d": 0.5}[c] for c in completions]

    outs = FunctionVerifier(f).score(samples("a", "b", "c", "d"))
    assert [(o.status, o.score) for o in outs] == [
        ("correct", 1.0),
        ("incorrect", 0.0),
        ("abstain", None),
        ("incorrect", 0.5),
    ]
    outs = FunctionVerifier(f, correct_at=0.5).score(samples("d"))
    assert outs[0].status == "correct"


def test_receives_prompts_reference_and_data_columns() -> None:
    seen: dict[str, Any] = {}

    def f(prompts: list[str], completions: list[str], **kw: Any) -> list[float]:
        seen.update(prompts=prompts, **kw)
        return [1.0] * len(completions)

    FunctionVerifier(f, scale=3).score(samples("x", "y"))
    assert seen == {"prompts": ["2+2=", "2+2="], "answer": ["4", "4"], "level": [0, 1], "scale": 3}


def test_a_function_without_kwargs_gets_only_its_own_names() -> None:
    def f(completions: list[str], solution: list[str]) -> list[float]:
        return [float(c == s) for c, s in zip(completions, solution, strict=True)]

    v = FunctionVerifier(f, reference_kwarg="solution")
    assert [o.status for o in v.score(samples("4", "5"))] == ["correct", "incorrect"]
    with pytest.raises(ConfigError, match=r"\.scale: the function takes no keyword 'scale'"):
        FunctionVerifier(f, scale=2)


def test_a_raising_function_is_an_error_never_a_score() -> None:
    # verl PR #7853: an exception in the reward function ended up as a reward of 1.0.
    def f(completions: list[str], **kw: Any) -> list[float]:
        raise RuntimeError("sandbox unreachable")

    v = FunctionVerifier(f)
    outs = v.score(samples("4", "5"))
    assert all(o.status == "error" and o.score is None for o in outs)
    assert outs[0].details["error"] == "RuntimeError: sandbox unreachable"
    masked = Reward([Component(v)]).score(samples("4", "5"))
    assert np.isnan(masked.rewards).all() and masked.counts["masked"] == 2
    zero = Reward([Component(v)], FailurePolicy(on_error=0.0)).score(samples("4"))
    assert zero.rewards.tolist() == [0.0]


def test_a_short_list_errors_every_sample_instead_of_shifting() -> None:
    # NeMo-RL PR #3635: a failed extraction dropped one reward and shifted the rest by a slot.
    def f(completions: list[str], **kw: Any) -> list[float]:
        return [1.0 for c in completions if c.strip()]  # skips the empty one

    outs = FunctionVerifier(f).score(samples("4", "", "4"))
    assert [o.status for o in outs] == ["error"] * 3
    assert "expected a list of 3 rewards" in outs[0].details["error"]


class AlwaysEqual:
    def __eq__(self, other: object) -> bool:
        return True

    def __float__(self) -> float:
        return 1.0

    def __ge__(self, other: object) -> bool:
        return True


class LyingFloat(float):
    def __float__(self) -> float:
        return 1.0

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = float.__hash__


@pytest.mark.parametrize(
    ("value", "status", "score"),
    [
        (float("nan"), "error", None),
        (float("inf"), "error", None),
        (True, "error", None),
        ("1.0", "error", None),
        (AlwaysEqual(), "error", None),  # an object claiming to be everything is not a score
        (LyingFloat(0.0), "incorrect", 0.0),  # read through float's own slot
        (np.float32(1.0), "correct", 1.0),
        (np.int64(0), "incorrect", 0.0),
        (1, "correct", 1.0),
    ],
)
def test_only_real_finite_numbers_are_scores(value: Any, status: str, score: float | None) -> None:
    def f(completions: list[str], **kw: Any) -> list[Any]:
        return [value]

    (o,) = FunctionVerifier(f).score(samples("x"))
    assert (o.status, o.score) == (status, score)


def test_numpy_results_and_async_functions() -> None:
    def f(completions: list[str], **kw: Any) -> np.ndarray:
        return np.array([1.0, 0.0])

    async def g(completions: list[str], **kw: Any) -> list[float]:
        return [0.0, 1.0]

    assert [o.score for o in FunctionVerifier(f).score(samples("a", "b"))] == [1.0, 0.0]
    assert [o.score for o in FunctionVerifier(g).score(samples("a", "b"))] == [0.0, 1.0]


def _write_module(root: Path, name: str, body: str) -> None:
    (root / f"{name}.py").write_text(textwrap.dedent(body))


def test_run_files_name_functions_and_their_version_is_their_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(
        tmp_path,
        "my_rewards_v",
        """
        def acc(completions, answer, **kw):
            return [float(c.strip() == a) for c, a in zip(completions, answer)]
        """,
    )
    v1 = build_verifier({"type": "my_rewards_v:acc", "params": {}})
    assert v1.name == "my_rewards_v:acc"
    assert [o.status for o in v1.score(samples("4", "5"))] == ["correct", "incorrect"]
    again = build_verifier({"type": "my_rewards_v:acc"})
    assert again.version == v1.version  # same source, same parameters
    assert build_verifier({"type": "my_rewards_v:acc", "correct_at": 0.5}).version != v1.version
    _write_module(
        tmp_path,
        "my_rewards_v",
        """
        def acc(completions, answer, **kw):
            return [float(c.strip().lower() == a) for c, a in zip(completions, answer)]
        """,
    )
    importlib.reload(sys.modules["my_rewards_v"])
    v2 = build_verifier({"type": "my_rewards_v:acc"})
    assert v2.version != v1.version  # edited code is a new version


def test_bad_function_paths_are_config_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(tmp_path, "my_rewards_bad", "NOT_CALLABLE = 3\nimport nonexistent_pkg_xyz\n")
    _write_module(tmp_path, "my_rewards_ok", "NOT_CALLABLE = 3\ndef f(completions): return []\n")
    problems = check_specs(
        [
            {"type": "no_such_module_xyz:f"},
            {"type": "my_rewards_bad:f"},
            {"type": "my_rewards_ok:g"},
            {"type": "my_rewards_ok:NOT_CALLABLE"},
            {"type": "my_rewards_ok:f", "scale": 2},
        ]
    )
    assert problems[0].startswith("verifiers[0].type: cannot import module 'no_such_module_xyz'")
    assert "ModuleNotFoundError" in problems[1] and "nonexistent_pkg_xyz" in problems[1]
    assert problems[2] == "verifiers[2].type: module 'my_rewards_ok' has no attribute 'g'"
    assert (
        problems[3] == "verifiers[3].type: 'my_rewards_ok:NOT_CALLABLE' is not callable (got int)"
    )
    assert problems[4].startswith("verifiers[4].scale: the function takes no keyword 'scale'")


def test_gold_completion_uses_the_template() -> None:
    v = FunctionVerifier(accuracy, gold_template="<answer>{answer}</answer>")
    assert v.gold_completion(samples("x")[0]) == "<answer>4</answer>"
    assert FunctionVerifier(accuracy).gold_completion(samples("x")[0]) == "4"
