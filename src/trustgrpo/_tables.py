"""Checking a TOML table against a frozen dataclass, reporting every problem with its path.

The run file's sections (:mod:`trustgrpo.config`), the ``[monitors]`` table
(:mod:`trustgrpo.monitors`) and each verifier's parameters (:mod:`trustgrpo.verifiers.params`)
are frozen dataclasses, checked here:

* the type hints say what a value may be: ``bool`` (never an integer), ``int``, ``float``
  (finite; an integer is taken), ``str``, ``Literal[...]``, ``tuple[X, ...]`` (a list),
  ``Mapping`` (a table), a union of these, or another dataclass (a sub-table);
* ``field(metadata=field_range(ge=0, le=1))`` limits a number, or every item of a list;
* an unknown key gets the closest valid key suggested (:mod:`difflib`);
* every problem names its TOML path: ``grpo.num_generations: expected an integer ≥ 2, got 1``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")
Range = tuple[float | None, float | None, float | None, float | None]


def field_range(
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> dict[str, Any]:
    """Field metadata: the limits of a number, or of every item of a list of numbers.

    >>> field_range(ge=0, le=1)
    {'range': (0, None, 1, None)}
    """
    return {"range": (ge, gt, le, lt)}


@dataclass(frozen=True)
class Dialect:
    """Where the three kinds of table word problems differently: they grew apart before they
    shared this module, and each kept its messages. A new kind of table uses the default."""

    noun: str = "key"
    """What an unknown key is called: ``x.y: unknown key``."""
    list_valid: bool = False
    """Follow an unknown key with every valid one: ``; valid: a, b``."""
    float_range: bool = True
    """Name a float's range when the value is not a number at all."""
    non_finite: str = "a finite number"
    """What is expected instead of ``inf`` or ``nan`` (the range follows)."""
    json_tables: bool = False
    """Copy a table deeply as JSON-shaped data (:func:`json_shaped`), not as one ``dict``."""


_DEFAULT = Dialect()


def format_range(rng: Range) -> str:
    """``(0, None, 1, None)`` as ``≥ 0 and ≤ 1``."""
    ge, gt, le, lt = rng
    parts = []
    if ge is not None:
        parts.append(f"≥ {ge:g}")
    if gt is not None:
        parts.append(f"> {gt:g}")
    if le is not None:
        parts.append(f"≤ {le:g}")
    if lt is not None:
        parts.append(f"< {lt:g}")
    return " and ".join(parts)


def _in_range(rng: Range, value: float) -> bool:
    ge, gt, le, lt = rng
    return not (
        (ge is not None and value < ge)
        or (gt is not None and value <= gt)
        or (le is not None and value > le)
        or (lt is not None and value >= lt)
    )


def describe(tp: Any) -> str:
    """A short human name for a field type, as used in problems.

    >>> describe(float), describe(Literal["a", "b"]), describe(tuple[str, ...])
    ('a number', "one of 'a', 'b'", 'a list of strings')
    >>> describe(Literal["mask"] | float)
    '"mask" or a number'
    """
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp) if a is not type(None))
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        choices = typing.get_args(tp)
        if len(choices) == 1:
            return f'"{choices[0]}"'
        return "one of " + ", ".join(repr(a) for a in choices)
    if origin in (list, tuple) or tp in (list, tuple):
        inner = typing.get_args(tp)
        if inner and inner[0] is str:
            return "a list of strings"
        if inner and inner[0] is int:
            return "a list of integers"
        return "a list"
    if origin in (Mapping, dict) or tp in (Mapping, dict):
        return "a table"
    return getattr(tp, "__name__", str(tp))


def json_shaped(value: Any) -> Any:
    """Plain data from TOML with tables as dicts (string keys) and lists as lists."""
    if isinstance(value, Mapping):
        return {str(k): json_shaped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_shaped(v) for v in value]
    return value


class _Invalid(Exception):
    """A value that does not fit its type."""


class _NonFinite(_Invalid):
    """A number, but ``inf`` or ``nan``."""


