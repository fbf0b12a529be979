"""Checking a ``[monitors]`` table: every problem at once, each naming its TOML path.

``monitors.length_bias.threshold: expected a number ≥ 0 and ≤ 1, got 2``; unknown keys get
the closest valid key suggested (:mod:`trustgrpo._tables`, shared with :mod:`trustgrpo.config`);
the held-out verifier table is checked by the verifier registry, like a ``[[verifiers]]`` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trustgrpo._tables import build_dataclass
from trustgrpo.errors import ConfigError
from trustgrpo.monitors._config import MonitorsConfig


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
    cfg = build_dataclass(MonitorsConfig, "monitors", raw or {}, problems) or MonitorsConfig()
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
