"""Tiny training runs for the monitor scenarios (a tokenizer over "01", a 16-wide model).

The folder is put on ``sys.path``: ``monitor_flaws`` (deliberately flawed reward functions)
is importable as a top-level module, so that run files can name ``monitor_flaws:<function>``,
and so are ``monitor_tasks`` and ``monitor_synthetic``. Their names are unique on purpose:
other test folders put themselves on ``sys.path`` too, so a shared name (``conftest``,
``helpers``) would resolve to whichever folder came first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from monitor_tasks import write_task  # noqa: E402  (needs the folder on sys.path)


@pytest.fixture
def tiny(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``tiny(kind, verifiers, steps=..., monitors=..., **sections)``: a raw run file (dict)
    for a tiny run on task ``kind`` in ``tmp_path``."""
    from trustgrpo.policy.lm import build_char_tokenizer

    tok = tmp_path / "tok"
    build_char_tokenizer(["01"]).save_pretrained(tok)

    def make(
        kind: str = "ones",
        verifiers: list[dict[str, Any]] | None = None,
        *,
        name: str = "run",
        steps: int = 40,
        seed: int = 0,
        lr: float = 3e-3,
        max_new_tokens: int = 2,
        monitors: dict[str, Any] | None = None,
        **sections: Any,
    ) -> dict[str, Any]:
        data = write_task(tmp_path, kind)
        raw: dict[str, Any] = {
            "run": {"name": name, "output_dir": str(tmp_path / "runs"), "seed": seed, "threads": 1},
            "policy": {
                "model": "tiny",
                "tokenizer": str(tok),
                "hidden_size": 16,
                "num_layers": 1,
                "num_heads": 2,
            },
            "data": {"train": str(data), "eval": str(data)},
            "generation": {"max_new_tokens": max_new_tokens},
            "grpo": {
                "num_generations": 8,
                "prompts_per_step": 4,
                "max_steps": steps,
                "learning_rate": lr,
            },
            "verifiers": verifiers or [{"type": "numeric", "extract": "full"}],
            "monitors": monitors or {},
        }
        for key, value in sections.items():
            raw.setdefault(key, {}).update(value)
        return raw

    return make