def _coerce(tp: Any, value: Any, rng: Range | None, dialect: Dialect) -> Any:
    """``value`` as ``tp`` (integers to floats, lists to tuples), or raise ``_Invalid``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            try:
                return _coerce(a, value, rng, dialect)
            except _Invalid:
                continue
        raise _Invalid
    if tp is type(None):
        raise _Invalid
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid
        if not math.isfinite(value):
            raise _NonFinite
        return float(value)
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is Literal:
        ok = any(value == c and type(value) is type(c) for c in typing.get_args(tp))
    elif origin is tuple:  # tuple[X, ...]: a list, each item an X within the range
        if not isinstance(value, (list, tuple)):
            raise _Invalid
        try:
            items = tuple(_coerce(typing.get_args(tp)[0], v, None, dialect) for v in value)
        except _Invalid:
            raise _Invalid from None  # the list is wrong, not a number in it
        if rng and not all(_in_range(rng, v) for v in items):
            raise _Invalid
        return items
    elif origin in (Mapping, dict) or tp in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise _Invalid
        return json_shaped(value) if dialect.json_tables else dict(value)
    else:
        raise TypeError(f"unsupported field type {tp!r}")  # a programming error
    if not ok:
        raise _Invalid
    return value


_INVALID: Any = object()


def _check_value(
    path: str,
    tp: Any,
    meta: Mapping[str, Any],
    value: Any,
    problems: list[str],
    dialect: Dialect = _DEFAULT,
) -> Any:
    """``value`` checked against the type ``tp`` and the range in ``meta``, and converted
    (integers to floats, lists to tuples, tables to dicts, sub-tables to their dataclass);
    when it does not fit, a problem naming ``path`` is appended and ``_INVALID`` returned."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        built = build_dataclass(tp, path, value, problems, dialect)
        return _INVALID if built is None else built
    rng: Range | None = meta.get("range")
    within = f" {format_range(rng)}" if rng else ""
    got = f"got {value!r}"
    if tp is float and not dialect.float_range:
        within = ""
    try:
        checked = _coerce(tp, value, rng, dialect)
    except _NonFinite:
        problems.append(f"{path}: expected {dialect.non_finite}{within}, {got}")
        return _INVALID
    except _Invalid:
        hint = ""
        if typing.get_origin(tp) is Literal:
            choices = [str(c) for c in typing.get_args(tp)]
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{path}: expected {describe(tp)}{within}, {got}{hint}")
        return _INVALID
    number = isinstance(checked, (int, float)) and not isinstance(checked, bool)
    if rng and number and not _in_range(rng, checked):
        kind = "an integer" if isinstance(checked, int) else "a number"
        problems.append(f"{path}: expected {kind} {format_range(rng)}, {got}")
        return _INVALID
    return checked


def unknown_key(path: str, key: str, valid: Iterable[str], noun: str = "key") -> str:
    """The problem with ``key`` in the table at ``path`` (``""``: the top level), suggesting
    the closest valid key.

    >>> unknown_key("grpo", "lerning_rate", ["learning_rate", "beta"])
    'grpo.lerning_rate: unknown key (did you mean grpo.learning_rate?)'
    """
    where = f"{path}." if path else ""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    hint = f" (did you mean {where}{close[0]}?)" if close else ""
    return f"{where}{key}: unknown {noun}{hint}"


def build_dataclass(
    cls: type[T],
    path: str,
    table: Any,
    problems: list[str],
    dialect: Dialect = _DEFAULT,
) -> T | None:
    """``cls`` built from the TOML ``table`` at ``path``, every problem appended to
    ``problems``: a key that is unknown or whose value does not fit keeps its default.
    ``None`` only when a field without a default has no valid value."""
    if not isinstance(table, Mapping):
        problems.append(f"{path}: expected a table, got {table!r}")
        table = {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            problem = unknown_key(path, str(key), fields, dialect.noun)
            if dialect.list_valid:
                problem += f"; valid: {', '.join(fields) or 'none'}"
            problems.append(problem)
            continue
        f = fields[key]
        checked = _check_value(f"{path}.{key}", hints[key], f.metadata, value, problems, dialect)
        if checked is not _INVALID:
            kwargs[key] = checked
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in required:
        if name not in table:
            problems.append(f"{path}.{name}: missing (expected {describe(hints[name])})")
    if any(name not in kwargs for name in required):
        return None
    return cls(**kwargs)


__all__ = [
    "Dialect",
    "build_dataclass",
    "describe",
    "field_range",
    "format_range",
    "json_shaped",
    "unknown_key",
]
