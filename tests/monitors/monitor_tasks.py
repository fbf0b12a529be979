"""Small data files for the monitor tests (a module with a unique name: every test folder
of the suite shares one ``sys.path``)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any


def write_task(folder: Path, kind: str, n: int = 32, seed: int = 0) -> Path:
    """A prompt file: ``ones`` (the answer is always "1": learnable), ``copy`` (the answer is
    the prompt's first character: too hard for the tiny model, success stays near 1/2),
    ``two`` (the answer "2" cannot be written with the tokenizer: accuracy stays 0)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        p = "".join(rng.choice("01") for _ in range(rng.randint(2, 5)))
        answer = {"ones": "1", "copy": p[0], "two": "2"}[kind]
        rows.append({"prompt": p, "answer": answer, "kind": "ab"[i % 2]})
    path = folder / f"{kind}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
