"""Checking a ``[monitors]`` table: every problem at once, each naming its TOML path.

``monitors.length_bias.threshold: expected a number ≥ 0 and ≤ 1, got 2``; unknown keys get
the closest valid key suggested (as :mod:`trustgrpo.config` does for its sections); the
held-out verifier table is checked by the verifier registry, like a ``[[verifiers]]`` table.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from trustgrpo.errors import ConfigError
from trustgrpo.monitors._config import DETECTORS, MonitorsConfig


def _fmt_range(rng: tuple[float | None, ...]) -> str:
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


def _check_value(path: str, tp: Any, meta: Mapping[str, Any], value: Any) -> tuple[Any, str]:
    """``(coerced value, "")`` or ``(None, problem)``."""
    got = f"got {value!r}"
    rng = meta.get("range")
    within = f" {_fmt_range(rng)}" if rng else ""
    origin = typing.get_origin(tp)
    if tp is bool:
        if not isinstance(value, bool):
            return None, f"{path}: expected true or false, {got}"
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"{path}: expected an integer{within}, {got}"
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{path}: expected a number{within}, {got}"
        value = float(value)
        if not math.isfinite(value):
            return None, f"{path}: expected a finite number{within}, {got}"
    elif tp is str:
        if not isinstance(value, str):
            return None, f"{path}: expected a string, {got}"
    elif origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listed = ", ".join(repr(c) for c in choices)
            return None, f"{path}: expected one of {listed}, {got}{hint}"
    elif origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            return None, f"{path}: expected a list of strings, {got}"
        value = tuple(value)
    elif origin is Mapping or tp is Mapping:
        if not isinstance(value, Mapping):
            return None, f"{path}: expected a table, {got}"
        value = dict(value)
    if rng is not None and isinstance(value, (int, float)):
        ge, gt, le, lt = rng
        if (
            (ge is not None and value < ge)
            or (gt is not None and value <= gt)
            or (le is not None and value > le)
            or (lt is not None and value >= lt)
        ):
            kind = "an integer" if tp is int else "a number"
            return None, f"{path}: expected {kind}{within}, {got}"
    return value, ""


def _unknown(path: str, key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" (did you mean {path}.{close[0]}?)" if close else ""
    return f"{path}.{key}: unknown key{hint}"


def _build(cls: type, path: str, table: Any, problems: list[str]) -> Any:
    if not isinstance(table, Mapping):
        problems.append(f"{path}: expected a table, got {table!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            problems.append(_unknown(path, str(key), list(fields)))
            continue
        if key in DETECTORS and cls is MonitorsConfig:
            kwargs[key] = _build(DETECTORS[key], f"{path}.{key}", value, problems)
            continue
        checked, problem = _check_value(f"{path}.{key}", hints[key], fields[key].metadata, value)
        if problem:
            problems.append(problem)
        else:
            kwargs[key] = checked
    return cls(**kwargs)


def _cross_checks(cfg: MonitorsConfig, problems: list[str]) -> None:
    spec = cfg.held_out.verifier
    if spec:
        if "type" not in spec:
            problems.append(
                'monitors.held_out.verifier.type: missing (the held-out verifier, e.g. "exact")'
            )
        else:
            from trustgrpo.verifiers import check_specs

            for p in check_specs([spec]):
                problems.append(p.replace("verifiers[0]", "monitors.held_out.verifier", 1))
        if spec.get("role", "reward") == "shaping":
            problems.append(
                "monitors.held_out.verifier.role: expected a verifier that judges correctness, "
                "got 'shaping'"
            )


def parse_config(raw: Mapping[str, Any] | None) -> tuple[MonitorsConfig, list[str]]:
    """The settings in a ``[monitors]`` table, and every problem found in it."""
    problems: list[str] = []
    cfg = _build(MonitorsConfig, "monitors", raw or {}, problems)
    if not problems:
        _cross_checks(cfg, problems)
    return cfg, problems


def check_config(raw: Mapping[str, Any]) -> list[str]:
    """Every problem with a ``[monitors]`` table, each naming its TOML path."""
    return parse_config(raw)[1]


def load_config(raw: Mapping[str, Any] | None) -> MonitorsConfig:
    """The settings in a ``[monitors]`` table; :class:`ConfigError` listing every problem."""
    cfg, problems = parse_config(raw)
    if problems:
        raise ConfigError(problems)
    return cfg


def resolve_path(value: str, source: str, path: str) -> Path:
    """A file named in ``[monitors]``: absolute, else next to the run file, else relative to
    the working directory; :class:`ConfigError` naming ``path`` when it is in none."""
    p = Path(value)
    candidates = [p] if p.is_absolute() else []
    if not p.is_absolute():
        if source:
            candidates.append(Path(source).parent / p)
        candidates.append(p)
    for c in candidates:
        if c.is_file():
            return c
    looked = " or ".join(str(c) for c in dict.fromkeys(candidates))
    raise ConfigError([f"{path}: file not found: {value} (looked for {looked})"])
