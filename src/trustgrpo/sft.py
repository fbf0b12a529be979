"""Supervised warm start (``trustgrpo sft``): teach the policy the answer format before GRPO.

Trains on (prompt, ``sft.target_template`` filled with the answer, end-of-sequence) with the
loss on the target tokens only, then saves a regular Hugging Face model directory that a run
file can name as ``policy.model``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustgrpo.config import Config
from trustgrpo.errors import DataError
from trustgrpo.policy.lm import make_policy
from trustgrpo.rollout.text import file_digest, load_prompts
from trustgrpo.trainer import configure_threads


def _batch(tokenizer: Any, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, ...]:
    rows = []
    for prompt, target in pairs:
        p = tokenizer.encode(prompt, add_special_tokens=False)
        t = [*tokenizer.encode(target, add_special_tokens=False), tokenizer.eos_token_id]
        rows.append((p, t))
    width = max(len(p) + len(t) for p, t in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, t) in enumerate(rows):  # left padding, like generation
        seq = p + t
        ids[i, width - len(seq) :] = torch.tensor(seq)
        attn[i, width - len(seq) :] = 1
        labels[i, width - len(t) :] = torch.tensor(t)
    return ids, attn, labels


def warm_start(config: Config, out_dir: str | Path, *, progress: bool = True) -> Path:
    """Train ``config.policy`` supervisedly on ``config.data.train``; save to ``out_dir``."""
    from tqdm.auto import tqdm

    cfg = config
    out = Path(out_dir)
    configure_threads(cfg.run.threads)
    prompts = load_prompts(cfg.data.train, cfg.data)
    try:
        pairs = [
            (p.text, cfg.sft.target_template.format(**p.metadata, answer=p.reference))
            for p in prompts
            if p.reference is not None
        ]
    except KeyError as e:
        raise DataError(
            f"sft.target_template: names column {e} which {cfg.data.train} does not have"
        ) from None
    if not pairs:
        raise DataError(f"{cfg.data.train}: no rows with a reference answer to learn from")
    texts = [a + b for a, b in pairs]
    model: Any
    model, tokenizer = make_policy(cfg.policy, texts, cfg.run.seed)
    s = cfg.sft
    opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.0)
    warm = max(1, s.steps // 20)

    def lr_at(i: int) -> float:
        if i < warm:
            return (i + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, s.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = np.random.default_rng(cfg.run.seed)
    model.train()
    loss_value = float("nan")
    bar = tqdm(range(s.steps), disable=not progress, desc="sft", unit="step")
    for _ in bar:
        idx = rng.integers(0, len(pairs), size=s.batch_size)
        ids, attn, labels = _batch(tokenizer, [pairs[int(i)] for i in idx])
        positions = (attn.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=attn, position_ids=positions).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        bar.set_postfix(loss=f"{loss_value:.3f}")
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "sft_state.json").write_text(
        json.dumps(
            {
                "steps": s.steps,
                "final_loss": loss_value,
                "seed": cfg.run.seed,
                "data": {"path": cfg.data.train, "sha256": file_digest(cfg.data.train)},
            },
            indent=1,
        )
    )
    return out
