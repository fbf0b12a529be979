"""Reward functions in TRL's shape, accepted as verifiers.

A TRL reward function is ``f(prompts, completions, **columns) -> list[float | None]``
(``trl/trainer/grpo_trainer.py``). A run file names one as ``type = "package.module:function"``;
:class:`FunctionVerifier` wraps it:

* it is called once per batch with ``prompts``, ``completions`` (strings), the reference
  answers under ``reference_kwarg`` (default: the data's answer column, ``answer``), every
  other data column as a list, and the table's extra keys as constant keyword arguments;
  a function without ``**kwargs`` gets only the names it declares. ``async def`` works.
* each item becomes an outcome: ``None`` → ``abstain``; a number ≥ ``correct_at`` →
  ``correct``; another finite number → ``incorrect`` (with that score).
* anything else is an ``error`` outcome, never a score: the function raised (verl PR #7853
  let a raising function earn 1.0), returned a list of the wrong length (rewards shifted
  by one slot, NeMo-RL PR #3635), or returned NaN, inf, a bool, a string or an object whose
  ``__eq__``/``__float__`` could lie (a ``float`` subclass is read through ``float``'s own
  slot, not the object's methods).
* the version hashes the source file of the function's module, its qualified name and the
  parameters, so editing the function (or a helper beside it) is a new version.

>>> def half(prompts, completions, **kw): return [0.5 if c else None for c in completions]
>>> v = FunctionVerifier(half)
>>> [(o.status, o.score) for o in v.score([_s("x"), _s("")])]
[('incorrect', 0.5), ('abstain', None)]
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from trustgrpo.errors import ConfigError
from trustgrpo.verifiers.base import Outcome, Sample, Status, error_outcome, jsonable
from trustgrpo.verifiers.core import version_hash

#: Parameters read by the wrapper itself; every other key goes to the function.
RESERVED = ("correct_at", "reference_kwarg", "gold_template")


def load_function(path: str) -> tuple[Callable[..., Any] | None, str]:
    """Import ``"package.module:function"`` (the attribute may be dotted); or ``None`` and why."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        return None, f'expected "package.module:function", got {path!r}'
    try:
        obj: Any = importlib.import_module(module)
    except Exception as e:
        return None, f"cannot import module {module!r} for {path!r}: {type(e).__name__}: {e}"
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            return None, f"module {module!r} has no attribute {attr!r}"
    if not callable(obj):
        return None, f"{path!r} is not callable (got {type(obj).__name__})"
    return obj, ""


