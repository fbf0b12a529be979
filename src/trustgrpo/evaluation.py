"""Held-out evaluation: greedy decoding scored by the run's own verifiers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustgrpo.config import Config
from trustgrpo.policy.lm import encode_prompts, generate, load_pretrained
from trustgrpo.rollout.text import Prompt, load_prompts
from trustgrpo.verifiers.base import Sample


def complete(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    config: Config,
    *,
    batch_size: int = 128,
) -> list[Sample]:
    """Greedy completions of ``prompts`` as samples (group i, index 0), ready to be scored."""
    samples: list[Sample] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids, mask = encode_prompts(
            tokenizer, [p.text for p in chunk], config.data.max_prompt_tokens
        )
        out = generate(
            model,
            ids,
            mask,
            max_new_tokens=config.generation.max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            temperature=0.0,
        )
        texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
        lengths = out.completion_mask.sum(-1).tolist()
        samples.extend(
            Sample(
                p.id,
                start + i,
                0,
                p.text,
                t,
                p.reference,
                p.metadata,
                num_tokens=int(n),
                truncated=bool(tr),
            )
            for i, (p, t, n, tr) in enumerate(
                zip(chunk, texts, lengths, out.truncated.tolist(), strict=True)
            )
        )
    return samples


def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    reward: Any,
    prompts: Sequence[Prompt],
    config: Config,
    *,
    batch_size: int = 128,
) -> dict[str, float]:
    """Greedy decoding on ``prompts``; accuracy is the share of samples for which every
    verifier that is not shaping says ``correct``."""
    if not prompts:
        return {}
    return score_completions(
        reward, complete(model, tokenizer, prompts, config, batch_size=batch_size)
    )


def score_completions(reward: Any, samples: Sequence[Sample]) -> dict[str, float]:
    """``eval/accuracy`` (every non-shaping verifier says ``correct``) and ``eval/reward_mean``
    of greedy completions."""
    if not samples:
        return {}
    shaping = [c.role == "shaping" for c in reward.components]
    result = reward.score(samples)
    correct = sum(
        all(o.status == "correct" for o, s in zip(outs, shaping, strict=True) if not s)
        for outs in result.outcomes
    )
    scored = result.rewards[~np.isnan(result.rewards)]
    return {
        "eval/accuracy": correct / len(samples),
        "eval/reward_mean": float(scored.mean()) if scored.size else float("nan"),
    }


def evaluate_model(
    config: Config, model_dir: str | Path, data: str | Path | None = None
) -> dict[str, float]:
    """Load a model directory (or checkpoint) and evaluate it on ``data`` or ``data.eval``."""
    from trustgrpo.errors import UserError
    from trustgrpo.trainer import configure_threads
    from trustgrpo.verifiers import build_reward

    path = data or config.data.eval
    if not path:
        raise UserError("eval: no prompts (pass --data FILE or set data.eval in the run file)")
    configure_threads(config.run.threads)
    model, tokenizer = load_pretrained(model_dir)
    prompts = load_prompts(path, config.data, tokenizer)
    return evaluate(model, tokenizer, build_reward(config), prompts, config)
