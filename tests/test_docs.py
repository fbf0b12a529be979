"""Docs enforced by tests: every CLI command has help and appears in the README; the run-file
reference in the README is the one the code generates; the public API is what __all__ says."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest

import trustgrpo
from trustgrpo.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands(
    parser: argparse.ArgumentParser, prefix: str = "trustgrpo"
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((f"{prefix} {name}", sub))
                out.extend(_commands(sub, f"{prefix} {name}"))
    return out


def test_every_command_is_in_the_readme_with_help() -> None:
    commands = _commands(build_parser())
    assert len(commands) >= 5
    for name, sub in commands:
        assert f"`{name}`" in README, f"{name} is not documented in README.md"
        assert sub.description or sub.format_help().strip(), f"{name} has no help"
        assert "usage:" in sub.format_help()


def test_help_runs_for_every_command() -> None:
    for name, _ in _commands(build_parser()):
        argv = [*name.split()[1:], "--help"]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0, name
        assert "usage: trustgrpo" in buf.getvalue()


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trustgrpo.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("trustgrpo ")


def test_readme_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "update_readme", ROOT / "tools" / "update_readme.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render(README) == README, "run `make docs` to regenerate the README reference"


def test_public_api() -> None:
    assert sorted(trustgrpo.__all__) == sorted(set(trustgrpo.__all__))
    for name in trustgrpo.__all__:
        assert hasattr(trustgrpo, name), name
    assert {"Trainer", "Config", "load", "Outcome", "Sample", "Callback"} <= set(trustgrpo.__all__)
    assert set(trustgrpo.__all__) == {*trustgrpo._EXPORTS, "__version__"}
