"""A reviewer's corrected reward flows back into training: the next time the policy writes the
same completion for the same prompt, the trainer uses the corrected reward and the ledger's
reward event says so, while the verifiers' own outcome stays on record (and replays)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from trustgrpo import Trainer
from trustgrpo.config import from_dict
from trustgrpo.ledger import Ledger, LedgerReader
from trustgrpo.ledger.events import override_body
from trustgrpo.ledger.replay import replay
from trustgrpo.policy.lm import build_char_tokenizer


def _config(tmp_path: Path, max_steps: int) -> object:
    data = tmp_path / "ones.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "answer": "1"}) + "\n" for p in ["0", "1"]))
    tok = tmp_path / "tok"
    build_char_tokenizer(["01"]).save_pretrained(tok)
    return from_dict(
        {
            "run": {"name": "r", "output_dir": str(tmp_path / "runs"), "seed": 1, "threads": 1},
            "policy": {
                "model": "tiny",
                "tokenizer": str(tok),
                "hidden_size": 16,
                "num_layers": 1,
                "num_heads": 2,
            },
            "data": {"train": str(data)},
            "generation": {"max_new_tokens": 1, "stop_at_eos": False},
            "grpo": {"num_generations": 8, "prompts_per_step": 2, "max_steps": max_steps},
            "verifiers": [{"type": "numeric", "extract": "full"}],
        }
    )


def _rewards(run_dir: Path) -> list[tuple[int, dict]]:
    with LedgerReader.open_readonly(run_dir) as reader:
        return [(e.index, e.body) for e in reader.events() if e.kind == "reward"]


def _text(run_dir: Path, blob: str) -> str | None:
    with LedgerReader.open_readonly(run_dir) as reader:
        return reader.get_text(blob)


def test_a_corrected_reward_is_used_and_recorded(tmp_path: Path) -> None:
    cfg = _config(tmp_path, max_steps=1)
    run_dir = Trainer(cfg, progress=False).train().run_dir
    first = _rewards(run_dir)
    # a reviewer says a wrong answer ("0") deserves full marks
    index, body = next((i, b) for i, b in first if _text(run_dir, b["completion_blob"]) == "0")
    assert body["reward"] == 0.0 and "override" not in body
    with Ledger.open(run_dir) as ledger:
        ledger.append("override", override_body(index, "ada", 1.0, "the rubric accepts 0"))

    later = dataclasses.replace(cfg, grpo=dataclasses.replace(cfg.grpo, max_steps=4))
    Trainer(later, resume=True, progress=False).train()
    after = [(i, b) for i, b in _rewards(run_dir) if b["step"] > 1]
    same = [
        b
        for _, b in after
        if b["prompt_blob"] == body["prompt_blob"]
        and b["completion_blob"] == body["completion_blob"]
    ]
    others = [b for _, b in after if b not in same]
    assert same, "the policy never wrote the corrected completion again"
    for b in same:
        assert b["reward"] == 1.0
        assert b["override"]["event"] == index and b["override"]["reviewer"] == "ada"
        assert b["outcomes"][0]["status"] == "incorrect"  # the verifier's word is kept
    assert all("override" not in b for b in others)
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["review/overridden"] for m in metrics) == len(same)
    # the recorded outcomes still replay: the correction replaced the reward, not the verdict
    with LedgerReader.open_readonly(run_dir) as reader:
        report = replay(reader)
    assert report.results and all(r.status == "match" for r in report.results)
