"""Code verifier: run the completion's program against test cases in the sandbox.

Every program is hostile. What keeps a reward honest here:

1. **Expected answers never enter the sandbox.** The sandbox gets the program
   (``solution.py``), the test *inputs* (``cases.json``) and a per-run random nonce on stdin.
   All comparison happens in the grader process.
2. **Exact, whole comparisons.** Function results are compared as canonical serialisations
   with exact types (:func:`canonical`): ``1 != 1.0 != True``, a tuple is not a list, and an
   object whose ``__eq__`` always returns True serialises as an unsupported type that equals
   nothing. Standard output is compared whole, after removing trailing whitespace on each
   line and trailing blank lines: a prefix of the expected lines fails, trailing garbage
   fails (no line-by-line ``zip``).
3. **One fresh process per test case.** The harness (trusted code, ``_h_main``) forks a child
   for each case and runs the program only there, with the case's stdin, its own stdout and
   stderr pipes, and a per-case deadline. A program that monkey-patches builtins, ``time`` or
   ``random``, calls ``sys.exit(0)`` or ``os._exit(0)``, or writes ``sitecustomize.py`` only
   affects its own case; the harness itself never runs model code.
4. **A completion nonce.** The harness reads the nonce only after the last case and prints
   it after the results. Output without it (the harness was killed, or a program printed a
   fake "all passed" line) scores 0.
5. **Failures are typed, never a silent zero** (unlike open-r1's code reward, which returns
   0.0 on sandbox errors): the sandbox failing to start is ``error``, a deadline is
   ``timeout`` (both unscored), anything the program did is ``incorrect``.

Test cases live in ``Sample.metadata[tests_column]``: a JSON string or a list of
``{"input": stdin, "output": expected_stdout}`` and ``{"call": "f(1, 2)", "expected": value}``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from trustgrpo.errors import ConfigError, SandboxError
from trustgrpo.sandbox import Limits, SandboxPool, SandboxResult
from trustgrpo.verifiers.base import Outcome, Sample, Status, version_of
from trustgrpo.verifiers.params import as_dict, ge, gt, parse_params

# --------------------------------------------------------------------------- canonical form


def canonical(
    value: Any,
    _depth: int = 0,
    _type: Callable[[Any], type] = type,
    _sorted: Callable[..., list[str]] = sorted,
    _int: Callable[[int], str] = int.__repr__,
    _float: Callable[[float], str] = float.__repr__,
    _str: Callable[[str], str] = json.encoder.encode_basestring_ascii,
) -> str:
    """Serialise ``value`` with its exact type; equal strings mean equal values.

    Only exact plain types are supported (None, bool, int, float, str, list, tuple, dict, set,
    frozenset); subclasses and anything else become ``<unsupported T>``, which no expected
    value (decoded from JSON) can produce. Built-ins are bound as defaults when the function
    is defined, so a program that replaces ``builtins.type`` or ``sorted`` does not change it.

    >>> canonical([1, 1.0, True, "a", (None,), {"b": 2, "a": 1}])
    '[1,1.0,true,"a",tuple[null],{"a":1,"b":2}]'
    """
    if _depth > 100:
        raise ValueError("value nested deeper than 100 levels")
    t = _type(value)
    d = _depth + 1
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return _int(value)
    if t is float:
        return _float(value)
    if t is str:
        return _str(value)
    if t is list or t is tuple:
        inner = ",".join([canonical(v, d) for v in value])
        return f"[{inner}]" if t is list else f"tuple[{inner}]"
    if t is dict:
        items = _sorted([canonical(k, d) + ":" + canonical(v, d) for k, v in value.items()])
        return "{" + ",".join(items) + "}"
    if t is set or t is frozenset:
        items = _sorted([canonical(v, d) for v in value])
        return t.__name__ + "{" + ",".join(items) + "}"
    return f"<unsupported {t.__name__}>"


def normalise_output(text: str) -> str:
    """Standard output as compared: trailing spaces of each line and trailing blank lines
    removed, ``\\r\\n`` read as ``\\n``. Everything else must match exactly."""
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).rstrip("\n")


# --------------------------------------------------------------------------- harness
# These functions run inside the sandbox (their source is copied there); they must work on
# any Python >= 3.10 with only the standard library.


def _h_child(case: dict[str, Any], res_w: int) -> int:
    """In the forked child: run the program for one case; return the exit status."""
    import contextlib
    import os
    import sys
    import traceback
    import types

    write = os.write
    canon = canonical
    name = "solution" if "call" in case else "__main__"
    module = types.ModuleType(name)
    module.__file__ = "solution.py"
    sys.modules[name] = module
    sys.argv[:] = ["solution.py"]
    status = 0
    try:
        with open("solution.py", encoding="utf-8") as f:
            source = f.read()
        exec(compile(source, "solution.py", "exec"), module.__dict__)
        if "call" in case:
            value = eval(compile(case["call"], "<test>", "eval"), module.__dict__)
            data = canon(value).encode("utf-8", "backslashreplace")
            while data:
                data = data[write(res_w, data) :]
    except SystemExit as e:
        code = e.code
        status = code if type(code) is int else 0 if code is None else 1
        if type(code) is not int and code is not None:
            print(code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        status = 1
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(BaseException):
            stream.flush()  # type: ignore[union-attr]
    return status & 0xFF


def _h_case(case: dict[str, Any], timeout_s: float, cap: int) -> dict[str, Any]:
    """In the harness: fork a child for one case and supervise it; return what it did."""
    import contextlib
    import os
    import select
    import signal
    import time

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    stdin = os.memfd_create("case-stdin", 0)
    os.write(stdin, case.get("input", "").encode("utf-8"))
    os.lseek(stdin, 0, os.SEEK_SET)
    start = time.monotonic()
    try:
        pid = os.fork()
    except OSError as e:
        for fd in (out_r, out_w, err_r, err_w, res_r, res_w, stdin):
            os.close(fd)
        return {"status": "fork_failed", "exit_code": None, "reason": str(e)}
    if pid == 0:
        exit_code = 70
        try:
            os.setpgid(0, 0)
            os.dup2(stdin, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (out_r, out_w, err_r, err_w, res_r, stdin):
                os.close(fd)
            exit_code = _h_child(case, res_w)
        finally:
            os._exit(exit_code)
    for fd in (out_w, err_w, res_w, stdin):
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    bufs = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
    streams = {out_r, err_r, res_r}
    status, alive, stop = "exited", True, start + timeout_s
    while streams or alive:
        left = stop - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([*streams, *([pidfd] if alive else [])], [], [], left)
        for fd in ready:
            if fd == pidfd:
                alive = False
                stop = min(stop, time.monotonic() + 0.5)
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)  # its descendants must not outlive it
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                streams.discard(fd)
                continue
            bufs[fd] += chunk
            if fd == err_r:
                del bufs[fd][:-4096]
            elif len(bufs[fd]) > cap:
                status, stop = "output_limit", 0.0
    if alive and status == "exited":
        status = "timeout"
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    _, wait_status = os.waitpid(pid, 0)
    for fd in (out_r, err_r, res_r, pidfd):
        os.close(fd)
    code = os.waitstatus_to_exitcode(wait_status)
    if status == "exited" and code < 0:
        status = "timeout" if -code == signal.SIGXCPU else "signal"
    return {
        "status": status,
        "exit_code": code,
        "stdout": bytes(bufs[out_r][:cap]).decode("utf-8", "replace"),
        "stderr": bytes(bufs[err_r]).decode("utf-8", "replace"),
        "result": bytes(bufs[res_r][:cap]).decode("utf-8", "replace") if "call" in case else None,
        "ms": round((time.monotonic() - start) * 1000.0, 1),
    }


def _h_main() -> None:
    """The harness: run every case, then print the results and the nonce read from stdin.

    Its own failures are reported in ``harness_error`` (the grader's ``error``): a program
    cannot forge them, since it only runs in children whose streams are separate pipes and
    which cannot reach this process (no ``/proc``; seccomp refuses ptrace, and without
    seccomp the harness makes itself non-dumpable so that its children cannot attach).
    """
    import json
    import os
    import sys
    import traceback

    results: list[dict[str, object]] = []
    error = None
    try:
        with open("cases.json", encoding="utf-8") as f:
            spec = json.load(f)
        if spec["undumpable"]:
            import ctypes

            if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
        for case in spec["cases"]:
            results.append(_h_case(case, spec["timeout_s"], spec["max_output_bytes"]))
            if results[-1]["status"] == "timeout":
                break
    except Exception:
        error = traceback.format_exc()[-2000:]
    nonce = sys.stdin.read().strip()
    frame = {"cases": results, "harness_error": error}
    data = (json.dumps(frame, ensure_ascii=False) + "\n" + nonce + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


HARNESS_SOURCE = (
    "from __future__ import annotations\n\n"
    # Everything the harness and its children import, loaded before any program runs: a
    # program that writes json.py or select.py into the directory cannot replace them.
    "import contextlib, json, os, select, signal, sys, time, traceback, types\n\n"
    + "\n\n".join(inspect.getsource(f) for f in (canonical, _h_child, _h_case, _h_main))
    + "\n_h_main()\n"
)
"""The program the sandbox runs for every sample (``main.py``)."""
HARNESS_HASH = hashlib.sha256(HARNESS_SOURCE.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- test cases


@dataclass(frozen=True)
class Case:
    """One test: ``input``/``output`` (stdin/stdout) or ``call``/``expected`` (a function)."""

    input: str | None = None
    output: str | None = None
    call: str | None = None
    expected: str | None = None
    """Canonical serialisation of the expected value (``call`` cases)."""


def parse_cases(raw: Any) -> list[Case]:
    """Test cases from a metadata value; ValueError says which case is malformed and how."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"tests: expected JSON, got a parse error: {e}") from None
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValueError(f"tests: expected a list of cases, got {type(raw).__name__}")
    cases = []
    for i, item in enumerate(raw):
        keys = set(item) if isinstance(item, Mapping) else set()
        if keys == {"input", "output"} and all(isinstance(item[k], str) for k in keys):
            cases.append(Case(input=item["input"], output=item["output"]))
        elif keys == {"call", "expected"} and isinstance(item["call"], str):
            try:
                expected = canonical(item["expected"])
            except ValueError as e:
                raise ValueError(f"tests[{i}].expected: {e}") from None
            cases.append(Case(call=item["call"], expected=expected))
        else:
            raise ValueError(
                f"tests[{i}]: expected {{'input': str, 'output': str}} or "
                f"{{'call': str, 'expected': value}}, got {item!r:.200}"
            )
    return cases


_FENCE = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_program(completion: str, mode: str) -> str | None:
    """The program in a completion: the last fenced block tagged python/py or untagged
    (``fenced``), or the whole text (``whole``). None when there is none."""
    if mode == "whole":
        return completion if completion.strip() else None
    blocks = [m.group(2) for m in _FENCE.finditer(completion)]
    return blocks[-1] if blocks and blocks[-1].strip() else None


# --------------------------------------------------------------------------- the verifier


@dataclass(frozen=True)
class CodeParams:
    """Parameters of ``[[verifiers]] type = "code"`` (``[sandbox]`` supplies the defaults of
    ``timeout_s``, ``memory_mb``, ``max_output_bytes``, ``workers`` and
    ``allow_weak_isolation``)."""

    tests_column: str = "tests"
    """Metadata column with the test cases: JSON text or a list of ``{"input", "output"}``
    and ``{"call", "expected"}`` tables."""
    extract: Literal["fenced", "whole"] = "fenced"
    """Where the program is: the last ```python (or untagged) block, or the whole completion.
    A completion without one scores 0 (it is not an abstention)."""
    timeout_s: float = field(default=5.0, metadata=gt(0))
    """Wall-clock limit per test case; a case past it makes the outcome ``timeout``."""
    memory_mb: int = field(default=512, metadata=ge(32))
    """Address-space limit per process."""
    max_output_bytes: int = field(default=1_000_000, metadata=ge(1024))
    """Standard output kept per test case; more fails the case."""
    max_processes: int = field(default=64, metadata=ge(4))
    """Processes and threads a program may have at once."""
    workers: int = field(default=0, metadata=ge(0))
    """Programs run at once; 0 uses the machine's cores."""
    partial_credit: bool = False
    """Score an incorrect program by its fraction of passed cases instead of 0."""
    allow_weak_isolation: bool = False
    """Accept a sandbox with less than process + user + rlimit isolation."""
    backend: Literal["auto", "bwrap", "process"] = "auto"
    """Sandbox backend: bubblewrap when it works (``auto``), or forced."""
    python: str = ""
    """Interpreter for the programs; empty for this one's base interpreter."""

    def problems(self) -> list[str]:
        """Checks beyond the types and bounds."""
        out = []
        if not self.tests_column:
            out.append("tests_column: expected a non-empty string")
        if self.timeout_s > 600:
            out.append(f"timeout_s: expected at most 600 seconds, got {self.timeout_s!r}")
        return out


class CodeVerifier:
    """Scores a completion's program against its test cases, each sample in a fresh sandbox.

    Parameters: :class:`CodeParams`. Raises ConfigError for a bad parameter, when no
    sandbox works, or when the sandbox is weak and ``allow_weak_isolation`` is not set.
    """

    name = "code"

    def __init__(self, **params: Any) -> None:
        p, problems = parse_params(CodeParams, params, "verifiers.code")
        if p is None:
            raise ConfigError(problems)
        self.params = p
        self.limits = Limits(
            timeout_s=p.timeout_s,
            memory_mb=p.memory_mb,
            max_output_bytes=p.max_output_bytes,
            max_processes=p.max_processes,
        )
        try:
            self.pool = SandboxPool(p.workers, backend=p.backend, python=p.python or None)
        except SandboxError as e:
            raise ConfigError([f"verifiers.code: no usable sandbox: {e}"]) from e
        sandbox = self.pool.sandbox
        if sandbox.level == "weak" and not p.allow_weak_isolation:
            self.pool.close()
            layers = ", ".join(sandbox.isolation)
            raise ConfigError(
                [
                    f"verifiers.code: sandbox isolation is weak (layers: {layers}; needs "
                    "process + user + rlimit). Run as root or install bubblewrap, or set "
                    "sandbox.allow_weak_isolation = true to accept it"
                ]
            )
        self.version = version_of(
            self,
            {**as_dict(p), "harness": HARNESS_HASH, "python_version": sandbox.python_version},
        )

    @property
    def isolation(self) -> tuple[str, ...]:
        """The sandbox layers in force for every program this verifier runs."""
        return self.pool.isolation

    def isolation_level(self) -> str:
        """``strong`` | ``standard`` | ``weak``, for the ledger."""
        return self.pool.sandbox.level

    def describe(self) -> dict[str, object]:
        """Sandbox backend, interpreter, layers and level, for the ledger."""
        return self.pool.sandbox.describe()

    def close(self) -> None:
        """Stop the worker threads."""
        self.pool.close()

    def score(self, samples: Sequence[Sample]) -> list[Outcome]:
        """One outcome per sample, in order; all samples' programs run in parallel."""
        jobs = [(time.perf_counter(), self._prepare(sample)) for sample in samples]
        out = []
        for t0, job in jobs:
            if isinstance(job, Outcome):
                out.append(job)
                continue
            cases, nonce, future = job
            try:
                result = future.result()
            except Exception as e:  # the sandbox failed, not the program: never a score
                reason = f"sandbox error: {type(e).__name__}: {e}"
                out.append(self._outcome("error", None, {"reason": reason}, t0))
                continue
            out.append(
                self._judge(cases, nonce, result, time.perf_counter() - result.wall_ms / 1e3)
            )
        return out

    # ----------------------------------------------------------------------- helpers

    def _outcome(
        self, status: Status, score: float | None, details: dict[str, Any], t0: float
    ) -> Outcome:
        """An outcome stamped with the isolation level (recorded in the ledger with it)."""
        details = {**details, "isolation": self.isolation_level()}
        return Outcome(
            score=score,
            status=status,
            verifier=f"{self.name}@{self.version}",
            details=details,
            duration_ms=(time.perf_counter() - t0) * 1000.0,
        )

    def _prepare(self, sample: Sample) -> Outcome | tuple[list[Case], str, Future[SandboxResult]]:
        t0 = time.perf_counter()
        raw = sample.metadata.get(self.params.tests_column)
        if raw is None or raw == "" or raw == []:
            return self._outcome(
                "abstain", None, {"reason": f"no {self.params.tests_column!r}"}, t0
            )
        try:
            cases = parse_cases(raw)
        except ValueError as e:
            return self._outcome("error", None, {"reason": str(e)}, t0)
        program = extract_program(sample.completion, self.params.extract)
        if program is None:
            reason = "no ```python block" if self.params.extract == "fenced" else "empty completion"
            return self._outcome("incorrect", 0.0, {"reason": reason, "passed": 0}, t0)
        nonce = secrets.token_hex(16)
        spec = {
            "cases": [{"input": c.input} if c.call is None else {"call": c.call} for c in cases],
            "timeout_s": self.limits.timeout_s,
            "max_output_bytes": self.limits.max_output_bytes,
            "undumpable": "seccomp" not in self.isolation,
        }
        n = len(cases)
        biggest = max(len((c.input or "").encode()) for c in cases)
        limits = Limits(
            timeout_s=n * (self.limits.timeout_s + 0.6) + 5.0,
            memory_mb=self.limits.memory_mb,
            max_output_bytes=n * (12 * self.limits.max_output_bytes + 32_768) + 65_536,
            max_processes=self.limits.max_processes,
            max_file_mb=max(16, (biggest >> 20) + 2),
        )
        files = {"solution.py": program, "cases.json": json.dumps(spec)}
        future = self.pool.submit(HARNESS_SOURCE, stdin=nonce, files=files, limits=limits)
        return cases, nonce, future

    def _judge(self, cases: list[Case], nonce: str, result: SandboxResult, t0: float) -> Outcome:
        base: dict[str, Any] = {"sandbox": result.status, "total": len(cases)}
        if result.status == "timeout":
            return self._outcome("timeout", None, {**base, "reason": "sandbox deadline"}, t0)
        try:
            frame = _read_frame(result, nonce)
        except SandboxError as e:
            return self._outcome("error", None, {**base, "reason": str(e)}, t0)
        if isinstance(frame, str):
            details = {**base, "passed": 0, "reason": frame, "stderr": result.stderr[-500:]}
            return self._outcome("incorrect", 0.0, details, t0)
        per_case = [_check(c, r) for c, r in zip(cases, frame, strict=False)]
        per_case += [{"passed": False, "status": "not_run"}] * (len(cases) - len(per_case))
        passed = sum(1 for c in per_case if c["passed"])
        details = {**base, "passed": passed, "cases": per_case}
        if passed == len(cases):
            return self._outcome("correct", 1.0, details, t0)
        failed = [
            c for c in per_case if not c["passed"] and c["status"] not in ("timeout", "not_run")
        ]
        if not failed:
            return self._outcome("timeout", None, {**details, "reason": "test case deadline"}, t0)
        score = passed / len(cases) if self.params.partial_credit else 0.0
        return self._outcome("incorrect", score, details, t0)


def _read_frame(result: SandboxResult, nonce: str) -> list[dict[str, Any]] | str:
    """The harness's per-case results, or why the output is not a valid harness report."""
    if result.status != "ok":
        return f"harness did not finish: {result.status} (exit {result.exit_code})"
    body, sep, tail = result.stdout.rpartition("\n" + nonce + "\n")
    if not sep or tail:
        return "completion nonce missing: the harness did not reach the end"
    try:
        frame = json.loads(body)
        cases, error = frame["cases"], frame["harness_error"]
        if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
            raise TypeError("cases")
    except (ValueError, KeyError, TypeError):
        return "harness report malformed"
    if error is not None:
        raise SandboxError(f"code harness failed: {str(error)[-1000:]}")
    return cases


def _short(text: Any) -> str:
    s = str(text)
    return s if len(s) <= 120 else s[:117] + "..."


def _check(case: Case, got: Mapping[str, Any]) -> dict[str, Any]:
    """Judge one case from what the harness saw."""
    status = got.get("status")
    out: dict[str, Any] = {"passed": False, "status": status, "ms": got.get("ms")}
    if status != "exited":
        return {**out, "reason": _short(got.get("reason", status))}
    if got.get("exit_code") != 0:
        err = str(got.get("stderr") or "").strip().splitlines()
        return {**out, "reason": f"exit code {got.get('exit_code')}", "stderr": _short(err[-1:])}
    if case.call is not None:
        value = got.get("result")
        if not value:
            return {**out, "reason": "no return value (exited before the call finished)"}
        if value != case.expected:
            return {**out, "reason": f"got {_short(value)}, expected {_short(case.expected)}"}
    elif normalise_output(str(got.get("stdout", ""))) != normalise_output(case.output or ""):
        return {**out, "reason": f"wrong output: got {_short(got.get('stdout', ''))!r}"}
    return {**out, "passed": True}
