"""The report's four plots, drawn with matplotlib and returned as inline SVG text.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot, no global backend);
text stays text (``svg.fonttype = none``) and each figure salts its element ids, so several
SVGs live in one HTML page. Colours are the Okabe-Ito palette (distinguishable with the
common colour-vision deficiencies).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from markupsafe import Markup

from trustgrpo.report._summary import RunSummary

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
SEVERITY_COLOURS = {"warn": "#E69F00", "review": "#0072B2", "pause": "#CC79A7", "halt": "#D55E00"}
MAX_POINTS = 1500
"""Longer series are averaged over consecutive steps down to this many points."""

_RC: Any = {  # matplotlib types its keys as literals
    "svg.fonttype": "none",
    "font.size": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


def _series(steps: Sequence[int], values: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values without missing ones, averaged in blocks beyond MAX_POINTS."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    if len(x) > MAX_POINTS:
        k = -(-len(x) // MAX_POINTS)
        cut = len(x) // k * k
        x = np.concatenate([x[:cut].reshape(-1, k).mean(1), x[cut:].mean(keepdims=True)])
        y = np.concatenate([y[:cut].reshape(-1, k).mean(1), y[cut:].mean(keepdims=True)])
        if cut == len(steps):
            x, y = x[:-1], y[:-1]
    return x, y


def _smooth(y: np.ndarray) -> np.ndarray:
    """A centred moving average over ~1/25 of the series (nothing for short ones)."""
    w = len(y) // 25
    if w < 3:
        return y
    kernel = np.ones(w) / w
    pad = np.pad(y, (w // 2, w - 1 - w // 2), mode="edge")
    return np.convolve(pad, kernel, mode="valid")


def _svg(fig: Any, name: str, label: str) -> str:
    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context({"svg.hashsalt": f"trustgrpo-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", text, count=1)
    text = text.replace("<svg", f'<svg role="img" aria-label="{label}" class="plot"', 1)
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)


def _figure(height: float = 2.7) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.4, height), layout="constrained")
    return fig, fig.add_subplot()


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def reward_per_component(s: RunSummary) -> str:
    fig, ax = _figure()
    steps = [r.step for r in s.steps]
    for c, comp in enumerate(s.components):
        x, y = _series(steps, [r.scores[c] if c < len(r.scores) else None for r in s.steps])
        if not len(x):
            continue
        colour = PALETTE[c % len(PALETTE)]
        label = (
            f"{comp.name} ({comp.role}, weight {comp.weight:g})"
            if comp.weight is not None
            else comp.name
        )
        smooth = _smooth(y)
        if smooth is not y:
            ax.plot(x, y, color=colour, alpha=0.25, linewidth=0.7)
        ax.plot(x, smooth, color=colour, linewidth=1.5, label=f"{label}: mean score")
    x, y = _series(steps, [r.reward_mean for r in s.steps])
    if len(x):
        ax.plot(
            x,
            _smooth(y),
            color="#000000",
            linewidth=1.2,
            linestyle="--",
            label="final reward (mean)",
        )
        ax.set_xlabel("training step")
        ax.set_ylabel("mean per step")
        ax.legend(loc="best")
    else:
        _no_data(ax, "no reward events recorded")
    return _svg(fig, "reward", "Mean score per verifier component and final reward per step")


def held_out_gap(s: RunSummary) -> str:
    fig, ax = _figure()
    rows = s.eval_rows
    if "eval/accuracy" in s.eval_keys:
        key, train_label = "eval/accuracy", "training success rate"
        train = [r.success for r in s.steps]
        held = [(r.step, r.metrics.get(key), r.success) for r in rows]
    elif s.eval_keys:
        key, train_label = s.eval_keys[0], "training reward (mean)"
        train = [r.reward_mean for r in s.steps]
        held = [(r.step, r.metrics.get(key), r.reward_mean) for r in rows]
    else:
        _no_data(ax, "no held-out evaluation recorded")
        return _svg(fig, "heldout", "No held-out evaluation recorded")
    x, y = _series([r.step for r in s.steps], train)
    smooth = _smooth(y)
    if smooth is not y:
        ax.plot(x, y, color=PALETTE[0], alpha=0.25, linewidth=0.7)
    ax.plot(x, smooth, color=PALETTE[0], linewidth=1.5, label=train_label)
    pts = [(st, v, t) for st, v, t in held if isinstance(v, (int, float))]
    if pts:
        hx = [p[0] for p in pts]
        ax.plot(
            hx,
            [p[1] for p in pts],
            color=PALETTE[5],
            marker="o",
            markersize=4,
            linewidth=1.2,
            label=f"held-out ({key})",
        )
        for st, v, t in pts:
            if isinstance(t, (int, float)):
                ax.plot([st, st], [v, t], color="#777777", linewidth=0.8, linestyle=":")
        ax.plot([], [], color="#777777", linewidth=0.8, linestyle=":", label="gap at an evaluation")
    ax.set_xlabel("training step")
    ax.legend(loc="best")
    return _svg(fig, "heldout", "Training success rate against held-out evaluation")


def length_vs_reward(s: RunSummary) -> str:
    fig, ax = _figure()
    ok = ~np.isnan(s.rewards)
    lengths, rewards, steps = s.lengths[ok], s.rewards[ok], s.sample_steps[ok]
    if not len(lengths):
        _no_data(ax, "no scored samples recorded")
        return _svg(fig, "length", "No scored samples recorded")
    distinct = np.unique(lengths)
    if len(distinct) <= 40:
        edges = np.append(distinct, distinct[-1] + 1).astype(float)
        centre = distinct.astype(float)
    else:
        edges = np.unique(np.quantile(lengths, np.linspace(0, 1, 21)))
        edges[-1] += 1
        centre = (edges[:-1] + edges[1:]) / 2
    if len(np.unique(steps)) > 1:
        lo, hi = np.quantile(steps, [0.25, 0.75])
        parts = [
            ("first quarter of steps", steps <= lo, PALETTE[4]),
            ("last quarter of steps", steps >= hi, PALETTE[5]),
        ]
    else:
        parts = [("all samples", np.ones(len(steps), bool), PALETTE[0])]
    for label, sel, colour in parts:
        b = np.clip(np.searchsorted(edges, lengths[sel], side="right") - 1, 0, len(edges) - 2)
        n = np.bincount(b, minlength=len(edges) - 1)
        m = np.bincount(b, weights=rewards[sel], minlength=len(edges) - 1)
        keep = n >= 5
        ax.plot(
            centre[keep],
            m[keep] / n[keep],
            marker="o",
            markersize=3.5,
            color=colour,
            linewidth=1.3,
            label=f"{label} ({int(sel.sum()):,} samples)",
        )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("completion length (tokens)")
    ax.set_ylabel("mean final reward")
    ax.legend(loc="best")
    return _svg(fig, "length", "Mean final reward by completion length, early and late in training")


def alert_timeline(s: RunSummary, detectors: Sequence[str]) -> str:
    names = list(dict.fromkeys([*detectors, *(a.detector for a in s.alerts)]))
    fig, ax = _figure(height=max(1.6, 0.9 + 0.22 * len(names)))
    last = max((r.step for r in s.steps), default=1)
    if not names:
        _no_data(ax, "no detectors ran and no alerts were recorded")
        return _svg(fig, "alerts", "No alerts")
    pos = {n: i for i, n in enumerate(names)}
    for sev, colour in SEVERITY_COLOURS.items():
        pts = [
            (a.step, pos[a.detector]) for a in s.alerts if a.severity == sev and a.step is not None
        ]
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                color=colour,
                s=22,
                marker="D" if sev in ("pause", "halt") else "o",
                label=sev,
                zorder=3,
            )
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlim(0, last * 1.02 + 1)
    ax.set_xlabel("training step")
    if s.alerts:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="severity")
    else:
        ax.text(
            0.5,
            1.02,
            f"no alerts in {len(s.steps):,} steps",
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            color="#555555",
        )
    return _svg(fig, "alerts", "Alerts by step and detector, coloured by severity")


def render_plots(s: RunSummary, detectors: Sequence[str]) -> dict[str, Markup]:
    """``{"reward", "heldout", "length", "alerts"}`` → inline SVG (matplotlib escapes the
    text it writes, labels taken from the ledger included)."""
    from matplotlib import rc_context

    with rc_context(_RC):
        return {
            "reward": Markup(reward_per_component(s)),
            "heldout": Markup(held_out_gap(s)),
            "length": Markup(length_vs_reward(s)),
            "alerts": Markup(alert_timeline(s, detectors)),
        }
