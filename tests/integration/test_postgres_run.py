"""A run whose ledger lives in PostgreSQL: a second run in the same place is refused, --resume
continues the same ledger, and the whole record verifies."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path

import pytest

from trustgrpo import Trainer
from trustgrpo.config import from_dict
from trustgrpo.errors import UserError
from trustgrpo.ledger import LedgerReader
from trustgrpo.ledger.audit import verify
from trustgrpo.policy.lm import build_char_tokenizer

PG_URL = os.environ.get("TRUSTGRPO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _fresh_schema() -> tuple[str, str]:
    """A URL selecting a new schema, and its name; skips when PostgreSQL is not there."""
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as e:  # any failure is the reason to skip
        pytest.skip(f"PostgreSQL at {PG_URL} unavailable: {e}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}", schema


def _drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _config(tmp_path: Path, url: str, steps: int) -> object:
    data = tmp_path / "ones.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "answer": "1"}) + "\n" for p in "01"))
    tok = tmp_path / "tok"
    build_char_tokenizer(["01"]).save_pretrained(tok)
    return from_dict(
        {
            "run": {"name": "pg", "output_dir": str(tmp_path / "runs"), "threads": 1},
            "policy": {
                "model": "tiny",
                "tokenizer": str(tok),
                "hidden_size": 16,
                "num_layers": 1,
                "num_heads": 2,
            },
            "data": {"train": str(data)},
            "generation": {"max_new_tokens": 1},
            "grpo": {
                "num_generations": 4,
                "prompts_per_step": 2,
                "max_steps": steps,
                "checkpoint_every": 1,
            },
            "ledger": {"url": url},
            "verifiers": [{"type": "numeric", "extract": "full"}],
        }
    )


def test_postgres_ledger_refuses_a_second_run_and_resumes(tmp_path: Path) -> None:
    url, schema = _fresh_schema()
    try:
        cfg = _config(tmp_path, url, steps=2)
        run_dir = Trainer(cfg, progress=False).train().run_dir
        assert not (run_dir / "ledger.db").exists()
        # the checkpoints are gone, but the PostgreSQL ledger still holds the run
        for d in (run_dir / "checkpoints").iterdir():
            for f in sorted(d.rglob("*"), reverse=True):
                f.unlink() if f.is_file() else f.rmdir()
            d.rmdir()
        with pytest.raises(UserError, match="already holds a run"):
            Trainer(cfg, progress=False)
        longer = dataclasses.replace(cfg, grpo=dataclasses.replace(cfg.grpo, max_steps=3))
        Trainer(longer, resume=True, progress=False).train()
        with LedgerReader.open_readonly(run_dir, url=url) as reader:
            kinds = [e.kind for e in reader.events()]
            assert kinds.count("run_started") == 1 and kinds.count("run_resumed") == 1
            assert verify(reader).ok
    finally:
        _drop(schema)
