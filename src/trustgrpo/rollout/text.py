"""Prompt datasets for language-model GRPO: JSONL, Parquet, or a Hugging Face dataset on disk.

A dataset is a list of :class:`Prompt` rows: an id, the prompt text (after the chat template
when the run file asks for it), the reference answer, and every other column as metadata for
verifiers and monitors. Which prompts a step uses depends only on the seed and the step number,
so a resumed run sees exactly the prompts an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustgrpo.config import DataConfig
from trustgrpo.errors import DataError


@dataclass(frozen=True)
class Prompt:
    """One row of a prompt dataset."""

    id: str
    text: str
    reference: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file, a Parquet file, or a dataset directory written by
    ``datasets.Dataset.save_to_disk`` (read with pyarrow; ``datasets`` is not needed)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: data file not found")
    try:
        if p.is_dir():
            return _read_hf_dir(p)
        if p.suffix in (".jsonl", ".json"):
            return _read_jsonl(p)
        if p.suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(p).to_pylist()
    except DataError:
        raise
    except Exception as e:  # an unreadable file of a known kind
        raise DataError(f"{p}: cannot read ({type(e).__name__}: {e})") from None
    raise DataError(
        f"{p}: expected a .jsonl, .parquet file or a saved Hugging Face dataset directory"
    )


def _read_jsonl(p: Path) -> list[dict[str, Any]]:
    rows = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{p}:{n}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _read_hf_dir(p: Path) -> list[dict[str, Any]]:
    import pyarrow as pa

    files = sorted(p.glob("data-*.arrow")) or sorted(p.glob("*.arrow"))
    if not files:
        raise DataError(f"{p}: directory holds no .arrow files (expected Dataset.save_to_disk)")
    rows: list[dict[str, Any]] = []
    for f in files:
        with pa.memory_map(str(f)) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return rows


def file_digest(path: str | Path) -> str:
    """SHA-256 of a data file, or of every file of a dataset directory in name order."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def load_prompts(path: str | Path, cfg: DataConfig, tokenizer: Any = None) -> list[Prompt]:
    """Read a prompt file and turn its rows into :class:`Prompt` objects."""
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    needed = [cfg.prompt_column] + [c for c in (cfg.answer_column, cfg.id_column) if c]
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        have = ", ".join(sorted(rows[0]))
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (columns: {have})")
    out = []
    for i, row in enumerate(rows):
        text = row.get(cfg.prompt_column)
        if not isinstance(text, str):
            raise DataError(
                f"{path}: row {i}: column {cfg.prompt_column!r} expected a string, got "
                f"{type(text).__name__}"
            )
        if cfg.chat_template:
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise DataError("data.chat_template: the tokenizer has no chat template")
            messages = (
                [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
            )
            messages.append({"role": "user", "content": text})
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        ref = row.get(cfg.answer_column) if cfg.answer_column else None
        pid = str(row[cfg.id_column]) if cfg.id_column else str(i)
        skip = {cfg.prompt_column, cfg.answer_column, cfg.id_column}
        meta = {k: v for k, v in row.items() if k not in skip}
        out.append(Prompt(pid, text, None if ref is None else str(ref), meta))
    return out


def step_prompts(prompts: Sequence[Prompt], step: int, per_step: int, seed: int) -> list[Prompt]:
    """The prompts of a (1-based) step: consecutive slices of seeded epoch permutations."""
    n = len(prompts)
    start = (step - 1) * per_step
    perms: dict[int, np.ndarray] = {}
    picked = []
    for k in range(start, start + per_step):
        epoch, pos = divmod(k, n)
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        picked.append(prompts[int(perms[epoch][pos])])
    return picked
