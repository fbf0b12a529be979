"""Verifier types by name, run-file checks, and building verifiers from ``[[verifiers]]``.

========================  ==================================================================
type                      verifier
========================  ==================================================================
``exact``                 :class:`~.exact.ExactVerifier` (normalised text equality)
``numeric``               :class:`~.numeric.NumericVerifier` (number within a tolerance)
``math``                  :class:`~.math_answer.MathVerifier` (``math-verify`` equivalence)
``regex``                 :class:`~.regex.RegexVerifier` (a pattern; partial credit)
``format``                ``regex`` with the ``<think>…</think><answer>…</answer>`` preset
``json_schema``           :class:`~.json_schema.JsonSchemaVerifier` (parses and validates)
``overlong`` / ``length``  :class:`~.length.LengthPenalty` (DAPO soft overlong; shaping only)
``code``                  ``trustgrpo.verifiers.code.CodeVerifier`` (programs vs unit tests
                          in the sandbox; ``[sandbox]`` supplies its limits)
``env``                   :class:`~.env.EnvVerifier` (a Gymnasium environment re-simulates an
                          episode from its seed and actions; added by ``[env]`` runs)
``pkg.module:function``   a TRL-shaped reward function (:class:`~.function.FunctionVerifier`)
========================  ==================================================================
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from trustgrpo.errors import ConfigError
from trustgrpo.verifiers.compose import Component, Role
from trustgrpo.verifiers.core import BaseVerifier
from trustgrpo.verifiers.env import EnvVerifier
from trustgrpo.verifiers.exact import ExactVerifier
from trustgrpo.verifiers.function import FunctionVerifier, load_function
from trustgrpo.verifiers.json_schema import JsonSchemaVerifier
from trustgrpo.verifiers.length import LengthPenalty
from trustgrpo.verifiers.math_answer import MathVerifier
from trustgrpo.verifiers.numeric import NumericVerifier
from trustgrpo.verifiers.regex import FormatVerifier, RegexVerifier

#: Built-in types. ``code`` is added lazily (another module, with the sandbox).
TYPES: dict[str, type[BaseVerifier[Any]]] = {
    "exact": ExactVerifier,
    "numeric": NumericVerifier,
    "math": MathVerifier,
    "regex": RegexVerifier,
    "format": FormatVerifier,
    "json_schema": JsonSchemaVerifier,
    "overlong": LengthPenalty,
    "length": LengthPenalty,
    "env": EnvVerifier,
}
CODE_TYPE = "code"
_SPEC_KEYS = ("type", "weight", "role", "name")
_ROLES = ("reward", "gate", "shaping")
#: ``[sandbox]`` fields passed to the code verifier as parameter defaults.
SANDBOX_DEFAULTS = ("timeout_s", "memory_mb", "workers", "allow_weak_isolation", "max_output_bytes")


def register(name: str, cls: type[BaseVerifier[Any]]) -> None:
    """Register a verifier type under ``name`` (for plug-ins; built-ins are listed above)."""
    if name in TYPES or name == CODE_TYPE:
        raise ValueError(f"verifier type {name!r} is already registered")
    TYPES[name] = cls


def known_types() -> list[str]:
    """Every registered type name."""
    return sorted([*TYPES, CODE_TYPE])


def _load_code_class() -> Any:
    mod = importlib.import_module("trustgrpo.verifiers.code")
    return mod.CodeVerifier


def _setting(cfg: Any, section: str, key: str, default: Any) -> Any:
    """``cfg.section.key`` from a Config, or ``cfg[section][key]`` from a recorded config dict."""
    if isinstance(cfg, Mapping):
        table = cfg.get(section)
        return table.get(key, default) if isinstance(table, Mapping) else default
    return getattr(getattr(cfg, section, None), key, default)


def _code_params(params: Mapping[str, Any], cfg: Any) -> dict[str, Any]:
    from trustgrpo.config import SandboxConfig

    defaults = SandboxConfig()
    out = {k: _setting(cfg, "sandbox", k, getattr(defaults, k)) for k in SANDBOX_DEFAULTS}
    out.update(params)
    return out


def _normalise_spec(spec: Any) -> tuple[str, float, str, str, dict[str, Any]]:
    """``(type, weight, role, name, params)`` from a VerifierSpec or a mapping.

    A mapping is either ``{"type", "weight", "role", "name", "params": {...}}`` or the flat
    ``[[verifiers]]`` table (every other key a parameter), as ``Config.to_dict()`` writes it.
    """
    if isinstance(spec, Mapping):
        raw = dict(spec)
        nested = raw.get("params")
        if isinstance(nested, Mapping) and set(raw) <= {*_SPEC_KEYS, "params"}:
            params = dict(nested)
        else:
            params = {k: v for k, v in raw.items() if k not in _SPEC_KEYS}
        return (
            raw.get("type", ""),
            raw.get("weight", 1.0),
            raw.get("role", "reward"),
            raw.get("name", "") or "",
            params,
        )
    return spec.type, spec.weight, spec.role, spec.name or "", dict(spec.params)


def _spec_problems(vtype: Any, weight: Any, role: Any, name: Any, path: str) -> list[str]:
    problems = []
    if not isinstance(vtype, str) or not vtype:
        problems.append(f'{path}.type: expected a verifier type (e.g. "numeric"), got {vtype!r}')
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or weight != weight
        or (abs(weight) == float("inf"))
    ):
        problems.append(f"{path}.weight: expected a finite number, got {weight!r}")
    if role not in _ROLES:
        problems.append(f"{path}.role: expected one of 'reward', 'gate', 'shaping', got {role!r}")
    if not isinstance(name, str):
        problems.append(f"{path}.name: expected a string, got {name!r}")
    return problems


def _resolve(
    vtype: str, name: str, params: Mapping[str, Any], role: str, cfg: Any, path: str
) -> tuple[Callable[[], Any] | None, list[str]]:
    """A builder for the verifier, or the problems that prevent building it."""
    if ":" in vtype:
        fn, problem = load_function(vtype)
        if fn is None:
            return None, [f"{path}.type: {problem}"]
        reference_kwarg = _setting(cfg, "data", "answer_column", "") or "answer"
        full = {"reference_kwarg": reference_kwarg, **params}
        problems = FunctionVerifier.check_params(full, path, fn)
        if problems:
            return None, problems
        return (lambda: FunctionVerifier(fn, vtype, name=name or vtype, **full)), []
    if vtype == CODE_TYPE:
        try:
            cls = _load_code_class()
        except ImportError as e:
            return None, [
                f"{path}.type: 'code' needs trustgrpo.verifiers.code (the sandboxed code "
                f"verifier), which cannot be imported here: {type(e).__name__}: {e}"
            ]
        full = _code_params(params, cfg)

        def make_code() -> Any:
            try:
                v = cls(**full)
            except ConfigError as e:
                raise ConfigError([_repath(p, path) for p in e.problems]) from None
            if name:
                v.name = name
            return v

        return make_code, []
    cls = TYPES.get(vtype)
    if cls is None:
        close = difflib.get_close_matches(vtype, known_types(), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return None, [
            f"{path}.type: unknown verifier type {vtype!r}{hint}; expected one of "
            f'{", ".join(known_types())}, or "package.module:function"'
        ]
    if cls.shaping and role != "shaping":
        return None, [
            f"{path}.role: {vtype!r} is reward shaping, not verification; expected role = "
            f'"shaping", got {role!r}'
        ]
    problems = cls.check_params(params, path)
    if problems:
        return None, problems
    return (lambda: cls(name=name or vtype, **params)), []


def _repath(problem: str, path: str) -> str:
    """``verifiers.code.x: ...`` (the code verifier's own paths) as ``verifiers[i].x: ...``."""
    for prefix in ("verifiers.code.", "verifiers.code"):
        if problem.startswith(prefix):
            return path + ("." if prefix.endswith(".") else "") + problem[len(prefix) :]
    return problem


def _try_build(make: Callable[[], Any]) -> list[str]:
    """Build a verifier whose parameters can only be checked by building it, then release it."""
    try:
        v = make()
    except ConfigError as e:
        return list(e.problems)
    close = getattr(v, "close", None)
    if callable(close):
        close()
    return []


def check_specs(specs: Sequence[Any], cfg: Any = None) -> list[str]:
    """Every problem with the run file's ``[[verifiers]]`` tables, each with its TOML path.

    Unknown types (with the closest name suggested), parameters of the wrong type or out of
    range, ``package.module:function`` types that do not import, shaping types outside the
    ``shaping`` role, repeated names, and a reward with nothing but shaping.
    """
    problems: list[str] = []
    seen: dict[str, int] = {}
    roles = []
    for i, spec in enumerate(specs):
        path = f"verifiers[{i}]"
        vtype, weight, role, name, params = _normalise_spec(spec)
        found = _spec_problems(vtype, weight, role, name, path)
        if not found:
            make, found = _resolve(vtype, name, params, role, cfg, path)
            if make is not None and vtype == CODE_TYPE:
                found = _try_build(make)
        problems.extend(found)
        display = (name or vtype) if isinstance(name, str) and isinstance(vtype, str) else ""
        if display in seen:
            problems.append(
                f"{path}.name: {display!r} is already the name of verifiers[{seen[display]}]; "
                "give each [[verifiers]] table a distinct name"
            )
        seen.setdefault(display, i)
        roles.append(role)
    if specs and all(r == "shaping" for r in roles):
        problems.append(
            "verifiers: expected at least one verifier with role 'reward' or 'gate' "
            "(shaping alone verifies nothing)"
        )
    return problems


def build_component(spec: Any, cfg: Any = None, path: str = "verifier") -> Component:
    """A :class:`Component` (verifier, weight, role) from one spec; ``ConfigError`` if wrong."""
    vtype, weight, role, name, params = _normalise_spec(spec)
    problems = _spec_problems(vtype, weight, role, name, path)
    if problems:
        raise ConfigError(problems)
    make, problems = _resolve(vtype, name, params, role, cfg, path)
    if make is None:
        raise ConfigError(problems)
    if vtype == CODE_TYPE:  # record the limits it really runs with
        params = _code_params(params, cfg)
    return Component(make(), float(weight), cast(Role, role), vtype, params)


def build_verifier(spec: Any, cfg: Any = None) -> Any:
    """The verifier described by a ``VerifierSpec`` or a mapping (see ``_normalise_spec``).

    ``cfg`` (a :class:`~trustgrpo.config.Config`, or the config dict a ledger recorded)
    supplies defaults from other sections: ``[sandbox]`` limits for ``code``, and
    ``data.answer_column`` as the keyword under which a reward function receives the
    reference. Pass the run's config when rebuilding its verifiers (``audit replay``): without
    it those defaults are the built-in ones, and a verifier that depended on them comes out
    with a different version.
    """
    return build_component(spec, cfg).verifier


__all__ = [
    "TYPES",
    "build_component",
    "build_verifier",
    "check_specs",
    "known_types",
    "register",
]
