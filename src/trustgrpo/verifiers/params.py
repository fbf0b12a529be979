"""Checking a verifier's parameters: one frozen dataclass per verifier type.

A verifier's parameters are the keys of its ``[[verifiers]]`` table other than ``type``,
``weight``, ``role`` and ``name``. Each built-in declares them as a frozen dataclass whose
field docstrings are the documentation (read by :func:`trustgrpo.config.field_docs`), and
:func:`parse_params` checks a table against it (with :mod:`trustgrpo._tables`, as the run
file's sections are checked), reporting every problem with its TOML path::

    verifiers[1].tolerance: expected a number ≥ 0, got -1
    verifiers[0].extarct: unknown parameter (did you mean verifiers[0].extract?)

Range limits live in field metadata (``field(default=0.0, metadata=ge(0))``); checks that
involve several fields, or compile something, go in the dataclass's ``problems()`` method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from trustgrpo._tables import Dialect, build_dataclass, describe, field_range, json_shaped

P = TypeVar("P")

_PARAMS = Dialect(noun="parameter", list_valid=True, non_finite="a number", json_tables=True)
"""How parameter problems read (``unknown parameter ...; valid: ...``), and tables are copied
deeply, as JSON-shaped data."""


def ge(value: float) -> dict[str, Any]:
    """Field metadata: the value must be ≥ ``value``."""
    return field_range(ge=value)


def gt(value: float) -> dict[str, Any]:
    """Field metadata: the value must be > ``value``."""
    return field_range(gt=value)


def parse_params(cls: type[P], raw: Mapping[str, Any], path: str) -> tuple[P | None, list[str]]:
    """Check ``raw`` against the parameter dataclass ``cls``.

    Returns the instance (``None`` if anything is wrong) and the list of problems, each
    prefixed with ``path`` (e.g. ``verifiers[0]``).

    >>> from trustgrpo.verifiers.numeric import NumericParams
    >>> params, problems = parse_params(NumericParams, {"tolerance": -1, "extarct": 1}, "v[0]")
    >>> for problem in problems:
    ...     print(problem)
    v[0].tolerance: expected a number ≥ 0, got -1
    v[0].extarct: unknown parameter (did you mean v[0].extract?); valid: extract, tolerance, ...
    """
    problems: list[str] = []
    obj = build_dataclass(cls, path, raw, problems, _PARAMS)
    if obj is None or problems:
        return None, problems
    check = getattr(obj, "problems", None)
    if check is not None:
        problems.extend(f"{path}.{p}" for p in check())
    return (None if problems else obj), problems


def as_dict(params: Any) -> dict[str, Any]:
    """A parameter dataclass as JSON-shaped data (tuples become lists)."""
    return {f.name: json_shaped(getattr(params, f.name)) for f in dataclasses.fields(params)}


__all__ = ["as_dict", "describe", "ge", "gt", "parse_params"]
