"""How figures appear in the report, each tagged with where it comes from.

Every figure is rendered as ``<span data-fact="KEY" data-kind="KIND" data-value="V">text</span>``:
``KEY`` names the figure (``train.samples``, ``step.12.reward_mean``...), ``V`` is its exact
value (JSON), ``text`` its rounded display. Tests parse these spans and compare each value with
the ledger, and each text with its value; readers see only the text. All text is escaped.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any

from markupsafe import Markup, escape

DIGITS = 4
"""Significant digits shown for non-integer figures."""


def show_number(value: float | int | None, digits: int = DIGITS) -> str:
    """``1,234`` for integers; 4 significant digits otherwise (grouped from 10,000 on)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def show_time(ts_ms: int | None) -> str:
    """A ledger timestamp (Unix ms) as UTC: ``2026-01-31 14:05:09 UTC``."""
    if ts_ms is None:
        return "—"
    t = _dt.datetime.fromtimestamp(ts_ms / 1000, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def show_duration(seconds: float | None) -> str:
    """``2 h 05 min``, ``3 min 07 s``, ``4.2 s``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.3g} s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _value_json(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def fact(key: str, value: Any, kind: str = "", text: str | None = None) -> Markup:
    """One tagged figure (see the module docstring). ``kind``: ``int``, ``float``, ``pct``
    (a share shown in percent), ``time`` (Unix ms), ``dur`` (seconds), ``bool`` or ``text``;
    by default from the value's type."""
    if not kind:
        if isinstance(value, bool):
            kind = "bool"
        elif isinstance(value, int):
            kind = "int"
        elif isinstance(value, float) or value is None:
            kind = "float"
        else:
            kind = "text"
    if text is None:
        if kind == "pct":
            text = "—" if value is None else f"{100 * value:.1f}%"
        elif kind == "pp":
            text = "—" if value is None else f"{100 * value:+.1f} pts"
        elif kind == "id":
            text = "—" if value is None else str(value)
        elif kind == "time":
            text = show_time(value)
        elif kind == "dur":
            text = show_duration(value)
        elif kind == "text":
            text = "—" if value is None or value == "" else str(value)
        else:
            text = show_number(value)
    return Markup('<span class="f" data-fact="{}" data-kind="{}" data-value="{}">{}</span>').format(
        key, kind, _value_json(value), text
    )


def excerpt_html(text: str | None) -> Markup:
    """Untrusted text (a completion, a reviewer's reason) as escaped, visible characters."""
    if text is None:
        return Markup('<span class="muted">—</span>')
    if text == "":
        return Markup('<span class="muted">(empty)</span>')
    return Markup('<q class="untrusted">{}</q>').format(text)


def flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``[("grpo.beta", 0.0), ...]``: nested tables as dotted keys, lists kept whole."""
    out: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for k in sorted(data):
            out.extend(flatten(data[k], f"{prefix}.{k}" if prefix else str(k)))
    else:
        out.append((prefix, data))
    return out


def show_setting(value: Any) -> str:
    """A configuration value as short text (JSON for lists and tables)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) or value is None:
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


__all__ = [
    "escape",
    "excerpt_html",
    "fact",
    "flatten",
    "show_duration",
    "show_number",
    "show_setting",
    "show_time",
]
