"""Checking a verifier's parameters: one frozen dataclass per verifier type.

A verifier's parameters are the keys of its ``[[verifiers]]`` table other than ``type``,
``weight``, ``role`` and ``name``. Each built-in declares them as a frozen dataclass whose
field docstrings are the documentation (read by :func:`trustgrpo.config.field_docs`), and
:func:`parse_params` checks a table against it, reporting every problem with its TOML path::

    verifiers[1].tolerance: expected a number ≥ 0, got -1
    verifiers[0].extarct: unknown parameter (did you mean verifiers[0].extract?)

Range limits live in field metadata (``field(default=0.0, metadata=ge(0))``); checks that
involve several fields, or compile something, go in the dataclass's ``problems()`` method.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

P = TypeVar("P")


def ge(value: float) -> dict[str, Any]:
    """Field metadata: the value must be ≥ ``value``."""
    return {"ge": value}


def gt(value: float) -> dict[str, Any]:
    """Field metadata: the value must be > ``value``."""
    return {"gt": value}


def describe(tp: Any) -> str:
    """A short human name for a parameter type, as used in error messages.

    >>> describe(float), describe(Literal["a", "b"]), describe(list[str])
    ('a number', "one of 'a', 'b'", 'a list of strings')
    """
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(describe(a) for a in args)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple) or tp in (list, tuple):
        inner = typing.get_args(tp)
        if inner and inner[0] is str:
            return "a list of strings"
        return "a list"
    if origin is Mapping or tp is dict or origin is dict:
        return "a table"
    return getattr(tp, "__name__", str(tp))


def _bound(meta: Mapping[str, Any]) -> str:
    parts = []
    if "ge" in meta:
        parts.append(f"≥ {meta['ge']:g}")
    if "gt" in meta:
        parts.append(f"> {meta['gt']:g}")
    return " " + " and ".join(parts) if parts else ""


class _Bad(Exception):
    """A value that does not fit its declared type."""


def _coerce(tp: Any, value: Any) -> Any:
    """``value`` converted to ``tp`` (ints to floats, lists to tuples), or raise ``_Bad``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value)
            except _Bad:
                continue
        raise _Bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Bad
            return float(value)
        raise _Bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Bad
    if origin is Literal:
        if value in typing.get_args(tp) and type(value) is str:
            return value
        raise _Bad
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Bad
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(inner, v) for v in value)
    if origin is Mapping or origin is dict:
        if not isinstance(value, Mapping):
            raise _Bad
        return _freeze(value)
    raise TypeError(f"unsupported parameter type {tp!r}")  # a programming error


def _freeze(value: Any) -> Any:
    """Plain data from TOML with dicts kept as dicts and lists as lists (JSON-shaped)."""
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_freeze(v) for v in value]
    return value


def parse_params(cls: type[P], raw: Mapping[str, Any], path: str) -> tuple[P | None, list[str]]:
    """Check ``raw`` against the parameter dataclass ``cls``.

    Returns the instance (``None`` if anything is wrong) and the list of problems, each
    prefixed with ``path`` (e.g. ``verifiers[0]``).
    """
    problems: list[str] = []
    hints = typing.get_type_hints(cls, include_extras=False)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        f = fields.get(key)
        if f is None:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {path}.{close[0]}?)" if close else ""
            valid = ", ".join(fields) or "none"
            problems.append(f"{path}.{key}: unknown parameter{hint}; valid: {valid}")
            continue
        tp = hints[key]
        try:
            v = _coerce(tp, value)
        except _Bad:
            expected = describe(tp)
            if typing.get_origin(tp) is Literal:
                close = difflib.get_close_matches(
                    str(value), [str(a) for a in typing.get_args(tp)], n=1
                )
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{path}.{key}: expected {expected}, got {value!r}{hint}")
            else:
                problems.append(
                    f"{path}.{key}: expected {expected}{_bound(f.metadata)}, got {value!r}"
                )
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            meta = f.metadata
            if ("ge" in meta and v < meta["ge"]) or ("gt" in meta and v <= meta["gt"]):
                kind = "an integer" if isinstance(v, int) else "a number"
                problems.append(f"{path}.{key}: expected {kind}{_bound(meta)}, got {value!r}")
                continue
        kwargs[key] = v
    for name, f in fields.items():
        if (
            name not in raw
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            problems.append(f"{path}.{name}: missing (expected {describe(hints[name])})")
    if problems:
        return None, problems
    obj = cls(**kwargs)
    check = getattr(obj, "problems", None)
    if check is not None:
        problems.extend(f"{path}.{p}" for p in check())
    return (None if problems else obj), problems


def as_dict(params: Any) -> dict[str, Any]:
    """A parameter dataclass as JSON-shaped data (tuples become lists)."""
    return {f.name: _freeze(getattr(params, f.name)) for f in dataclasses.fields(params)}


__all__ = ["as_dict", "describe", "ge", "gt", "parse_params"]
