"""``trustgrpo monitor`` and ``trustgrpo review resolve``.

``trustgrpo monitor RUN [--json]`` runs the detectors over a recorded ledger (those that read
the record are recomputed from the run's recorded ``[monitors]`` table; the alerts of those
that need the live trainer are shown as recorded) and prints a table of alerts. Exit code 0
when no alert is at or above ``review``, 1 otherwise, 2 for bad usage.

``trustgrpo review resolve RUN ALERT --decision continue|halt`` appends a ``decision`` event
on alert ``ALERT`` (its ledger index) to the run's ledger, signed with the run's key. A
training process paused on that alert reads it and goes on or stops.

Other ``review`` sub-commands live in ``trustgrpo.review.cli``; both modules get the one
``review`` group from :func:`review_subparsers`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from trustgrpo.errors import LedgerError, UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def review_subparsers(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-command group of ``trustgrpo review``, created on first use.

    Every module that adds a ``review`` sub-command calls this with the top-level
    sub-parsers and adds its command to what it returns (argparse refuses a second
    ``review`` parser)::

        review = review_subparsers(subparsers)
        p = review.add_parser("serve", help=..., description=...)
    """
    parser = subparsers.choices.get("review")
    if parser is None:
        parser = subparsers.add_parser(
            "review",
            help="human review of a run's alerts and rewards",
            description="Human review of a run: resolve alerts that paused training, and "
            "(with the review extra) label and override rewards.",
        )
        return parser.add_subparsers(dest="review_command", metavar="COMMAND", required=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the review parser has no sub-commands")  # pragma: no cover


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``monitor`` and ``review resolve`` to a ``trustgrpo`` parser."""
    p = subparsers.add_parser(
        "monitor",
        help="run the reward-hacking and health detectors over a recorded run",
        description="Run the monitors over a recorded ledger and print every alert (what, "
        "when, evidence). Detectors that read the record are recomputed with the run's "
        "recorded [monitors] settings; held-out, canary, nondeterminism and probe alerts are "
        "shown as recorded. Exit code 0 when no alert is at or above 'review', 1 otherwise.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    _url_arg(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_monitor)

    review = review_subparsers(subparsers)
    p = review.add_parser(
        "resolve",
        help="decide on an alert: let a paused run continue, or halt it",
        description="Append a signed decision on alert ALERT (its ledger event index, as "
        "printed by the paused run and by `trustgrpo monitor`) to the run's ledger. A run "
        "paused on that alert continues or halts (exit code 3). Needs the run's signing key.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("alert", metavar="ALERT", type=int, help="ledger index of the alert")
    p.add_argument(
        "--decision", required=True, choices=("continue", "halt"), help="what training does"
    )
    p.add_argument("--reviewer", metavar="NAME", help="who decides (default: the user name)")
    p.add_argument("--reason", metavar="TEXT", default="", help="why, for the record")
    p.add_argument(
        "--key", metavar="FILE", help="signing key (default: run.toml's, else RUN/ledger.key)"
    )
    _url_arg(p)
    p.add_argument("--json", action="store_true", help="print the decision as JSON")
    p.set_defaults(func=cmd_resolve)


def _url_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        metavar="URL",
        help="PostgreSQL store (default: RUN/run.toml's ledger.url, else SQLite RUN/ledger.db)",
    )


def _run_toml(run: Path) -> dict[str, Any]:
    toml = run / "run.toml"
    if not toml.is_file():
        return {}
    try:
        return tomllib.loads(toml.read_text())
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise UserError(f"{toml}: {e}") from None


def _run(args: argparse.Namespace) -> tuple[Path, str | None, dict[str, Any]]:
    run = Path(args.run)
    if not run.is_dir():
        raise UserError(f"run directory not found: {run}")
    recorded = _run_toml(run)
    url = args.url or (recorded.get("ledger") or {}).get("url") or None
    return run, url, recorded


# --------------------------------------------------------------------------- monitor


def cmd_monitor(args: argparse.Namespace) -> int:
    """``trustgrpo monitor``."""
    from trustgrpo.ledger import LedgerReader
    from trustgrpo.monitors._alert import rank
    from trustgrpo.monitors._offline import monitor_run

    run, url, _ = _run(args)
    with LedgerReader.open_readonly(run, url=url) as reader:
        report = monitor_run(reader)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_report(report))
    worst = report.worst
    return 1 if worst is not None and rank(worst) >= rank("review") else 0


def format_report(report: Any) -> str:
    """The alerts of a :class:`~trustgrpo.monitors.MonitorReport` as a table."""
    alerts = report.all()
    head = (
        f"{report.steps} steps; recomputed: {', '.join(report.detectors) or 'none'}; "
        f"{len(alerts)} alert(s)"
    )
    if not alerts:
        return head + "\nno alerts"
    rows = [("STEP", "DETECTOR/CHECK", "SEVERITY", "VALUE", "THRESHOLD", "EVIDENCE")]
    notes = []
    for a in alerts:
        rows.append(
            (
                str(a.step),
                f"{a.detector}/{a.check}",
                a.severity,
                f"{a.statistic:.4g}",
                f"{a.threshold:.4g}",
                _evidence(a.evidence),
            )
        )
        source = f"recorded as event {a.index}" if a.index is not None else "recomputed"
        decision = report.decisions.get(a.index) if a.index is not None else None
        if decision:
            source += (
                f"; decided {decision.get('decision')} by {decision.get('reviewer')} "
                f"(event {decision.get('event')})"
            )
        notes.append(f"{a.message} [{source}]")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [head]
    for n, r in enumerate(rows):
        cells = [
            c.rjust(w) if i in (0, 3, 4) else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=False))
        ]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
        if n:
            lines.append("      " + notes[n - 1])
    return "\n".join(lines)


_NAMES = ("canary", "probe", "held_out", "prompt_id")
"""Keys that name a non-ledger evidence item, in order of preference."""


def _evidence(evidence: Any, shown: int = 4) -> str:
    if not evidence:
        return "-"
    parts = []
    for r in list(evidence)[:shown]:
        if isinstance(r, int):
            parts.append(str(r))
        elif isinstance(r, dict) and {"step", "group_id", "index"} <= set(r):
            parts.append(f"s{r['step']}g{r['group_id']}i{r['index']}")
        elif isinstance(r, dict):
            key = next((k for k in _NAMES if k in r), next(iter(r), ""))
            parts.append(f"{key}={r.get(key)}")
        else:
            parts.append(str(r))
    more = len(evidence) - shown
    return (
        "events " * all(isinstance(r, int) for r in evidence)
        + ", ".join(parts)
        + (f" (+{more})" if more > 0 else "")
    )


# --------------------------------------------------------------------------- resolve


def cmd_resolve(args: argparse.Namespace) -> int:
    """``trustgrpo review resolve``."""
    from trustgrpo.ledger import Ledger, LedgerReader

    run, url, recorded = _run(args)
    with LedgerReader.open_readonly(run, url=url) as reader:
        _check_alert(reader, args.alert)
    key = args.key or (recorded.get("ledger") or {}).get("signing_key") or None
    key_path = Path(key) if key else run / "ledger.key"
    if not key_path.is_file():
        raise UserError(
            f"signing key not found: {key_path} (a decision is signed with the run's key; "
            "pass --key FILE)"
        )
    reviewer = args.reviewer or os.environ.get("TRUSTGRPO_REVIEWER") or getpass.getuser()
    body = {
        "alert": int(args.alert),
        "decision": args.decision,
        "reviewer": reviewer,
        "reason": args.reason or "",
    }
    try:
        ledger = Ledger.open(run, url=url, signing_key=key_path if key else None)
    except LedgerError as e:
        raise UserError(f"cannot open the ledger of {run} for writing: {e}") from None
    try:
        ledger.append("decision", body)
        ledger.sign(wait=True)
        size = ledger.flush()
        index = next(
            i
            for i in range(size - 1, -1, -1)
            if (ev := ledger.get_event(i)).kind == "decision" and ev.body == body
        )
    finally:
        ledger.close()
    if args.json:
        print(json.dumps({"event": index, **body}))
    else:
        print(f"alert {args.alert} resolved: {args.decision} by {reviewer} (event {index})")
    return 0


def _check_alert(reader: Any, index: int) -> None:
    size = reader.size()
    if not 0 <= index < size:
        raise UserError(f"ALERT: no event {index} in the ledger (it holds {size} events)")
    ev = reader.get_event(index)
    if ev.kind != "alert":
        raise UserError(f"ALERT: event {index} is a {ev.kind!r} event, not an alert")
    for later in reader.events(index + 1):
        if later.kind == "decision" and later.body.get("alert") == index:
            b = later.body
            raise UserError(
                f"alert {index} is already resolved: {b.get('decision')} by "
                f"{b.get('reviewer')} (event {later.index})"
            )
