"""``trustgrpo audit ...``: verify, replay, trace, proof, check-proof, export, redact.

Exit codes: 0 when everything holds, 1 when something does not, 2 for bad usage (a
:class:`~trustgrpo.errors.UserError`, printed by the top-level CLI). Every command takes
``--json`` for machine-readable output.

``RUN`` is a run directory. Its store is SQLite ``RUN/ledger.db`` unless ``--url`` names a
PostgreSQL database or ``RUN/run.toml`` sets ``[ledger] url``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trustgrpo.errors import LedgerError, TrustGRPOError, UserError, VerificationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _run_dir(args: argparse.Namespace) -> Path:
    run = Path(args.run)
    if not run.is_dir():
        raise UserError(f"run directory not found: {run}")
    return run


def _url(args: argparse.Namespace, run: Path) -> str | None:
    if args.url:
        return str(args.url)
    toml = run / "run.toml"
    if toml.is_file():
        try:
            url = tomllib.loads(toml.read_text()).get("ledger", {}).get("url", "")
        except (tomllib.TOMLDecodeError, OSError) as e:
            raise UserError(f"{toml}: {e}") from None
        return str(url) or None
    return None


def _open(args: argparse.Namespace) -> Any:
    from trustgrpo.ledger.reader import LedgerReader

    run = _run_dir(args)
    return LedgerReader.open_readonly(run, url=_url(args, run))


def _key(path: str | None) -> Any:
    from trustgrpo.ledger.sign import load_public_key

    if path is None:
        return None
    try:
        return load_public_key(Path(path))
    except (LedgerError, OSError) as e:
        raise UserError(f"--key {path}: {e}") from None


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"{what} {path}: {e.strerror}") from None


# --------------------------------------------------------------------------- handlers


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a usage error, exit code 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, found {text!r}")
    return value


def cmd_verify(args: argparse.Namespace) -> int:
    """``audit verify``."""
    from trustgrpo.ledger.audit import verify

    external = [(p, _read(p, "--checkpoint")) for p in args.checkpoint or []]
    key = _key(args.key)
    with _open(args) as reader:
        report = verify(reader, key=key, external=external, deep=args.deep, workers=args.workers)
        latest = reader.store.latest_checkpoint()
    if args.save_checkpoint and report.ok and latest is not None:
        Path(args.save_checkpoint).write_bytes(bytes(latest[2]))
    if args.json:
        _print_json(report.to_json())
        return 0 if report.ok else 1
    rate = report.events / report.seconds if report.seconds else 0.0
    print(f"ledger       {report.location}")
    print(f"events       {report.events}  (root {report.root})")
    print(f"checkpoints  {report.checkpoints} valid; the last covers {report.signed_size} events")
    if report.external:
        print(f"external     {report.external} checkpoint file(s) checked")
    print(f"blobs        {report.blobs} ({report.redacted_blobs} redacted)")
    for w in report.warnings:
        print(f"warning: {w}")
    if report.ok:
        procs = f", {report.processes} processes" if report.processes > 1 else ""
        print(f"OK: everything verifies ({report.seconds:.2f} s, {rate:,.0f} events/s{procs})")
        return 0
    print(f"FAILED: {report.problems[0]}")
    for p in report.problems[1:]:
        print(f"  also: {p}")
    if report.more_problems:
        print(f"  ... and {report.more_problems} more")
    return 1


def cmd_replay(args: argparse.Namespace) -> int:
    """``audit replay``."""
    from trustgrpo.ledger.replay import replay

    if args.sample is not None and args.sample < 1:
        raise UserError(f"--sample: expected a positive number, found {args.sample}")
    with _open(args) as reader:
        report = replay(reader, sample=args.sample, step=args.step, seed=args.seed)
    if args.json:
        _print_json(report.to_json())
        return 0 if report.ok else 1
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing"
    print(f"replayed {report.events} reward events: {counts}")
    for r in report.results:
        if r.status != "match":
            print(f"  event {r.event} (step {r.step}) {r.verifier}: {r.status}: {r.message}")
    print("OK: every replayed outcome matches" if report.ok else "FAILED")
    return 0 if report.ok else 1


def cmd_trace(args: argparse.Namespace) -> int:
    """``audit trace``."""
    from trustgrpo.ledger.audit import trace

    with _open(args) as reader:
        report = trace(reader, args.checkpoint, top=args.top)
    if args.json:
        _print_json(report.to_json())
        return 0
    print(
        f"checkpoint of step {report.step} (event {report.checkpoint_event}, weights "
        f"{report.weights_sha256[:16]}): {report.reward_events} reward events, total weight "
        f"{report.total_weight:.4g}"
    )
    print("steps by weight (sum of |advantage|):")
    for s in report.steps:
        print(
            f"  step {s['step']:>5}  weight {s['weight']:.4g}  rewards {s['reward_events']}"
            f"  loss {s['loss']}  kl {s['kl']}"
        )
    print("reward events by weight (|advantage|):")
    for r in report.rewards:
        fb = f"  feedback: {len(r['feedback'])}" if r["feedback"] else ""
        print(
            f"  event {r['event']:>7}  step {r['step']}  prompt {r['prompt_id']}  reward "
            f"{r['reward']}  advantage {r['advantage']:+.4g}{fb}"
        )
        for f in r["feedback"]:
            print(
                f"      {f['kind']} event {f['event']}: {f.get('verdict', f.get('reward'))} "
                f"by {f.get('reviewer')}: {f.get('reason', '')}"
            )
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    """``audit proof``."""
    from trustgrpo.ledger.proof import make_proof

    with _open(args) as reader:
        n = reader.size()
        if not 0 <= args.event < n:
            raise UserError(f"--event: expected an index in [0, {n}), found {args.event}")
        proof = make_proof(reader, args.event, step=args.checkpoint)
    text = json.dumps(proof, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        if args.json:
            _print_json(
                {
                    "ok": True,
                    "path": args.output,
                    "leaf_index": args.event,
                    "tree_size": proof["tree_size"],
                }
            )
        else:
            print(f"wrote {args.output}: event {args.event} in a tree of {proof['tree_size']}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_check_proof(args: argparse.Namespace) -> int:
    """``audit check-proof``."""
    from trustgrpo.ledger.proof import check_proof

    key = _key(args.key)
    try:
        proof = json.loads(_read(args.proof, "proof"))
    except ValueError as e:
        raise UserError(f"{args.proof}: expected JSON: {e}") from None
    try:
        summary = check_proof(proof, key)
    except VerificationError as e:
        if args.json:
            _print_json({"ok": False, "problem": str(e)})
        else:
            print(f"FAILED: {e}")
        return 1
    if args.json:
        _print_json(summary)
    else:
        print(
            f"OK: event {summary['leaf_index']} ({summary['kind']}) is in the log "
            f"{summary['origin']} of size {summary['tree_size']} signed at {summary['signed_at']}"
            f"; {len(summary['blobs_checked'])} blob(s) match"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``audit export``."""
    from trustgrpo.ledger.audit import export

    run = _run_dir(args)
    if args.output == "-" and args.format == "parquet":
        raise UserError("--format parquet cannot go to standard output; give --output FILE")
    if args.output == "-" and args.json:
        raise UserError("--json needs --output FILE (the events go to standard output)")
    if args.output:
        out = None if args.output == "-" else Path(args.output)
    elif args.format == "jsonl" and not args.json:
        out = None  # JSONL goes to standard output by default
    else:
        out = run / f"ledger.{args.format}"
    with _open(args) as reader:
        n = export(reader, args.format, out)
    if args.json:
        _print_json({"ok": True, "events": n, "path": str(out), "format": args.format})
    elif out is not None:
        print(f"wrote {n} events to {out}")
    return 0


