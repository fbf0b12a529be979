"""The code verifier: right answers score 1, everything else 0 or an unscored failure, and
each known grader bug has a regression test that would catch it.

All programs run in the real sandbox (bubblewrap where it works, and the process backend).
"""

from __future__ import annotations

import json
import math
import secrets
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustgrpo.errors import ConfigError, SandboxError
from trustgrpo.sandbox import SandboxResult
from trustgrpo.verifiers.base import Outcome, Sample, Verifier
from trustgrpo.verifiers.code import (
    HARNESS_SOURCE,
    CodeVerifier,
    canonical,
    extract_program,
    normalise_output,
    parse_cases,
)

ADD_TESTS = [{"call": "add(1, 2)", "expected": 3}, {"call": "add(-5, 5)", "expected": 0}]
LINES_TESTS = [{"input": "3\n", "output": "1\n2\n3\n"}, {"input": "2\n", "output": "1\n2\n"}]
CORRECT_LINES = "n = int(input())\nfor i in range(1, n + 1):\n    print(i)\n"


def _fenced(code: str) -> str:
    return "Here is my solution:\n```python\n" + textwrap.dedent(code).strip() + "\n```\n"


def _sample(code: str, tests: Any, *, raw: bool = False, i: int = 0) -> Sample:
    completion = code if raw else _fenced(code)
    return Sample("p1", 0, i, "prompt", completion, metadata={"tests": tests})


_VERIFIERS: dict[tuple[str, bool], CodeVerifier | str] = {}


@pytest.fixture(params=["auto", "process"])
def verifier(request: pytest.FixtureRequest) -> Iterator[CodeVerifier]:
    """A code verifier on the preferred backend and on the fallback (0.5 s per case)."""
    key = (request.param, False)
    if key not in _VERIFIERS:
        try:
            _VERIFIERS[key] = CodeVerifier(backend=request.param, timeout_s=0.5, workers=2)
        except ConfigError as e:
            _VERIFIERS[key] = str(e)
    v = _VERIFIERS[key]
    if isinstance(v, str):
        pytest.skip(v)
    yield v


def _one(v: CodeVerifier, code: str, tests: Any, **kw: Any) -> Outcome:
    (out,) = v.score([_sample(code, tests, **kw)])
    return out


# --------------------------------------------------------------------------- basics


def test_correct_programs_score_one(verifier: CodeVerifier) -> None:
    outs = verifier.score(
        [
            _sample("def add(a, b):\n    return a + b", ADD_TESTS),
            _sample(CORRECT_LINES, LINES_TESTS),
            _sample(CORRECT_LINES, json.dumps(LINES_TESTS)),  # tests as a JSON string
        ]
    )
    for out in outs:
        assert (out.status, out.score) == ("correct", 1.0), out.details
        assert out.details["passed"] == out.details["total"] == 2
        assert out.details["isolation"] == verifier.isolation_level()
        assert out.verifier == f"code@{verifier.version}"


def test_wrong_programs_score_zero_or_partial(verifier: CodeVerifier) -> None:
    out = _one(verifier, "def add(a, b):\n    return 3", ADD_TESTS)
    assert (out.status, out.score, out.details["passed"]) == ("incorrect", 0.0, 1)
    assert [c["passed"] for c in out.details["cases"]] == [True, False]
    assert "got 3, expected 0" in out.details["cases"][1]["reason"]
    partial = CodeVerifier(backend=verifier.describe()["backend"], partial_credit=True)
    out = _one(partial, "def add(a, b):\n    return 3", ADD_TESTS)
    assert (out.status, out.score) == ("incorrect", 0.5)
    partial.close()


def test_outcomes_come_back_in_order(verifier: CodeVerifier) -> None:
    samples = [
        _sample(f"def add(a, b):\n    return {'a + b' if i % 2 else 0}", ADD_TESTS, i=i)
        for i in range(6)
    ]
    assert [o.status for o in verifier.score(samples)] == ["incorrect", "correct"] * 3


