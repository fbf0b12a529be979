"""Regenerate the run-file reference in README.md from the config docstrings (``make docs``)."""

from __future__ import annotations

import re
from pathlib import Path

from trustgrpo.config import reference_markdown

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def render(readme: str) -> str:
    """README text with the reference section replaced by the current one."""
    block = f"{START}\n{reference_markdown().strip()}\n{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, readme, flags=re.S)


if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "README.md"
    path.write_text(render(path.read_text()))
    print(f"updated {path}")