def cmd_redact(args: argparse.Namespace) -> int:
    """``audit redact``."""
    from trustgrpo.ledger.audit import redact

    run = _run_dir(args)
    changed = redact(run, args.blob, url=_url(args, run), reason=args.reason)
    if args.json:
        _print_json({"ok": True, "blob": args.blob, "redacted": changed})
    else:
        print(f"redacted {args.blob}" if changed else f"{args.blob} was already redacted")
    return 0


# --------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser, run: bool = True) -> None:
    if run:
        p.add_argument("run", metavar="RUN", help="run directory")
        p.add_argument(
            "--url",
            metavar="URL",
            help="PostgreSQL store (default: RUN/run.toml's ledger.url, else SQLite RUN/ledger.db)",
        )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_audit_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit`` and its sub-commands to a ``trustgrpo`` parser."""
    audit = subparsers.add_parser(
        "audit",
        help="verify, replay, trace and prove a run's ledger",
        description="Audit a run's ledger. Exit code 0 when everything holds, 1 when "
        "something does not, 2 for bad usage.",
    )
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "verify",
        help="recompute every leaf and the tree; check every checkpoint",
        description="Recompute every leaf hash and the Merkle tree (RFC 9162), check each "
        "checkpoint's signature and its consistency with the next, every blob's hash; report "
        "the first event or checkpoint that fails, with expected vs found.",
    )
    _common(p)
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="FILE",
        help="a checkpoint kept outside the ledger (repeatable): detects a log that "
        "was truncated or rewritten and re-signed",
    )
    p.add_argument("--key", metavar="FILE", help="trust this public key (default: RUN/ledger.pub)")
    p.add_argument(
        "--save-checkpoint",
        metavar="FILE",
        help="when everything verifies, write the latest checkpoint to FILE",
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="also parse every event and check it is canonical JSON (RFC 8785); slower",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="processes that scan a SQLite ledger of 50,000 events or more (default: one per "
        "CPU, at most 8; 1: this process only)",
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "replay",
        help="re-run the recorded verifiers on the stored inputs and compare",
        description="Re-run each recorded verifier on the stored inputs and compare status and "
        "score. Verifiers whose version no longer matches the installed code are reported as "
        "'version_mismatch', not replayed.",
    )
    _common(p)
    p.add_argument("--sample", type=int, metavar="N", help="replay N reward events at random")
    p.add_argument("--step", type=int, metavar="S", help="only reward events of step S")
    p.add_argument("--seed", type=int, default=0, help="seed for --sample (default 0)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "trace",
        help="the steps and reward events that shaped a checkpoint",
        description="List the steps and reward events that shaped the weights saved at a step, "
        "ranked by the weight of their advantage (|advantage|), with the feedback and override "
        "events that refer to them. Resumed runs are followed along their lineage.",
    )
    _common(p)
    p.add_argument(
        "--checkpoint",
        type=int,
        required=True,
        metavar="STEP",
        help="the training step whose checkpoint to trace",
    )
    p.add_argument("--top", type=int, default=10, metavar="K", help="how many to list (default 10)")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser(
        "proof",
        help="an inclusion proof of one event, checkable with the public key alone",
        description="Write an inclusion proof (RFC 9162) of event N against a signed "
        "checkpoint, with the event, the checkpoint note and the event's blobs. Check it with "
        "'trustgrpo audit check-proof PROOF.json --key ledger.pub'.",
    )
    _common(p)
    p.add_argument("--event", type=int, required=True, metavar="N", help="event index")
    p.add_argument(
        "--checkpoint",
        type=int,
        metavar="STEP",
        help="prove against the checkpoint signed at the end of this training step "
        "(default: the latest checkpoint)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write the proof here (default: stdout)")
    p.set_defaults(func=cmd_proof)

    p = sub.add_parser(
        "check-proof",
        help="verify an inclusion proof with a public key",
        description="Verify a proof written by 'audit proof': the checkpoint's signature, the "
        "inclusion path, and the included blobs. Needs only the proof and the public key.",
    )
    p.add_argument("proof", metavar="PROOF.json", help="the proof file")
    p.add_argument("--key", required=True, metavar="FILE", help="the log's public key (ledger.pub)")
    _common(p, run=False)
    p.set_defaults(func=cmd_check_proof)

    p = sub.add_parser(
        "export",
        help="write the events as JSONL or Parquet",
        description="Export every event. JSONL lines are the leaves themselves (canonical "
        "JSON), so SHA-256(0x00 || line) is each line's leaf hash.",
    )
    _common(p)
    p.add_argument("--format", required=True, choices=("jsonl", "parquet"), help="output format")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="output file; '-' is standard output (the default for JSONL without --json); "
        "otherwise RUN/ledger.jsonl or RUN/ledger.parquet",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "redact",
        help="erase a blob's content, keeping its hash",
        description="Erase a blob's content (a prompt, a completion...). Events commit to the "
        "blob's hash, so the ledger still verifies and still proves what was there.",
    )
    _common(p)
    p.add_argument("--blob", required=True, metavar="HASH", help="sha256:<hex> of the blob")
    p.add_argument("--reason", default="", help="why (kept with the redaction)")
    p.set_defaults(func=cmd_redact)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trustgrpo.ledger.cli audit ...`` (the same as ``trustgrpo audit ...``)."""
    parser = argparse.ArgumentParser(prog="trustgrpo")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"trustgrpo: error: {e}", file=sys.stderr)
        return 2
    except TrustGRPOError as e:
        print(f"trustgrpo: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())


add_commands = add_audit_commands
"""The name :mod:`trustgrpo.cli` looks for."""