def test_is_a_verifier_with_a_version() -> None:
    v = CodeVerifier(backend="process")
    assert isinstance(v, Verifier) and v.name == "code"
    assert CodeVerifier(backend="process", timeout_s=2.0).version != v.version
    assert v.describe()["backend"] == "process"
    assert v.isolation == tuple(v.describe()["isolation"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"timeout": 3}, "verifiers.code.timeout: unknown parameter (did you mean verifiers.code"),
        ({"timeout_s": "3"}, "verifiers.code.timeout_s: expected a number > 0, got '3'"),
        ({"timeout_s": -1}, "verifiers.code.timeout_s: expected a number > 0, got -1"),
        ({"timeout_s": 601}, "verifiers.code.timeout_s: expected at most 600 seconds"),
        ({"memory_mb": 4}, "verifiers.code.memory_mb: expected an integer ≥ 32, got 4"),
        ({"workers": 1.5}, "verifiers.code.workers: expected an integer"),
        ({"extract": "last"}, "verifiers.code.extract: expected one of 'fenced', 'whole'"),
        ({"partial_credit": "yes"}, "verifiers.code.partial_credit: expected true or false"),
        ({"backend": "docker"}, "verifiers.code.backend: expected one of 'auto'"),
        ({"tests_column": ""}, "verifiers.code.tests_column: expected a non-empty string"),
    ],
)
def test_bad_params_name_the_field(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        CodeVerifier(**params)
    assert message in str(info.value)


def test_missing_tests_abstain_and_malformed_tests_are_errors(verifier: CodeVerifier) -> None:
    for tests in (None, "", []):
        out = _one(verifier, "print(1)", tests)
        assert (out.status, out.score) == ("abstain", None)
    out = _one(verifier, "print(1)", [{"input": "1"}])
    assert (out.status, out.score) == ("error", None)
    assert "tests[0]" in out.details["reason"]
    out = _one(verifier, "print(1)", "{not json")
    assert out.status == "error" and "JSON" in out.details["reason"]


def test_program_extraction() -> None:
    text = "```python\nprint(1)\n```\nbetter:\n```py\nprint(2)\n```\n```text\nnot code\n```"
    assert extract_program(text, "fenced") == "print(2)\n"
    assert extract_program("```\nprint(3)\n```", "fenced") == "print(3)\n"
    assert extract_program("no code here", "fenced") is None
    assert extract_program("print(4)", "whole") == "print(4)"


def test_no_program_is_incorrect_not_abstain(verifier: CodeVerifier) -> None:
    """A model must not escape the penalty by not writing code."""
    out = _one(verifier, "I don't know.", ADD_TESTS, raw=True)
    assert (out.status, out.score) == ("incorrect", 0.0)
    whole = CodeVerifier(backend="process", extract="whole")
    assert (
        whole.score([_sample("def add(a, b): return a + b", ADD_TESTS, raw=True)])[0].status
        == "correct"
    )
    whole.close()


# --------------------------------------------------------------------------- output comparison


@pytest.mark.parametrize(
    ("printed", "status"),
    [
        ("1\n2\n3\n", "correct"),
        ("1  \n2\n3", "correct"),  # trailing spaces and the final newline are not significant
        ("1\n2\n", "incorrect"),  # only a prefix of the lines: the zip bug
        ("1\n2\n3\n4\n", "incorrect"),  # trailing garbage
        ("1\n2\n3\nAll tests passed\n", "incorrect"),
        ("", "incorrect"),
        ("1 2 3\n", "incorrect"),
    ],
)
def test_whole_output_is_compared(verifier: CodeVerifier, printed: str, status: str) -> None:
    tests = [{"input": "3\n", "output": "1\n2\n3\n"}]
    out = _one(verifier, f"import sys\nsys.stdout.write({printed!r})", tests)
    assert out.status == status, out.details


def test_zip_prefix_regression() -> None:
    """A line-by-line zip passes a prefix; the whole-output comparison does not."""
    expected, got = "1\n2\n3\n", "1\n2\n"
    zip_says = all(a == b for a, b in zip(got.splitlines(), expected.splitlines(), strict=False))
    assert zip_says  # the buggy grader would pass it
    assert normalise_output(got) != normalise_output(expected)


def test_exit_status_matters(verifier: CodeVerifier) -> None:
    code = CORRECT_LINES + "raise RuntimeError('after the output')\n"
    out = _one(verifier, code, LINES_TESTS)
    assert out.status == "incorrect" and out.details["cases"][0]["reason"] == "exit code 1"
    code = CORRECT_LINES + "import sys\nsys.exit(0)\n"  # a legitimate early exit
    assert _one(verifier, code, LINES_TESTS).status == "correct"


# --------------------------------------------------------------------------- exact types


@pytest.mark.parametrize(
    ("returned", "expected", "status"),
    [
        ("1", 1, "correct"),
        ("1.0", 1, "incorrect"),
        ("True", 1, "incorrect"),
        ("1", True, "incorrect"),
        ("(1, 2)", [1, 2], "incorrect"),
        ("[1, 2]", [1, 2], "correct"),
        ("{'b': [1.5, None], 'a': 'x'}", {"a": "x", "b": [1.5, None]}, "correct"),
        ("{1: 'x'}", {"1": "x"}, "incorrect"),
        ("'3'", 3, "incorrect"),
        ("{1, 2}", [1, 2], "incorrect"),
    ],
)
def test_results_compared_with_exact_types(
    verifier: CodeVerifier, returned: str, expected: Any, status: str
) -> None:
    out = _one(
        verifier, f"def f():\n    return {returned}", [{"call": "f()", "expected": expected}]
    )
    assert out.status == status, out.details


ALWAYS_EQUAL = [
    """
    class AlwaysEqual:
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __hash__(self): return 0
    def add(a, b): return AlwaysEqual()
    """,
    """
    class Sneaky(int):
        def __eq__(self, other): return True
        def __repr__(self): return repr(3)
    def add(a, b): return Sneaky(3)
    """,
    """
    class Fake(str):
        def __eq__(self, other): return True
    def add(a, b): return Fake("3")
    """,
]


@pytest.mark.parametrize("code", ALWAYS_EQUAL, ids=["AlwaysEqual", "int-subclass", "str-subclass"])
def test_always_equal_objects_never_match(verifier: CodeVerifier, code: str) -> None:
    """Graders that compare ``out == expected`` inside the program's process lose to these."""
    out = _one(verifier, code, ADD_TESTS)
    assert (out.status, out.score) == ("incorrect", 0.0)
    assert "unsupported" in out.details["cases"][0]["reason"]


# --------------------------------------------------------------------------- early exits, fakes


@pytest.mark.parametrize(
    "code",
    [
        "import sys\nsys.exit(0)\ndef add(a, b): return a + b",
        "import os\nos._exit(0)\ndef add(a, b): return a + b",
        "def add(a, b):\n    import sys\n    sys.exit(0)",
        "def add(a, b):\n    import os\n    os._exit(0)",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef add(a, b): return a + b",
    ],
    ids=[
        "sys.exit-at-import",
        "os._exit-at-import",
        "sys.exit-in-call",
        "os._exit-in-call",
        "kill-the-harness",
    ],
)
def test_exiting_before_the_tests_scores_zero(verifier: CodeVerifier, code: str) -> None:
    out = _one(verifier, code, ADD_TESTS)
    assert (out.status, out.score) == ("incorrect", 0.0), out.details


def test_fake_pass_markers_and_guessed_nonces_score_zero(verifier: CodeVerifier) -> None:
    fake_frame = json.dumps(
        {"cases": [{"status": "exited", "exit_code": 0, "result": "3"}] * 2, "harness_error": None}
    )
    code = f"""
    import os, sys
    nonce = {secrets.token_hex(16)!r}
    frame = {fake_frame!r}
    print("All tests passed")
    print(frame)
    print(nonce, flush=True)
    try:
        with open("/proc/%d/fd/1" % os.getppid(), "w") as f:
            f.write(frame + "\\n" + nonce + "\\n")
    except OSError:
        pass
    os._exit(0)
    """
    out = _one(verifier, code, ADD_TESTS)
    assert (out.status, out.score) == ("incorrect", 0.0), out.details


def test_reading_the_expected_answer_is_impossible(verifier: CodeVerifier) -> None:
    """Expected outputs are never in the sandbox: not in files, stdin, argv or environment."""
    secret = "EXPECTED-" + secrets.token_hex(8)
    code = """
    import os, re, sys
    def leak():
        found = []
        blobs = [" ".join(sys.argv), repr(dict(os.environ)), sys.stdin.read()]
        paths = []
        for top in (".", "/tmp", os.path.expanduser("~")):
            paths += [os.path.join(r, n) for r, _, names in os.walk(top) for n in names]
        for top in ("/", ".."):  # not recursively: "/" holds /usr
            try:
                paths += [os.path.join(top, n) for n in os.listdir(top)]
            except OSError:
                pass
        for path in paths:
            try:
                blobs.append(open(path, errors="replace").read())
            except OSError:
                pass
        for blob in blobs:
            found += re.findall(r"EXPECTED-[0-9a-f]{16}", blob)
        return found[0] if found else "not found"
    """
    tests = [{"call": "leak()", "expected": secret}]
    out = _one(verifier, code, tests)
    assert out.status == "incorrect" and "not found" in out.details["cases"][0]["reason"]
    assert secret not in HARNESS_SOURCE


# --------------------------------------------------------------------------- tampering


def test_monkey_patching_cannot_change_the_verdict(verifier: CodeVerifier) -> None:
    patches = """
import builtins, json, random, time
builtins.sorted = lambda *a, **k: []
builtins.type = lambda *a: int
builtins.repr = lambda x: "3"
builtins.print = lambda *a, **k: None
json.dumps = lambda *a, **k: "3"
time.time = lambda: 0.0
random.random = lambda: 0.5
"""
    right = patches + "\ndef add(a, b):\n    return {'sum': a + b, 'ok': True}\n"
    tests = [{"call": "add(1, 2)", "expected": {"ok": True, "sum": 3}}]
    assert _one(verifier, right, tests).status == "correct"
    wrong = patches + "\ndef add(a, b):\n    return a - b\n"
    assert _one(verifier, wrong, ADD_TESTS).status == "incorrect"


def test_each_case_runs_in_a_fresh_process(verifier: CodeVerifier) -> None:
    code = """
    import builtins
    calls = 0
    def f():
        global calls
        calls += 1
        builtins.abs = lambda x: 99
        return [calls, abs(-1)]
    """
    tests = [{"call": "f()", "expected": [1, 99]}] * 3
    assert _one(verifier, code, tests).status == "correct"


@pytest.mark.parametrize("name", ["sitecustomize.py", "usercustomize.py", "conftest.py", "json.py"])
def test_startup_hooks_written_by_the_program_do_nothing(verifier: CodeVerifier, name: str) -> None:
    code = f"""
    import os
    for d in (".", os.path.expanduser("~")):
        try:
            with open(os.path.join(d, {name!r}), "w") as f:
                f.write("import os\\nos._exit(0)\\n")
        except OSError:
            pass
    def add(a, b):
        return a + b
    """
    tests = [*ADD_TESTS, {"call": "add(2, 2)", "expected": 5}]
    out = _one(verifier, code, tests)
    assert out.status == "incorrect" and out.details["passed"] == 2


# --------------------------------------------------------------------------- failures are typed


def test_sandbox_errors_are_errors_not_zero(verifier: CodeVerifier) -> None:
    """open-r1's code reward returns 0.0 when the sandbox fails; ours returns ``error``."""
    box = verifier.pool.sandbox
    saved = box.workdir_root
    box.workdir_root = "/nonexistent/trustgrpo-no-such-dir"
    try:
        out = _one(verifier, "def add(a, b):\n    return a + b", ADD_TESTS)
    finally:
        box.workdir_root = saved
    assert (out.status, out.score) == ("error", None)
    assert "sandbox" in out.details["reason"]


def test_harness_failures_are_errors() -> None:
    nonce = "ab" * 16
    frame = json.dumps({"cases": [], "harness_error": "Traceback: OSError"})
    from trustgrpo.verifiers.code import _read_frame

    result = SandboxResult("ok", 0, frame + "\n" + nonce + "\n", "", False, 1.0, ("process",))
    with pytest.raises(SandboxError, match="harness failed"):
        _read_frame(result, nonce)
    truncated = SandboxResult("ok", 0, frame + "\n", "", False, 1.0, ("process",))
    assert "nonce missing" in str(_read_frame(truncated, nonce))


@pytest.mark.parametrize(
    "code",
    ["def add(a, b):\n    while True: pass", "import time\ntime.sleep(60)"],
    ids=["loop-in-call", "sleep-at-import"],
)
def test_deadlines_are_timeouts_not_zero(verifier: CodeVerifier, code: str) -> None:
    out = _one(verifier, code, ADD_TESTS)
    assert (out.status, out.score) == ("timeout", None)
    assert [c["status"] for c in out.details["cases"]] == ["timeout", "not_run"]


def test_a_wrong_answer_before_a_timeout_is_incorrect(verifier: CodeVerifier) -> None:
    code = "def add(a, b):\n    if a < 0:\n        while True: pass\n    return 0"
    out = _one(verifier, code, ADD_TESTS)
    assert (out.status, out.score) == ("incorrect", 0.0)


@pytest.mark.parametrize(
    "code",
    [
        "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
        "x = bytearray(2**40)",
        "import sys\nsys.stdout.write('x' * 10**8)",
        "import os\nos.kill(os.getpid(), 11)",
    ],
    ids=["fork-bomb", "memory", "huge-output", "segfault"],
)
def test_hostile_programs_are_contained(verifier: CodeVerifier, code: str) -> None:
    out = _one(verifier, code, LINES_TESTS)
    assert out.status in ("incorrect", "timeout") and out.score in (0.0, None), out.details
    # and the verifier still works afterwards
    assert _one(verifier, CORRECT_LINES, LINES_TESTS).status == "correct"


# --------------------------------------------------------------------------- canonical form


def test_canonical_examples() -> None:
    assert canonical([1, 1.0, True, "a", (None,), {"b": 2, "a": 1}]) == (
        '[1,1.0,true,"a",tuple[null],{"a":1,"b":2}]'
    )
    assert canonical({3, 1, 2}) == "set{1,2,3}"
    assert canonical(frozenset()) == "frozenset{}"
    assert canonical(float("nan")) == "nan" and canonical(-0.0) != canonical(0.0)
    assert canonical(object()) == "<unsupported object>"
    deep: list[Any] = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        canonical(deep)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values, json_values)
def test_canonical_equal_means_equal(a: Any, b: Any) -> None:
    if canonical(a) == canonical(b):
        assert a == b and type(a) is type(b)
    assert canonical(json.loads(json.dumps(a))) == canonical(a)


def test_parse_cases() -> None:
    cases = parse_cases('[{"input": "1", "output": "2"}, {"call": "f()", "expected": [1.5]}]')
    assert cases[0].input == "1" and cases[0].output == "2"
    assert cases[1].call == "f()" and cases[1].expected == "[1.5]"
    assert parse_cases({"call": "f()", "expected": None})[0].expected == "null"
    for bad in ('[{"input": 1, "output": "2"}]', "[1]", '{"call": 3, "expected": 1}', "3"):
        with pytest.raises(ValueError, match="tests"):
            parse_cases(bad)
    assert math.isnan(float(canonical(float("nan"))))
