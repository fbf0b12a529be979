"""The compliance report: how a model was trained and overseen, written from its ledger.

>>> from trustgrpo.report import build_report
>>> build_report("runs/demo", pdf=True)  # doctest: +SKIP
ReportResult(html=PosixPath('runs/demo/report.html'), pdf=PosixPath('runs/demo/report.pdf'), ...)

One self-contained HTML file (plots inline as SVG, styles inline, a Content-Security-Policy
that forbids every network load) and optionally a PDF of it printed by headless Chromium.
Sections: run identity; what the model was optimised for; training process and compute;
results; monitors; human oversight; integrity (``audit verify``, a replay sample, the final
signed checkpoint, how to check it yourself); sandbox isolation; known limitations; and a
table mapping each section to the EU AI Act (Art. 11–14, 19, 53; Annexes IV and XI) and the
NIST AI RMF 1.0.

Every figure comes from the ledger (never from ``metrics.jsonl`` or ``run.toml``) and is
tagged in the HTML with its key and exact value (``data-fact``, ``data-value``), so that a
test, or an auditor's script, can check each one against the ledger. Untrusted text
(completions, reviewers' reasons) is always escaped.

Modules::

    _summary    RunSummary: what the report knows about a run
    _collect    one pass over the events → RunSummary (steps, components, alerts)
    _review     labels, overrides, decisions; Cohen's κ between verifiers and people
    _monitors   the detectors with their thresholds (from trustgrpo.monitors when present)
    _plots      reward per component, held-out gap, length vs reward, alert timeline (SVG)
    _view       the figures of sections 1-4 (the run), tagged
    _oversight  the figures of sections 5-9 (monitors, people, integrity, sandbox, limits)
    _format     how figures are shown and tagged
    _build      build_report(): collect → audit → plots → HTML → PDF
    _pdf        Chromium print-to-PDF
    templates/  report.html.j2
"""

from __future__ import annotations

from trustgrpo.report._build import REPLAY_SAMPLE, ReportResult, build_report, render_html
from trustgrpo.report._collect import collect
from trustgrpo.report._pdf import ReportError, find_chromium, write_pdf
from trustgrpo.report._review import cohen_kappa
from trustgrpo.report._summary import RunSummary

__all__ = [
    "REPLAY_SAMPLE",
    "ReportError",
    "ReportResult",
    "RunSummary",
    "build_report",
    "cohen_kappa",
    "collect",
    "find_chromium",
    "render_html",
    "write_pdf",
]
