"""``trustgrpo`` command line: parse, build a config, call the library. Nothing else lives here.

Exit codes: 0 success; 1 a check failed (audit); 2 bad input (the message names the field or
file); 3 training was halted by a monitor or callback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from trustgrpo.errors import TrainingStopped, TrustGRPOError, UserError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_file", metavar="RUN.toml", help="the run file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a run-file value, e.g. --set grpo.learning_rate=1e-5 (repeatable)",
    )


def _load(args: argparse.Namespace, out: str | None = None) -> object:
    from trustgrpo.config import load

    overrides = list(args.overrides)
    if out:
        path = Path(out)
        overrides += [f'run.output_dir="{path.parent}"', f'run.name="{path.name}"']
    return load(args.run_file, overrides)


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) -> (host, port)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise UserError(f"--review: expected HOST:PORT (e.g. 127.0.0.1:8000), found {text!r}")
    return host.strip("[]"), int(port)


def cmd_train(args: argparse.Namespace) -> int:
    from trustgrpo.trainer import Trainer

    config = _load(args, args.out)
    address = _host_port(args.review) if args.review else None
    trainer = Trainer(config, resume=args.resume, progress=not args.quiet)  # type: ignore[arg-type]
    server = None
    if address is not None:
        from trustgrpo.review.server import serve_in_background

        led = trainer.config.ledger
        server = serve_in_background(
            trainer.run_dir,
            *address,
            url=led.url or None,
            signing_key=Path(led.signing_key) if led.signing_key else None,
        )
        print(f"review page: {server.url}  (trustgrpo review add-reviewer lets people in)")
        sys.stdout.flush()
    try:
        result = trainer.train()
    finally:
        if server is not None:
            server.stop()
    summary = {
        "run_dir": str(result.run_dir),
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "eval_accuracy": result.eval_accuracy,
        "reward_mean": result.metrics.get("reward/mean"),
    }
    print(json.dumps(summary) if args.json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 3 if result.stopped_early else 0


def cmd_sft(args: argparse.Namespace) -> int:
    from trustgrpo.sft import warm_start

    config = _load(args)
    out = warm_start(config, args.out, progress=not args.quiet)  # type: ignore[arg-type]
    print(f"saved warm-start model to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from trustgrpo.evaluation import evaluate_model

    config = _load(args)
    metrics = evaluate_model(config, args.model, data=args.data)  # type: ignore[arg-type]
    print(
        json.dumps(metrics) if args.json else "\n".join(f"{k}: {v:.4f}" for k, v in metrics.items())
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from trustgrpo.demo import run_demo

    run_demo(Path(args.out), progress=not args.quiet, steps=args.steps)
    return 0


def cmd_config_help(args: argparse.Namespace) -> int:
    from trustgrpo.config import reference_markdown

    print(reference_markdown())
    return 0


#: Modules that add command groups with ``add_commands(subparsers)``. Each keeps optional
#: dependencies (e.g. the review server's) out of its module scope, so every command is listed.
COMMAND_MODULES = (
    "trustgrpo.ledger.cli",  # trustgrpo audit ...
    "trustgrpo.monitors.cli",  # trustgrpo monitor, trustgrpo review resolve
    "trustgrpo.report_cli",  # trustgrpo report
    "trustgrpo.review.cli",  # trustgrpo review ...
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (tests check that every command is in the README)."""
    parser = argparse.ArgumentParser(
        prog="trustgrpo",
        description="GRPO with verifiable, auditable rewards.",
    )
    from trustgrpo import __version__

    parser.add_argument("--version", action="version", version=f"trustgrpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "train",
        help="train a policy with GRPO from a run file",
        description="Train a policy with GRPO from a run file.",
    )
    _add_config_args(p)
    p.add_argument("--out", metavar="DIR", help="run directory (default: run.output_dir/run.name)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--review",
        nargs="?",
        const="127.0.0.1:8000",
        metavar="HOST:PORT",
        help="serve the review page and live dashboard while training "
        "(default 127.0.0.1:8000; needs the [review] extra)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "sft",
        help="supervised warm start of the run file's policy",
        description="Supervised warm start: train the policy on prompt → answer "
        "and save a Hugging Face model directory.",
    )
    _add_config_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="where to save the model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser(
        "eval",
        help="held-out accuracy of a model with the run file's verifiers",
        description="Greedy held-out evaluation of a model directory or "
        "checkpoint with the run file's verifiers.",
    )
    _add_config_args(p)
    p.add_argument("--model", required=True, metavar="DIR", help="model directory or checkpoint")
    p.add_argument("--data", metavar="FILE", help="prompts (default: data.eval)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "demo",
        help="the embedded demo: warm start, then GRPO on arithmetic",
        description="Generate an arithmetic task, warm-start a tiny model, train "
        "it with GRPO, and print held-out accuracy before and after.",
    )
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run directory")
    p.add_argument("--steps", type=int, default=None, help="GRPO steps (default: the demo's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "config-help",
        help="print the run-file reference",
        description="Print every run-file section and field with its default.",
    )
    p.set_defaults(func=cmd_config_help)

    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:  # that part is not built (yet): no commands from it
            if not e.name or not module_name.startswith(e.name):
                raise
            continue
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trustgrpo`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"trustgrpo: error: {e}", file=sys.stderr)
        return 2
    except TrainingStopped as e:
        print(f"trustgrpo: training stopped: {e}", file=sys.stderr)
        return 3
    except TrustGRPOError as e:
        print(f"trustgrpo: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trustgrpo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
