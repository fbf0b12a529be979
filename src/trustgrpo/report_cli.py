"""``trustgrpo report RUN [--out FILE] [--pdf]``: the compliance report of a run.

Exit codes: 0 written (even when the ledger does not verify: the report says so, prominently,
and the command prints it); 2 bad usage (no such run directory, no ledger, a missing extra).
The report's dependencies (Jinja2, matplotlib) are imported only when the command runs, so
``trustgrpo --help`` lists it without them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trustgrpo.errors import UserError

_EXTRAS = ("jinja2", "markupsafe", "matplotlib")


def cmd_report(args: argparse.Namespace) -> int:
    """``trustgrpo report``."""
    try:
        from trustgrpo.report import build_report
    except ModuleNotFoundError as e:
        if e.name in _EXTRAS:
            raise UserError(f"the report needs {e.name}: pip install 'trustgrpo[report]'") from None
        raise
    if args.replay_sample < 0:
        raise UserError(f"--replay-sample: expected 0 or more, found {args.replay_sample}")
    run = Path(args.run)
    url = args.url or _recorded_url(run)
    result = build_report(
        run,
        out=args.out,
        pdf=args.pdf,
        url=url,
        replay_sample=args.replay_sample,
        replay_seed=args.seed,
    )
    print(f"report: {result.html}")
    if result.pdf is not None:
        print(f"pdf:    {result.pdf}")
    if not result.verified:
        print("warning: the ledger does NOT verify; the report shows the problems", file=sys.stderr)
    if result.replayed is False:
        print("warning: replayed rewards do not match the ledger; see the report", file=sys.stderr)
    print(f"built from {result.events:,} ledger events in {result.seconds:.1f} s")
    return 0


def _recorded_url(run: Path) -> str | None:
    """``[ledger] url`` from ``RUN/run.toml`` (where the store is, not a figure of the run)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    toml = run / "run.toml"
    if not toml.is_file():
        return None
    try:
        url = tomllib.loads(toml.read_text()).get("ledger", {}).get("url", "")
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise UserError(f"{toml}: {e}") from None
    return str(url) or None


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report`` to the ``trustgrpo`` command tree."""
    p = subparsers.add_parser(
        "report",
        help="write the compliance report of a run (HTML, optionally PDF)",
        description="Write a self-contained HTML compliance report of a run from its ledger: "
        "identity, reward specification, training and compute, results with plots, monitors and "
        "alerts, human oversight, integrity (audit verify, a replay sample, the signed "
        "checkpoint), sandbox isolation, limitations, and a map to the EU AI Act and NIST AI "
        "RMF. Every figure is read from the ledger. --pdf also prints it with headless "
        "Chromium.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument(
        "--out", metavar="FILE", help="the HTML file to write (default: RUN/report.html)"
    )
    p.add_argument(
        "--pdf",
        action="store_true",
        help="also write a PDF next to the HTML (same name, .pdf), printed by headless Chromium",
    )
    p.add_argument(
        "--url",
        help="PostgreSQL store (default: RUN/run.toml's ledger.url, else SQLite RUN/ledger.db)",
    )
    p.add_argument(
        "--replay-sample",
        type=int,
        default=32,
        metavar="N",
        help="reward events to replay with the recorded verifiers (default 32; 0: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the replay sample (default 0)")
    p.set_defaults(func=cmd_report)
