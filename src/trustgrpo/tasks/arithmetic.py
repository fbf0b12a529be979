"""Integer arithmetic prompts (``"37+48="`` → ``"85"``), generated from a seed.

Train and held-out splits never share a problem. Each row has ``id``, ``prompt``, ``answer``,
``op`` (a metadata column, e.g. for per-category monitors) and ``teacher``: a demonstration
from a sloppy teacher that appends a stray ``0`` to the answer with probability
``teacher_noise``. The demo warm-starts on ``teacher`` (imitation learns the habit) and GRPO,
rewarded by the exact answer, removes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

OPS = ("+", "-")


def make_problems(
    n_train: int,
    n_eval: int,
    seed: int = 0,
    max_operand: int = 99,
    ops: tuple[str, ...] = OPS,
    teacher_noise: float = 0.0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Distinct problems split into train and held-out rows.

    >>> train, held = make_problems(3, 2, seed=1)
    >>> len(train), len(held), {r["op"] for r in train + held} <= {"+", "-"}
    (3, 2, True)
    """
    space = len(ops) * (max_operand + 1) ** 2
    if n_train + n_eval > space:
        raise ValueError(
            f"n_train + n_eval: expected at most {space} problems, got {n_train + n_eval}"
        )
    rng = np.random.default_rng(seed)
    codes = rng.choice(space, size=n_train + n_eval, replace=False)
    sloppy = rng.random(n_train + n_eval) < teacher_noise
    rows = []
    for k, code in enumerate(codes.tolist()):
        op_i, rest = divmod(code, (max_operand + 1) ** 2)
        a, b = divmod(rest, max_operand + 1)
        op = ops[op_i]
        value = a + b if op == "+" else a - b if op == "-" else a * b
        teacher = f"{value}0" if sloppy[k] else str(value)
        rows.append(
            {
                "id": f"arith-{k}",
                "prompt": f"{a}{op}{b}=",
                "answer": str(value),
                "op": op,
                "teacher": teacher,
            }
        )
    return rows[:n_train], rows[n_train:]


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows as JSON lines (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_dataset(
    folder: Path,
    n_train: int = 4000,
    n_eval: int = 300,
    seed: int = 0,
    max_operand: int = 99,
    teacher_noise: float = 0.6,
) -> tuple[Path, Path]:
    """Write ``train.jsonl`` and ``heldout.jsonl`` into ``folder``."""
    train, held = make_problems(n_train, n_eval, seed, max_operand, teacher_noise=teacher_noise)
    return write_jsonl(train, folder / "train.jsonl"), write_jsonl(held, folder / "heldout.jsonl")
