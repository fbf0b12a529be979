"""The language-model backend: prompts in, G sampled completions per prompt, verifiers score.

A sequence is a completion and a position a token: ``logprobs`` re-scores the completion
tokens with the policy at the generation temperature (``policy.lm.token_logprobs``).
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustgrpo.backend import Batch, step_seed
from trustgrpo.config import Config
from trustgrpo.policy.lm import (
    build_tiny_model,
    encode_prompts,
    generate,
    load_pretrained,
    make_policy,
    state_digest,
    token_logprobs,
)
from trustgrpo.rollout.text import Prompt, file_digest, load_prompts, step_prompts
from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.compose import RewardResult


class LMBackend:
    """Causal language models (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        from trustgrpo.verifiers import build_reward

        cfg = self.config = config
        self.reward = build_reward(cfg)
        self.train_prompts = load_prompts(cfg.data.train, cfg.data)
        self.eval_prompts = load_prompts(cfg.data.eval, cfg.data) if cfg.data.eval else []
        texts = [p.text + (p.reference or "") for p in self.train_prompts + self.eval_prompts]
        self.model: Any
        self.model, self.tokenizer = make_policy(cfg.policy, texts, cfg.run.seed)
        if cfg.data.chat_template:  # now that the tokenizer exists
            self.train_prompts = load_prompts(cfg.data.train, cfg.data, self.tokenizer)
            if cfg.data.eval:
                self.eval_prompts = load_prompts(cfg.data.eval, cfg.data, self.tokenizer)
        self.initial_digest = state_digest(self.model)
        self.max_length = cfg.generation.max_new_tokens
        self._greedy: dict[str, tuple[str, int, bool]] = {}
        """Greedy completions by prompt text, for the weights of ``_greedy_version``."""
        self._greedy_version: tuple[tuple[int, int], ...] = ()
        """The parameters (and their in-place version counters) when ``_greedy`` was filled:
        an optimiser step or a loaded checkpoint changes it."""

    # ------------------------------------------------------------------ rollout

    def rollout(self, step: int) -> Batch:
        cfg = self.config
        g = cfg.grpo
        prompts = step_prompts(self.train_prompts, step, g.prompts_per_step, cfg.run.seed)
        gcfg = cfg.generation
        n = g.num_generations
        ids, mask = encode_prompts(
            self.tokenizer, [p.text for p in prompts], cfg.data.max_prompt_tokens
        )
        gen = torch.Generator().manual_seed(step_seed(cfg.run.seed, step))
        rollout = generate(
            self.model,
            ids,
            mask,
            max_new_tokens=gcfg.max_new_tokens,
            eos_token_id=self.tokenizer.eos_token_id if gcfg.stop_at_eos else None,
            pad_token_id=self.tokenizer.pad_token_id,
            temperature=gcfg.temperature,
            top_p=gcfg.top_p,
            generator=gen,
            num_samples=n,
        )
        lengths = rollout.completion_mask.sum(-1).tolist()
        completions = self.tokenizer.batch_decode(rollout.completion_ids, skip_special_tokens=True)
        samples = [
            Sample(
                prompt_id=prompts[i // n].id,
                group_id=i // n,
                index=i % n,
                prompt=prompts[i // n].text,
                completion=completions[i],
                reference=prompts[i // n].reference,
                metadata=prompts[i // n].metadata,
                num_tokens=int(lengths[i]),
                truncated=bool(rollout.truncated[i]),
            )
            for i in range(len(prompts) * n)
        ]
        return Batch(samples, rollout.completion_mask, rollout.truncated, rollout)

    def verify(self, batch: Batch) -> RewardResult:
        return self.reward.score(batch.samples)

    def logprobs(
        self, model: nn.Module, batch: Batch, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r = batch.data
        args = (r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
        if rows is not None:
            args = tuple(a[rows] for a in args)
        return token_logprobs(model, *args, temperature=self.config.generation.temperature)

    def reference(self) -> nn.Module:
        cfg = self.config
        if cfg.policy.model == "tiny":
            ref = build_tiny_model(cfg.policy, self.tokenizer, cfg.run.seed)
        else:
            ref, _ = load_pretrained(cfg.policy.model, cfg.policy.tokenizer or None)
        ref.eval().requires_grad_(False)
        return ref

    def after_update(self, batch: Batch) -> None:
        """Nothing: a language model has no state besides its weights."""

    def step_metrics(self, batch: Batch) -> dict[str, float]:
        lengths = batch.mask.sum(-1).float()
        return {
            "completions/mean_length": float(lengths.mean()),
            "completions/truncated_frac": float(batch.truncated.float().mean()),
        }

    # ------------------------------------------------------------------ evaluation

    def complete(self, prompts: Sequence[Prompt], batch_size: int = 128) -> list[Sample]:
        """Greedy completions of ``prompts`` (sample ``i`` in group ``i``). Completions are
        kept until the weights change: the held-out monitor and the periodic evaluation
        decode the same prompts with the same weights once."""
        from trustgrpo.evaluation import complete

        version = tuple((id(p), p._version) for p in self.model.parameters())
        if version != self._greedy_version:
            self._greedy_version, self._greedy = version, {}
        known = self._greedy
        todo = list({p.text: p for p in prompts if p.text not in known}.values())
        if todo:
            for s in complete(self.model, self.tokenizer, todo, self.config, batch_size=batch_size):
                known[s.prompt] = (s.completion, s.num_tokens, s.truncated)
        out = []
        for i, p in enumerate(prompts):
            text, tokens, truncated = known[p.text]
            out.append(
                Sample(
                    p.id,
                    i,
                    0,
                    p.text,
                    text,
                    p.reference,
                    p.metadata,
                    num_tokens=tokens,
                    truncated=truncated,
                )
            )
        return out

    def evaluate(
        self, prompts: Sequence[Prompt] | None = None, batch_size: int = 128
    ) -> dict[str, float]:
        from trustgrpo.evaluation import score_completions

        chosen = prompts or self.eval_prompts
        return score_completions(self.reward, self.complete(chosen, batch_size=batch_size))

    def self_test(self, n: int) -> None:
        """Gold answers of ``n`` random training prompts must be correct, canaries not."""
        cfg = self.config
        n = min(n, len(self.train_prompts))
        rng = np.random.default_rng(cfg.run.seed)
        idx = rng.choice(len(self.train_prompts), size=n, replace=False)
        picked = [self.train_prompts[int(i)] for i in idx]
        report = self.reward.self_test(
            [
                Sample(p.id, 0, k, p.text, p.reference or "", p.reference, p.metadata)
                for k, p in enumerate(picked)
            ]
        )
        report.raise_if_failed()

    # ------------------------------------------------------------------ checkpoints

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)

    def load(self, directory: Path) -> None:
        model, _ = load_pretrained(directory)
        self.model.load_state_dict(model.state_dict())

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Nothing to restore beyond weights and optimiser."""

    def provenance(self) -> dict[str, Any]:
        import transformers

        cfg = self.config
        data = {
            name: {"path": path, "sha256": file_digest(path), "rows": len(rows)}
            for name, path, rows in (
                ("train", cfg.data.train, self.train_prompts),
                ("eval", cfg.data.eval, self.eval_prompts),
            )
            if path
        }
        return {
            "packages": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "numpy": np.__version__,
            },
            "model": {"source": cfg.policy.model, "initial_sha256": self.initial_digest},
            "data": data,
        }

    def close(self) -> None:
        """Nothing held open (verifier resources are the trainer's to release)."""


__all__ = ["LMBackend"]
