"""Build the report: read the ledger, audit it, draw, render, write.

::

    collect (one pass over the events) → audit verify → replay a sample → monitor table
    → plots (matplotlib, SVG) → view (tagged figures) → HTML (Jinja2) → PDF (Chromium)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustgrpo.errors import UserError
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.report._collect import Subset, collect
from trustgrpo.report._format import excerpt_html, fact
from trustgrpo.report._monitors import SEVERITIES, Setting, detector_table, plain, show_value
from trustgrpo.report._oversight import oversight_sections
from trustgrpo.report._summary import STATUSES
from trustgrpo.report._view import Audits, View, run_sections

REPLAY_SAMPLE = 32
"""Reward events replayed by default (at random, seed 0)."""

SECTIONS = (
    ("identity", "Run identity"),
    ("objective", "What the model was optimised for"),
    ("training", "Training process and compute"),
    ("results", "Results"),
    ("monitors", "Monitors"),
    ("oversight", "Human oversight"),
    ("integrity", "Integrity of the record"),
    ("sandbox", "Sandbox isolation"),
    ("limitations", "Known limitations"),
    ("mapping", "Where each requirement is answered"),
)

MAPPING: dict[str, tuple[str, str]] = {
    "identity": (
        "Art. 11 and Annex IV 1, 2(a), 2(d); Art. 53(1)(a) and Annex XI 1.1(a)–(d), 1.2(c) "
        "(data provenance)",
        "MEASURE 2.1, 2.8",
    ),
    "objective": (
        "Annex IV 2(b); Annex XI 1.2(b) (“what the model is designed to optimise for”)",
        "MEASURE 2.1",
    ),
    "training": (
        "Annex IV 2(c); Annex XI 1.2(d) (compute, training time); 1.2(e) energy: not recorded",
        "MEASURE 2.1",
    ),
    "results": (
        "Annex IV 2(g), 4 (performance metrics); Annex XI 1.2(b), Section 2 (evaluation)",
        "MEASURE 2.3, 2.5",
    ),
    "monitors": (
        "Art. 12(2)(a) (events relevant to risks); Annex IV 3, 5 (Art. 9 risk management); "
        "Annex XI 1.2(c) (methods to detect biases)",
        "MEASURE 2.4, 2.11, 3.1; MANAGE 1.3",
    ),
    "oversight": (
        "Art. 14(4)(a)–(e) (understand and detect anomalies, automation bias, interpret, "
        "disregard or override, stop); Annex IV 2(e)",
        "MANAGE 2.4, 4.1",
    ),
    "integrity": (
        "Art. 12(1) (automatic recording of events); Art. 19(1), 26(6) (logs kept at least "
        "six months); Annex IV 2(g) (test logs dated and signed); Art. 13(3)(f) (how to "
        "collect and interpret the logs)",
        "MEASURE 2.7, 2.8",
    ),
    "sandbox": ("Art. 15 (robustness, cybersecurity)", "MEASURE 2.7"),
    "limitations": (
        "Art. 13(3)(b) (capabilities and limitations); Annex IV 3",
        "MANAGE 1.4; MEASURE 2.5",
    ),
}
"""Per section: (EU AI Act, NIST AI RMF 1.0). ``Annex XI 1.2(b)`` is Section 1, point 2(b)."""


@dataclass
class ReportResult:
    """What :func:`build_report` wrote."""

    html: Path
    pdf: Path | None
    events: int
    verified: bool
    """``audit verify`` found no problem."""
    replayed: bool | None
    """The replay sample matched (None: no replay)."""
    seconds: float


def _setting(x: Setting, key: str) -> Any:
    """A monitor setting as a figure; a default (not in the run file) is marked †."""
    from markupsafe import Markup

    value = x.value
    if isinstance(value, (bool, int, float, str)) or value is None:
        f = fact(key, value, text=show_value(value) if value == "" else None)
    else:  # lists and tables: their JSON as the value
        f = fact(key, json.dumps(plain(value), sort_keys=True), text=show_value(value))
    if x.explicit:
        return f
    return Markup('{}<span class="muted" title="default">†</span>').format(f)


def render_html(view: View, *, built_at: str | None = None) -> str:
    """The report's HTML for ``view``."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    from trustgrpo import __version__

    env = Environment(
        loader=PackageLoader("trustgrpo.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    template = env.get_template("report.html.j2")
    stamp = built_at or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return template.render(
        v=view,
        version=__version__,
        built_at=stamp,
        sections=SECTIONS,
        mapping=MAPPING,
        statuses=STATUSES,
        severities=SEVERITIES,
        fact=fact,
        excerpt=excerpt_html,
        setting=_setting,
    )


def _need_extras() -> None:
    missing = []
    for module in ("jinja2", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UserError(
            f"the report needs {' and '.join(missing)}: pip install 'trustgrpo[report]'"
        )


def build_view_for(
    reader: LedgerReader, *, replay_sample: int = REPLAY_SAMPLE, replay_seed: int = 0
) -> View:
    """Read, audit and draw: the :class:`View` the HTML is rendered from."""
    from trustgrpo.ledger.audit import verify
    from trustgrpo.ledger.replay import replay
    from trustgrpo.report._plots import render_plots

    summary = collect(reader, replay_sample=replay_sample, replay_seed=replay_seed)
    report = verify(reader)
    rep, replay_error = None, ""
    if replay_sample > 0:
        sessions = [index for index, _, _, _ in summary.sessions]
        try:  # the sample drawn by collect: the one `audit replay --sample --seed` draws
            rep = replay(Subset(reader, sessions + summary.replay_pick))
        except Exception as e:  # a replay that cannot run is reported, not fatal
            replay_error = f"{type(e).__name__}: {e}"
    else:
        replay_error = "disabled with --replay-sample 0"
    try:
        checkpoint, key = reader.latest_checkpoint(), reader.public_key
    except Exception as e:  # shown as missing; verify reports the problem itself
        checkpoint, key = None, None
        replay_error = replay_error or str(e)
    audits = Audits(report, rep, replay_sample, replay_seed, checkpoint, key, replay_error)
    monitors = detector_table(
        summary.config.get("monitors") or {}, summary.components, summary.alerts
    )
    shown = [d.name for d in monitors.detectors if d.active]
    view = View(s=summary, audits=audits, monitors=monitors, plots=render_plots(summary, shown))
    run = summary.config.get("run") or {}
    view.run_name = str(run.get("name") or summary.origin or "run")
    run_sections(view)
    oversight_sections(view)
    return view


def build_report(
    run_dir: Path | str,
    *,
    out: Path | str | None = None,
    pdf: bool | Path | str = False,
    url: str | None = None,
    replay_sample: int = REPLAY_SAMPLE,
    replay_seed: int = 0,
) -> ReportResult:
    """Write the compliance report of the run in ``run_dir``.

    ``out``: the HTML file (default ``run_dir/report.html``). ``pdf``: True for the HTML's
    path with ``.pdf``, or a path. ``url``: a PostgreSQL ledger instead of
    ``run_dir/ledger.db``. ``replay_sample``: reward events to replay (0: none).
    :class:`UserError` for a missing run directory or ledger.
    """
    t0 = time.perf_counter()
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"run directory not found: {run}")
    if url is None and not (run / "ledger.db").is_file():
        raise UserError(f"no ledger in {run}: expected {run / 'ledger.db'} (or pass --url)")
    _need_extras()
    html_path = Path(out) if out else run / "report.html"
    with LedgerReader.open_readonly(run, url=url) as reader:
        view = build_view_for(reader, replay_sample=replay_sample, replay_seed=replay_seed)
    html = render_html(view)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = html_path.with_name(f".{html_path.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, html_path)
    pdf_path = None
    if pdf:
        from trustgrpo.report._pdf import write_pdf

        target = html_path.with_suffix(".pdf") if pdf is True else Path(pdf)
        pdf_path = write_pdf(html_path, target)
    return ReportResult(
        html=html_path,
        pdf=pdf_path,
        events=view.s.events,
        verified=view.audits.verify.ok,
        replayed=None if view.audits.replay is None else view.audits.replay.ok,
        seconds=time.perf_counter() - t0,
    )
