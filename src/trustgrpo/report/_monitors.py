"""The detectors of a run: which ran, with which thresholds, and what they found.

Settings come from the ``[monitors]`` table recorded in ``run_started``; values the run file
did not set are the defaults of the installed :mod:`trustgrpo.monitors` (the report says so
and names both versions). Without that package, the recorded table and the alerts are all
there is to show.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trustgrpo.report._summary import AlertRow, Component

SEVERITIES = ("warn", "review", "pause", "halt")
_OFF_REASONS = {
    "held_out": "no held-out verifier set (monitors.held_out.verifier)",
    "probe_drift": "no probe file set (monitors.probe_drift.file)",
    "group_bias": "no category column set (monitors.group_bias.column)",
    "component_dominance": "needs at least two verifier components",
}


@dataclass
class Setting:
    key: str
    value: Any
    explicit: bool
    """Set in the recorded run file (else the installed default)."""


@dataclass
class DetectorRow:
    name: str
    active: bool | None
    """None when the monitors package is not available to tell."""
    action: str
    """The configured action, capped by ``monitors.max_action``."""
    settings: list[Setting]
    note: str = ""
    alerts: dict[str, int] = field(default_factory=dict)
    """Alerts per severity."""


@dataclass
class MonitorTable:
    """Every detector of the run and the monitors' global settings."""

    enabled: bool
    detectors: list[DetectorRow]
    settings: list[Setting]
    source: str
    """Where unset values come from (or why only recorded ones are shown)."""


def plain(value: Any) -> Any:
    """Tuples as lists, tables as dicts (JSON-ready)."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def show_value(value: Any) -> str:
    """A setting as short text (tables and lists as compact JSON)."""
    value = plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else "(none)"
    if value == "":
        return "(none)"
    return str(value)


def _table(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name)
    return value if isinstance(value, Mapping) else {}


def _cap(action: str, most: str) -> str:
    if action in SEVERITIES and most in SEVERITIES:
        return action if SEVERITIES.index(action) <= SEVERITIES.index(most) else most
    return action


def detector_table(
    raw: Mapping[str, Any], components: Sequence[Component], alerts: Sequence[AlertRow]
) -> MonitorTable:
    """The detectors configured by the recorded ``[monitors]`` table ``raw``."""
    by_detector: dict[str, Counter[str]] = {}
    for a in alerts:
        by_detector.setdefault(a.detector, Counter())[a.severity] += 1
    try:
        table = _from_package(raw, components)
    except ImportError:
        table = _from_record(raw, alerts)
    known = {d.name for d in table.detectors}
    for name in by_detector:
        if name not in known:
            table.detectors.append(
                DetectorRow(name, None, "", [], "not a detector this version knows")
            )
    for d in table.detectors:
        d.alerts = {s: by_detector.get(d.name, Counter())[s] for s in SEVERITIES}
    return table


def _from_package(raw: Mapping[str, Any], components: Sequence[Component]) -> MonitorTable:
    from trustgrpo import __version__
    from trustgrpo.errors import ConfigError
    from trustgrpo.monitors import (
        DETECTOR_CLASSES,
        DETECTORS,
        ComponentInfo,
        Context,
        Live,
        load_config,
    )

    try:
        cfg = load_config(dict(raw))
    except ConfigError as e:  # recorded by another version: show what was recorded
        table = _from_record(raw, [])
        table.source = f"the recorded [monitors] table does not load in this version ({e})"
        return table
    infos = tuple(ComponentInfo(c.name, c.role, c.type, c.id) for c in components)
    ctx = Context(components=infos, live=Live(reward=None, complete=lambda prompts: []))
    classes = {cls.name: cls for cls in DETECTOR_CLASSES}
    rows = []
    for name in DETECTORS:
        dcfg = cfg.detector(name)
        given = _table(raw, name)
        settings = [
            Setting(f.name, getattr(dcfg, f.name), f.name in given)
            for f in dataclasses.fields(dcfg)
            if f.name not in ("enabled", "action")
        ]
        cls = classes.get(name)
        active = bool(cfg.enabled) and cls is not None and bool(cls.active(dcfg, ctx))
        note = ""
        if not cfg.enabled:
            note = "monitors disabled (monitors.enabled = false)"
        elif not dcfg.enabled:
            note = f"disabled (monitors.{name}.enabled = false)"
        elif not active:
            note = _OFF_REASONS.get(name, "not active in this run")
        rows.append(
            DetectorRow(name, active, _cap(str(dcfg.action), str(cfg.max_action)), settings, note)
        )
    top = [
        Setting(f.name, getattr(cfg, f.name), f.name in raw)
        for f in dataclasses.fields(cfg)
        if f.name not in DETECTORS
    ]
    source = (
        f"values not set in the run file are the defaults of the installed trustgrpo {__version__}"
    )
    return MonitorTable(bool(cfg.enabled), rows, top, source)


def _from_record(raw: Mapping[str, Any], alerts: Sequence[AlertRow]) -> MonitorTable:
    """Without the monitors package: the recorded table and the detectors that alerted."""
    rows = []
    names = [k for k, v in raw.items() if isinstance(v, Mapping)]
    names += sorted({a.detector for a in alerts} - set(names))
    for name in names:
        given = _table(raw, name)
        settings = [Setting(k, v, True) for k, v in given.items() if k not in ("enabled", "action")]
        rows.append(DetectorRow(name, None, str(given.get("action", "")), settings))
    top = [Setting(k, v, True) for k, v in raw.items() if not isinstance(v, Mapping)]
    enabled = bool(raw.get("enabled", True))
    source = "the monitors package is not installed: only values recorded in the run file"
    return MonitorTable(enabled, rows, top, source)
