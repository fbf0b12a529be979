"""``trustgrpo review serve`` in a subprocess: binds 127.0.0.1 by default, answers, and the
sub-commands share the ``review`` group with ``review resolve``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from trustgrpo.cli import build_parser, main
from trustgrpo.review.cli import rewrite_argv

pytest.importorskip("fastapi")


def test_review_group_holds_every_subcommand() -> None:
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    review = top.choices["review"]
    sub = next(a for a in review._actions if isinstance(a, argparse._SubParsersAction))
    assert {"resolve", "serve", "add-reviewer", "remove-reviewer", "export-cases"} <= set(
        sub.choices
    )
    args = parser.parse_args(["review", "serve", "runs/x"])
    assert (args.host, args.port, args.random_rate) == ("127.0.0.1", 8000, 0.05)


def test_rewrite_argv(tmp_path: Path) -> None:
    run = str(tmp_path)
    assert rewrite_argv(["review", run, "--port", "9"]) == ["review", "serve", run, "--port", "9"]
    for same in (
        ["review", "resolve", run, "3", "--decision", "halt"],
        ["review", "--help"],
        ["review", str(tmp_path / "missing")],
        ["train", run],
    ):
        assert rewrite_argv(same) == same


def test_serve_binds_loopback_and_answers(
    synthetic_run: tuple[Path, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    real_run = synthetic_run[0]
    assert main(["review", "serve", str(real_run.parent / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert main(["review", "serve", str(real_run), "--random-rate", "2"]) == 2
    assert "random_rate" in capsys.readouterr().err

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trustgrpo.cli",
            "review",
            "serve",
            str(real_run),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        body = _get_when_up(f"http://127.0.0.1:{port}/login", proc)
        assert "Log in" in body
        listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
        local = {line.split()[1] for line in listening if line.split()[3] == "0A"}
        assert f"0100007F:{port:04X}" in local  # 127.0.0.1, not 0.0.0.0
        assert f"00000000:{port:04X}" not in local
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"serving {real_run} on http://127.0.0.1:{port}" in err


def _get_when_up(url: str, proc: Any, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return str(r.read().decode())
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.1)
