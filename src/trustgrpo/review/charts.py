"""Geometry of the dashboard's small SVG charts (the template draws them; no JavaScript).

Only numbers are computed here; every label (a verifier id, an alert message) goes to the
template as data, where Jinja2 escapes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
"""Okabe-Ito colours, distinguishable with colour-blindness."""
SEVERITY_COLOURS = {"warn": "#E69F00", "review": "#0072B2", "pause": "#CC79A7", "halt": "#D55E00"}

WIDTH, HEIGHT = 460, 170
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 10, 24


@dataclass
class Series:
    name: str
    colour: str
    segments: list[str]
    """SVG ``points`` strings, one per run of values without gaps."""
    dots: list[tuple[float, float, str]]
    """Single points (a value between two gaps), with their tooltip."""
    last: str
    """The last value, formatted (for the legend)."""


@dataclass
class Marker:
    x: float
    y: float
    colour: str
    title: str
    href: str


@dataclass
class Chart:
    title: str
    width: int = WIDTH
    height: int = HEIGHT
    series: list[Series] = field(default_factory=list)
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    rows: list[tuple[float, str]] = field(default_factory=list)
    """Row labels of a timeline (y, name)."""

    @property
    def empty(self) -> bool:
        return not any(s.segments or s.dots for s in self.series) and not self.markers

    @property
    def plot(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the plotting area."""
        return LEFT, TOP, self.width - RIGHT, self.height - BOTTOM


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out = []
    t = first
    while t <= hi + step * 1e-9:
        out.append(round(t, 12))
        t += step
    return out


def _x_scale(steps: Sequence[int], x0: float, x1: float) -> tuple[float, float]:
    lo = min(steps) if steps else 0
    hi = max(steps) if steps else 1
    if hi == lo:
        hi = lo + 1
    return lo, (x1 - x0) / (hi - lo)


def line_chart(
    title: str,
    series: Mapping[str, Sequence[tuple[int, float | None]]],
    *,
    y_range: tuple[float, float] | None = None,
) -> Chart:
    """A line per named series of ``(step, value)`` points; a None value breaks the line."""
    chart = Chart(title)
    x0, y0, x1, y1 = chart.plot
    steps = sorted({s for pts in series.values() for s, _ in pts})
    finite = [v for pts in series.values() for _, v in pts if v is not None and math.isfinite(v)]
    if y_range is not None:
        lo, hi = y_range
        if finite:
            lo, hi = min(lo, min(finite)), max(hi, max(finite))
    elif finite:
        lo, hi = min(finite), max(finite)
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 0.5)
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = 0.0, 1.0
    xlo, xs = _x_scale(steps, x0, x1)

    def px(step: float) -> float:
        return round(x0 + (step - xlo) * xs, 1)

    def py(v: float) -> float:
        return round(y1 - (v - lo) / (hi - lo) * (y1 - y0), 1)

    for k, (name, pts) in enumerate(series.items()):
        segments: list[str] = []
        dots: list[tuple[float, float, str]] = []
        run: list[tuple[float, float, str]] = []
        last = ""
        for step, v in [*pts, (None, None)]:
            if step is not None and v is not None and math.isfinite(v):
                last = _fmt(v)
                run.append((px(step), py(v), f"{name} at step {step}: {last}"))
                continue
            if len(run) > 1:
                segments.append(" ".join(f"{a},{b}" for a, b, _ in run))
            elif len(run) == 1:
                dots.append(run[0])
            run = []
        chart.series.append(Series(name, PALETTE[k % len(PALETTE)], segments, dots, last))
    chart.yticks = [(py(t), _fmt(t)) for t in _ticks(lo, hi)]
    if steps:
        chart.xticks = [(px(t), str(int(t))) for t in _ticks(steps[0], steps[-1]) if t == int(t)]
    return chart


def timeline(
    title: str, steps: Sequence[int], alerts: Sequence[tuple[int, str, str, str]]
) -> Chart:
    """Alerts on a timeline over ``steps``: ``(step, severity, tooltip, link)`` each, one row
    per severity."""
    chart = Chart(title, height=90)
    x0, y0, x1, y1 = chart.plot
    known = list(SEVERITY_COLOURS)
    span = [*steps, *(a[0] for a in alerts)]
    xlo, xs = _x_scale(span, x0, x1)
    row_h = (y1 - y0) / len(known)
    chart.rows = [(round(y0 + row_h * (i + 0.5), 1), s) for i, s in enumerate(known)]
    for step, severity, tip, href in alerts:
        i = known.index(severity) if severity in known else 0
        chart.markers.append(
            Marker(
                round(x0 + (step - xlo) * xs, 1),
                chart.rows[i][0],
                SEVERITY_COLOURS.get(severity, "#777777"),
                tip,
                href,
            )
        )
    if span:
        chart.xticks = [
            (round(x0 + (t - xlo) * xs, 1), str(int(t)))
            for t in _ticks(min(span), max(span))
            if t == int(t)
        ]
    return chart