def function_source_sha256(fn: Callable[..., Any]) -> str:
    """SHA-256 of the source file of ``fn``'s module and ``fn``'s qualified name.

    Falls back to the function's own source, then to its bytecode, when there is no file.
    """
    h = hashlib.sha256()
    h.update(f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', repr(fn))}".encode())
    target = inspect.unwrap(fn)
    try:
        path = inspect.getsourcefile(target)
        if path is None:
            raise TypeError
        with open(path, "rb") as f:
            h.update(f.read())
    except (OSError, TypeError):
        try:
            h.update(inspect.getsource(target).encode())
        except (OSError, TypeError):
            code = getattr(target, "__code__", None)
            h.update(repr((code.co_code, code.co_consts) if code else repr(target)).encode())
    return h.hexdigest()


def _as_float(x: Any) -> float | None:
    """The numeric value of ``x`` read without calling its own methods, or None if not a number."""
    if isinstance(x, (bool, np.bool_)):
        return None
    if isinstance(x, float):
        return float.__float__(x)  # a subclass's __float__ is not consulted
    if isinstance(x, int):
        return float(int.__int__(x)) if type(x) is not int else float(x)
    if type(x) in (
        np.float16,
        np.float32,
        np.float64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
    ):
        return float(x)
    return None


class FunctionVerifier:
    """A TRL-shaped reward function as a verifier (see the module docstring)."""

    type = "function"
    shaping = False
    cpu_heavy = False

    def __init__(
        self,
        fn: Callable[..., Any],
        path: str = "",
        *,
        name: str = "",
        correct_at: float = 1.0,
        reference_kwarg: str = "answer",
        gold_template: str = "",
        **kwargs: Any,
    ) -> None:
        self.fn = fn
        self.path = path or f"{fn.__module__}:{fn.__qualname__}"
        self.name = name or self.path
        problems = self.check_params(
            {
                "correct_at": correct_at,
                "reference_kwarg": reference_kwarg,
                "gold_template": gold_template,
                **kwargs,
            },
            self.name,
            fn,
        )
        if problems:
            raise ConfigError(problems)
        self.correct_at = float(correct_at)
        self.reference_kwarg = reference_kwarg
        self.gold_template = gold_template
        self.kwargs = dict(kwargs)
        sig = _signature(fn)
        self._var_kw = sig is None or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
        )
        self._names = set(sig.parameters) if sig is not None else set()
        self._is_async = inspect.iscoroutinefunction(fn)
        self.params = {
            "correct_at": self.correct_at,
            "reference_kwarg": reference_kwarg,
            "gold_template": gold_template,
            **self.kwargs,
        }
        self._code = function_source_sha256(fn)
        self.version = version_hash(self._code, jsonable(self.params), {})

    @staticmethod
    def check_params(
        params: Mapping[str, Any], path: str, fn: Callable[..., Any] | None = None
    ) -> list[str]:
        """Problems with a function verifier's parameters (and whether ``fn`` accepts them)."""
        problems = []
        c = params.get("correct_at", 1.0)
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
            problems.append(f"{path}.correct_at: expected a finite number, got {c!r}")
        for key in ("reference_kwarg", "gold_template"):
            v = params.get(key, "")
            if not isinstance(v, str):
                problems.append(f"{path}.{key}: expected a string, got {v!r}")
        if fn is not None:
            sig = _signature(fn)
            if sig is not None and not any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
            ):
                for key in params:
                    if key not in RESERVED and key not in sig.parameters:
                        problems.append(
                            f"{path}.{key}: the function takes no keyword {key!r} "
                            f"(its parameters: {', '.join(sig.parameters)})"
                        )
        return problems

    @property
    def id(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def describe(self) -> dict[str, Any]:
        """Type, parameters and source hash (for the ledger inventory)."""
        return {
            "type": self.path,
            "params": jsonable(self.params),
            "source_hash": self._code,
            "dependencies": {},
        }

    def _kwargs(self, samples: Sequence[Sample]) -> dict[str, Any]:
        columns: dict[str, list[Any]] = {}
        keys = dict.fromkeys(k for s in samples for k in s.metadata)
        for k in keys:
            columns[k] = [s.metadata.get(k) for s in samples]
        columns[self.reference_kwarg] = [s.reference for s in samples]
        kw = {
            "prompts": [s.prompt for s in samples],
            "completions": [s.completion for s in samples],
            **columns,
            **self.kwargs,
        }
        if self._var_kw:
            return kw
        return {k: v for k, v in kw.items() if k in self._names}

    def _call(self, samples: Sequence[Sample]) -> Any:
        result = self.fn(**self._kwargs(samples))
        if inspect.isawaitable(result):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(_await(result))
            raise RuntimeError("an async reward function cannot be run inside a running event loop")
        return result

    def score(self, samples: Sequence[Sample]) -> list[Outcome]:
        """One outcome per sample, in order (one call of the function for the batch)."""
        n = len(samples)
        if n == 0:
            return []
        t0 = time.perf_counter()
        try:
            values = self._call(samples)
        except Exception as e:
            ms = (time.perf_counter() - t0) * 1000.0 / n
            return [error_outcome(self.id, e, ms) for _ in samples]
        ms = (time.perf_counter() - t0) * 1000.0 / n
        if isinstance(values, np.ndarray):
            values = values.tolist()
        if not isinstance(values, (list, tuple)) or len(values) != n:
            got = (
                f"{len(values)} values"
                if isinstance(values, (list, tuple))
                else type(values).__name__
            )
            msg = f"expected a list of {n} rewards (one per completion, in order), got {got}"
            return [error_outcome(self.id, msg, ms) for _ in samples]
        return [self._outcome(v, ms) for v in values]

    def _outcome(self, value: Any, ms: float) -> Outcome:
        if value is None:
            return Outcome(None, "abstain", self.id, {"reason": "the function returned None"}, ms)
        x = _as_float(value)
        if x is None:
            return error_outcome(
                self.id, f"expected a float or None, got {type(value).__name__} {value!r:.80}", ms
            )
        if not math.isfinite(x):
            return error_outcome(self.id, f"expected a finite reward, got {x!r}", ms)
        status: Status = "correct" if x >= self.correct_at else "incorrect"
        return Outcome(x, status, self.id, {}, ms)

    def gold_completion(self, sample: Sample) -> str | None:
        """``gold_template`` filled with the reference, or the reference itself."""
        if sample.reference is None:
            return None
        if self.gold_template:
            return self.gold_template.format(answer=sample.reference)
        return sample.reference

    def canaries(self, sample: Sample) -> list[tuple[str, str]]:
        """An empty and a blank completion."""
        return [("empty", ""), ("whitespace", " \n")]

    def __repr__(self) -> str:
        return f"FunctionVerifier({self.id})"


async def _await(x: Any) -> Any:
    return await x


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _s(completion: str) -> Sample:
    """A one-off sample (for the examples)."""
    return Sample("p", 0, 0, "", completion, None)


__all__ = ["FunctionVerifier", "function_source_sha256", "load_function"]
