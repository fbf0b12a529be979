"""The trainer end to end on tiny models: it learns, it is reproducible, it resumes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from trustgrpo import Callback, RunInfo, StepBatch, Trainer
from trustgrpo.config import from_dict
from trustgrpo.errors import UserError
from trustgrpo.policy.lm import build_char_tokenizer


def _write_task(tmp_path: Path) -> tuple[Path, Path]:
    """Prompts whose answer is always "1", and a tokenizer over "0" and "1" only."""
    data = tmp_path / "ones.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": p, "answer": "1"}) + "\n"
            for p in ["0", "1", "00", "11", "01", "10"]
        )
    )
    tok_dir = tmp_path / "tok"
    build_char_tokenizer(["01"]).save_pretrained(tok_dir)
    return data, tok_dir


def _config(tmp_path: Path, name: str = "run", **grpo: object) -> object:
    data, tok = _write_task(tmp_path)
    raw = {
        "run": {"name": name, "output_dir": str(tmp_path / "runs"), "seed": 3, "threads": 1},
        "policy": {
            "model": "tiny",
            "tokenizer": str(tok),
            "hidden_size": 16,
            "num_layers": 1,
            "num_heads": 2,
        },
        "data": {"train": str(data), "eval": str(data)},
        "generation": {"max_new_tokens": 1},
        "grpo": {
            "num_generations": 8,
            "prompts_per_step": 4,
            "max_steps": 25,
            "learning_rate": 1e-2,
            **grpo,
        },
        "ledger": {"enabled": False},
        "verifiers": [{"type": "numeric", "extract": "full"}],
    }
    return from_dict(raw)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_mean_reward_rises_on_a_trivially_learnable_task(tmp_path: Path) -> None:
    result = Trainer(_config(tmp_path), progress=False).train()
    rewards = [m["reward/mean"] for m in _metrics(result.run_dir)]
    assert len(rewards) == 25
    assert np.mean(rewards[-5:]) > np.mean(rewards[:5]) + 0.3, rewards
    assert result.eval_accuracy is not None and result.eval_accuracy > 0.9
    step = _metrics(result.run_dir)[-1]
    for phase in ("rollout", "verify", "advantage", "record", "monitor", "update", "checkpoint"):
        assert f"time/{phase}" in step
    ckpt = result.run_dir / "checkpoints" / "step-25"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "optimizer.pt").is_file()


def _fingerprint(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in m.items() if not k.startswith(("time/", "eval/"))}
        for m in _metrics(run_dir)
    ]


def _weights(run_dir: Path, step: int) -> bytes:
    return (run_dir / "checkpoints" / f"step-{step}" / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    "variant", [{}, {"beta": 0.04, "num_iterations": 2, "importance_sampling": "sequence"}]
)
def test_same_seed_same_run_bitwise(tmp_path: Path, variant: dict) -> None:
    a = Trainer(_config(tmp_path, "a", max_steps=4, **variant), progress=False).train()
    b = Trainer(_config(tmp_path, "b", max_steps=4, **variant), progress=False).train()
    assert _fingerprint(a.run_dir) == _fingerprint(b.run_dir)
    assert _weights(a.run_dir, 4) == _weights(b.run_dir, 4)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    full = Trainer(
        _config(tmp_path, "full", max_steps=6, checkpoint_every=3), progress=False
    ).train()
    cut = _config(tmp_path, "cut", max_steps=3, checkpoint_every=3)
    Trainer(cut, progress=False).train()
    longer = dataclasses.replace(cut, grpo=dataclasses.replace(cut.grpo, max_steps=6))
    with pytest.raises(UserError, match="--resume"):
        Trainer(longer, progress=False)
    resumed = Trainer(longer, resume=True, progress=False).train()
    assert resumed.steps == 6
    assert _fingerprint(resumed.run_dir) == _fingerprint(full.run_dir)
    assert _weights(resumed.run_dir, 6) == _weights(full.run_dir, 6)


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step
        self.seen: list[str] = []

    def on_train_start(self, run: RunInfo) -> None:
        self.seen.append("start")
        assert run.provenance["model"]["initial_sha256"]

    def on_step_rewards(self, run: RunInfo, batch: StepBatch) -> None:
        assert len(batch.samples) == len(batch.outcomes) == batch.rewards.size == 32
        self.seen.append("rewards")

    def on_step_end(self, run: RunInfo, batch: StepBatch) -> bool:
        assert "loss" in batch.metrics
        return batch.step < self.step

    def on_train_end(self, run: RunInfo, result: dict) -> None:
        self.seen.append("end")


def test_callback_can_stop_training(tmp_path: Path) -> None:
    cb = _StopAt(2)
    result = Trainer(_config(tmp_path), callbacks=[cb], progress=False).train()
    assert result.stopped_early and result.steps == 2
    assert cb.seen == ["start", "rewards", "rewards", "end"]
    assert (result.run_dir / "checkpoints" / "step-2" / "model.safetensors").is_file()


def test_latest_checkpoint_ignores_a_half_written_one(tmp_path: Path) -> None:
    from trustgrpo.checkpoint import STATE_FILE, latest

    for name in ("step-3", "step-12", "step-40.tmp", "step-50"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    for name in ("step-3", "step-12", "step-40.tmp"):
        (tmp_path / "checkpoints" / name / STATE_FILE).write_text("{}")
    # step-50 has no state file (incomplete), step-40.tmp is a crash leftover
    assert latest(tmp_path) == tmp_path / "checkpoints" / "step-12"


def test_greedy_completions_are_reused_until_the_weights_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The held-out monitor and the periodic evaluation decode the same prompts: with the
    same weights the second asks no generation, after an update it decodes again."""
    import torch

    import trustgrpo.evaluation as evaluation

    calls: list[int] = []
    real = evaluation.complete

    def counting(model: object, tokenizer: object, prompts: list, *a: object, **k: object) -> list:
        calls.append(len(prompts))
        return real(model, tokenizer, prompts, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluation, "complete", counting)
    trainer = Trainer(_config(tmp_path), progress=False)
    prompts = list(trainer.eval_prompts)
    first = trainer.complete(prompts)
    assert calls == [len(prompts)]
    again = trainer.complete(prompts[:3] + prompts)  # a subset, repeated: all known
    assert calls == [len(prompts)]
    assert [s.completion for s in again[3:]] == [s.completion for s in first]
    assert [(s.prompt_id, s.group_id) for s in again[:4]] == [
        (p.id, i) for i, p in enumerate(prompts[:3] + prompts[:1])
    ]
    accuracy = trainer.evaluate()["eval/accuracy"]
    assert calls == [len(prompts)]  # evaluation reads the same completions
    with torch.no_grad():  # an optimiser step changes the weights in place
        for p in trainer.backend.model.parameters():
            p.add_(0.5)
    trainer.complete(prompts)
    assert calls == [len(prompts), len(prompts)]
    assert 0.0 <= accuracy <= 1.0
