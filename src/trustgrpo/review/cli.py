"""``trustgrpo review ...``: serve the review page, manage reviewers, export cases.

Sub-commands (added to the ``review`` group that :mod:`trustgrpo.monitors.cli` creates, next
to its ``review resolve``)::

    trustgrpo review serve RUN [--host 127.0.0.1] [--port 8000]
    trustgrpo review add-reviewer RUN NAME [--role reviewer|viewer] [--replace]
    trustgrpo review remove-reviewer RUN NAME
    trustgrpo review export-cases RUN [--out FILE] [--all]

Serving is ``review serve RUN``, not ``review RUN``: argparse reads the word after ``review``
as a sub-command name, and ``review RUN`` would need the group's parser internals changed.
:func:`rewrite_argv` maps ``review RUN ...`` (RUN an existing directory that is not a
sub-command's name) to ``review serve RUN ...`` for a ``main`` that wants the short form.

This module imports nothing from the ``[review]`` extra at module scope, so ``trustgrpo
--help`` lists these commands without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from trustgrpo.errors import UserError

COMMANDS = ("serve", "add-reviewer", "remove-reviewer", "export-cases", "resolve")


def rewrite_argv(argv: Sequence[str]) -> list[str]:
    """``["review", RUN, ...]`` → ``["review", "serve", RUN, ...]`` when RUN is an existing
    directory and not a sub-command name; anything else unchanged.

    >>> rewrite_argv(["review", "resolve", "runs/x", "3"])[:2]
    ['review', 'resolve']
    """
    argv = list(argv)
    if (
        len(argv) >= 2
        and argv[0] == "review"
        and argv[1] not in COMMANDS
        and not argv[1].startswith("-")
        and Path(argv[1]).is_dir()
    ):
        return ["review", "serve", *argv[1:]]
    return argv


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the review sub-commands to a ``trustgrpo`` parser."""
    from trustgrpo.monitors.cli import review_subparsers

    review = review_subparsers(subparsers)

    p = review.add_parser(
        "serve",
        help="serve the review web page of a run (dashboard, queue, labels, alerts)",
        description="Serve the review page of RUN: a dashboard that follows training, the "
        "review queue of reward events, labels and corrected rewards (signed ledger events), "
        "and continue/halt decisions on paused alerts. Binds 127.0.0.1 unless told otherwise. "
        "Reviewers log in with a token from `trustgrpo review add-reviewer`. Needs the review "
        "extra (pip install 'trustgrpo[review]').",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument(
        "--random-rate",
        type=float,
        default=0.05,
        metavar="SHARE",
        help="share of reward events drawn uniformly at random for review (default 0.05)",
    )
    _ledger_args(p)
    p.set_defaults(func=cmd_serve)

    p = review.add_parser(
        "add-reviewer",
        help="add a reviewer to a run and print their login token (once)",
        description="Add reviewer NAME to RUN and print a login token, once: only its SHA-256 "
        "is stored (RUN/review/reviewers.json). Role 'reviewer' labels and decides; 'viewer' "
        "only reads.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("name", metavar="NAME", help="reviewer name, as recorded in the ledger")
    p.add_argument("--role", choices=("reviewer", "viewer"), default="reviewer", help="role")
    p.add_argument(
        "--replace", action="store_true", help="issue a new token to an existing reviewer"
    )
    p.set_defaults(func=cmd_add_reviewer)

    p = review.add_parser(
        "remove-reviewer",
        help="remove a reviewer from a run (their sessions end)",
        description="Remove reviewer NAME from RUN; their open sessions end at their next "
        "request. Their labels stay in the ledger.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("name", metavar="NAME", help="reviewer name")
    p.set_defaults(func=cmd_remove_reviewer)

    p = review.add_parser(
        "export-cases",
        help="export reward events people disagreed with as verifier regression cases",
        description="Write one JSON line per reward event whose human label disagrees with "
        "the verifiers' verdict or reward: prompt, completion, reference, what the verifiers "
        "said (name@version, status, score, details), what the person said and why, and the "
        "ledger events it comes from. The latest label per reviewer and event counts.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", metavar="FILE", help="write here (default: standard output)")
    p.add_argument(
        "--all", action="store_true", help="every labelled event, not only disagreements"
    )
    _ledger_args(p)
    p.set_defaults(func=cmd_export_cases)


def _ledger_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        metavar="URL",
        help="PostgreSQL store (default: RUN/run.toml's ledger.url, else SQLite RUN/ledger.db)",
    )
    p.add_argument(
        "--key",
        metavar="FILE",
        help="signing key for labels (default: run.toml's ledger.signing_key, else RUN/ledger.key)",
    )


def _run_dir(args: argparse.Namespace) -> Path:
    run = Path(args.run)
    if not run.is_dir():
        raise UserError(f"run directory not found: {run}")
    return run


def cmd_serve(args: argparse.Namespace) -> int:
    """``trustgrpo review serve``."""
    from trustgrpo.review.queue import QueueConfig
    from trustgrpo.review.server import serve

    run = _run_dir(args)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port: expected 0-65535, found {args.port}")
    try:
        queue = QueueConfig(random_rate=args.random_rate)
    except ValueError as e:
        raise UserError(f"--random-rate: {e}") from None
    print(f"trustgrpo review: serving {run} on http://{args.host}:{args.port}", file=sys.stderr)
    serve(
        run,
        args.host,
        args.port,
        url=args.url,
        signing_key=Path(args.key) if args.key else None,
        queue=queue,
    )
    return 0


def cmd_add_reviewer(args: argparse.Namespace) -> int:
    """``trustgrpo review add-reviewer``."""
    from trustgrpo.review.auth import Reviewers

    reviewers = Reviewers(_run_dir(args))
    token = reviewers.add(args.name, args.role, replace=args.replace)
    print(token)
    print(
        f"reviewer {args.name!r} ({args.role}) added to {reviewers.path}; the token above is "
        "shown once, only its hash is stored",
        file=sys.stderr,
    )
    return 0


def cmd_remove_reviewer(args: argparse.Namespace) -> int:
    """``trustgrpo review remove-reviewer``."""
    from trustgrpo.review.auth import Reviewers

    Reviewers(_run_dir(args)).remove(args.name)
    print(f"reviewer {args.name!r} removed", file=sys.stderr)
    return 0


def cmd_export_cases(args: argparse.Namespace) -> int:
    """``trustgrpo review export-cases``."""
    from trustgrpo.review.service import ReviewService

    service = ReviewService(
        _run_dir(args), url=args.url, signing_key=Path(args.key) if args.key else None
    )
    try:
        view = service.view()  # a ReviewError (no ledger) is a UserError: exit 2
        lines = [json.dumps(c, ensure_ascii=False) for c in service.cases(view, every=args.all)]
    finally:
        service.close()
    text = "".join(line + "\n" for line in lines)
    if args.out:
        Path(args.out).write_text(text)
        print(f"{len(lines)} case(s) written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
