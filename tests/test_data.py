"""Prompt data: JSONL, Parquet and saved Hugging Face datasets; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trustgrpo.config import DataConfig
from trustgrpo.errors import DataError
from trustgrpo.policy.lm import build_char_tokenizer
from trustgrpo.rollout.text import file_digest, load_prompts, step_prompts
from trustgrpo.tasks.arithmetic import make_problems

ROWS = [
    {"q": "1+1=", "a": "2", "topic": "add", "uid": "x1"},
    {"q": "3-1=", "a": "2", "topic": "sub", "uid": "x2"},
]
CFG = DataConfig(prompt_column="q", answer_column="a", id_column="uid")


def _jsonl(tmp_path: Path) -> Path:
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return p


def test_jsonl_parquet_and_hf_dataset_agree(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "hf"))
    loaded = [
        load_prompts(p, CFG) for p in (_jsonl(tmp_path), tmp_path / "d.parquet", tmp_path / "hf")
    ]
    assert loaded[0] == loaded[1] == loaded[2]
    first = loaded[0][0]
    assert (first.id, first.text, first.reference) == ("x1", "1+1=", "2")
    assert first.metadata == {"topic": "add"}


def test_missing_column_names_the_file_and_the_columns(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"missing column\(s\) question .*columns: a, q, topic, uid"
    ):
        load_prompts(_jsonl(tmp_path), DataConfig(prompt_column="question", answer_column="a"))


def test_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "1"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        load_prompts(bad, CFG)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError, match="broken.parquet: cannot read"):
        load_prompts(broken, CFG)
    with pytest.raises(DataError, match="data file not found"):
        load_prompts(tmp_path / "none.jsonl", CFG)
    with pytest.raises(DataError, match="expected a .jsonl, .parquet"):
        load_prompts(_write(tmp_path / "x.csv", "a,b"), CFG)


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_chat_template_is_applied(tmp_path: Path) -> None:
    tok = build_char_tokenizer(["abc"])
    cfg = DataConfig(
        prompt_column="q", answer_column="a", chat_template=True, system_prompt="be brief"
    )
    (p, _) = load_prompts(_jsonl(tmp_path), cfg, tok)
    assert p.text == "system: be brief\nuser: 1+1=\nassistant:"


def test_step_prompts_are_a_function_of_seed_and_step() -> None:
    train, _ = make_problems(10, 0, seed=0)
    from trustgrpo.rollout.text import Prompt

    prompts = [Prompt(r["id"], r["prompt"], r["answer"]) for r in train]
    a = [p.id for s in range(1, 6) for p in step_prompts(prompts, s, 4, seed=1)]
    b = [p.id for s in range(1, 6) for p in step_prompts(prompts, s, 4, seed=1)]
    assert a == b
    # each epoch is a permutation: the first 10 draws cover every prompt once
    assert sorted(a[:10]) == sorted(p.id for p in prompts)
    assert a != [p.id for s in range(1, 6) for p in step_prompts(prompts, s, 4, seed=2)]


def test_digest_changes_with_content(tmp_path: Path) -> None:
    p = _jsonl(tmp_path)
    d1 = file_digest(p)
    p.write_text(p.read_text() + "\n")
    assert file_digest(p) != d1


def test_arithmetic_splits_are_disjoint() -> None:
    train, held = make_problems(500, 100, seed=0, teacher_noise=0.5)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}
    for r in train:
        assert eval(r["prompt"][:-1]) == int(r["answer"])
        assert r["teacher"] in (r["answer"], r["answer"] + "0")
    assert 0.4 < sum(r["teacher"] != r["answer"] for r in train) / len(train) < 0.6
