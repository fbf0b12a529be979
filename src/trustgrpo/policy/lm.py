"""Causal language-model policies: load or build, sample with a KV cache, score log-probs.

Any Hugging Face causal LM from a local directory works (``local_files_only``: nothing is ever
downloaded). ``policy.model = "tiny"`` builds a small Llama- or Qwen2-style model from the run
file, with a character tokenizer built from the data, so tests and demos need no download.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trustgrpo.config import PolicyConfig
from trustgrpo.errors import ConfigError
from trustgrpo.policy.lean import LeanLM, lean

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"


def build_char_tokenizer(texts: Iterable[str]) -> Any:
    """A character-level ``PreTrainedTokenizerFast`` whose vocabulary is the texts' characters.

    It is a regular Hugging Face tokenizer (``save_pretrained``/``AutoTokenizer`` work), with
    ``<pad>``, ``<s>``, ``</s>`` and ``<unk>`` as special tokens.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted({c for t in texts for c in t})
    vocab = {tok: i for i, tok in enumerate([PAD, BOS, EOS, UNK, *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
    )
    # A minimal chat template, so that ``data.chat_template = true`` works with tiny models.
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    return fast


def build_tiny_model(cfg: PolicyConfig, tokenizer: Any, seed: int) -> nn.Module:
    """A small Llama/Qwen2 model from the ``[policy]`` fields, initialised from ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.architecture == "qwen2":
            model: nn.Module = Qwen2ForCausalLM(Qwen2Config(**common))
        else:
            model = LlamaForCausalLM(LlamaConfig(**common))
    return model


def load_pretrained(path: str | Path, tokenizer_path: str | Path | None = None) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from local directories (never from the hub)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError) as e:
        raise ConfigError([f"policy.model: cannot load a causal LM from {path}: {e}"]) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def state_digest(model: nn.Module) -> str:
    """SHA-256 over the model's parameters (names, shapes and bytes), in a stable order."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


@dataclass
class Rollout:
    """A batch of sampled completions, left-padded prompts and right-padded completions."""

    prompt_ids: torch.Tensor
    """``(B, P)`` prompt token ids, left-padded."""
    prompt_mask: torch.Tensor
    """``(B, P)`` 1 on real prompt tokens."""
    completion_ids: torch.Tensor
    """``(B, T)`` generated ids, padded after the end with the pad id."""
    completion_mask: torch.Tensor
    """``(B, T)`` 1 on generated tokens up to and including the end-of-sequence token."""
    truncated: torch.Tensor
    """``(B,)`` True where generation hit ``max_new_tokens`` without an end-of-sequence."""


def _sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One token per row: greedy at ``temperature <= 0``, else sampled (nucleus for
    ``top_p < 1``)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature if temperature != 1.0 else logits, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def encode_prompts(tokenizer: Any, prompts: list[str], max_tokens: int) -> tuple[torch.Tensor, ...]:
    """Tokenize and left-pad prompts, keeping at most the last ``max_tokens`` tokens of each."""
    ids = [tokenizer.encode(p, add_special_tokens=False)[-max_tokens:] for p in prompts]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        if x:
            input_ids[i, width - len(x) :] = torch.tensor(x)
            mask[i, width - len(x) :] = 1
    return input_ids, mask


def _cache_keyword(model: nn.Module) -> str:
    """``cache`` (transformers ≥ 5.2x) or ``past_key_values`` (earlier versions)."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


class _HFDecoder:
    """Sampling through the model's own forward and a Hugging Face KV cache (any causal LM)."""

    def __init__(
        self, model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, group: int
    ) -> None:
        self.model = model
        self.cache_kw = _cache_keyword(model)
        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(
            input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True
        )
        self.past = _cache_of(out)
        if group > 1:  # share the prompt's cache among its samples
            self.past.batch_repeat_interleave(group)
        self.first_logits = out.logits[:, -1, :].repeat_interleave(group, dim=0)
        self.attn = prompt_mask.repeat_interleave(group, dim=0)
        self.next_pos = positions[:, -1:].repeat_interleave(group, dim=0) + 1

    def step(self, tokens: torch.Tensor, t: int) -> torch.Tensor:
        ones = torch.ones((tokens.shape[0], 1), dtype=self.attn.dtype)
        self.attn = torch.cat([self.attn, ones], dim=1)
        out = self.model(
            input_ids=tokens.unsqueeze(-1),
            attention_mask=self.attn,
            position_ids=self.next_pos,
            use_cache=True,
            **{self.cache_kw: self.past},
        )
        self.past = _cache_of(out)
        self.next_pos = self.next_pos + 1
        return out.logits[:, -1, :]


class _LeanDecoder:
    """Sampling through :class:`~trustgrpo.policy.lean.LeanLM` (Llama and Qwen2 models)."""

    def __init__(
        self,
        fast: LeanLM,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        group: int,
        max_new_tokens: int,
    ) -> None:
        self.fast = fast
        self.state, self.first_logits = fast.start(prompt_ids, prompt_mask, group, max_new_tokens)

    def step(self, tokens: torch.Tensor, t: int) -> torch.Tensor:
        return self.fast.step(self.state, tokens, t)


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    num_samples: int = 1,
) -> Rollout:
    """Sample ``num_samples`` completions per prompt with a KV cache; ``temperature = 0``
    decodes greedily.

    The prompts are encoded once and their keys and values are shared by the ``num_samples``
    completions of each prompt (rows ``i * num_samples ... (i + 1) * num_samples - 1`` of the
    result belong to prompt ``i``). Left padding is handled with explicit positions and
    masks. Llama and Qwen2 models decode through :mod:`trustgrpo.policy.lean` (preallocated
    buffers, a few tensor operations per layer), others through their own forward. A finished
    sequence keeps emitting padding (masked out), and the loop stops as soon as every sequence
    has finished.
    """
    model.eval()
    fast = lean(model)
    decoder: _HFDecoder | _LeanDecoder = (
        _HFDecoder(model, prompt_ids, prompt_mask, num_samples)
        if fast is None
        else _LeanDecoder(fast, prompt_ids, prompt_mask, num_samples, max_new_tokens)
    )
    prompt_ids = prompt_ids.repeat_interleave(num_samples, dim=0)
    prompt_mask = prompt_mask.repeat_interleave(num_samples, dim=0)
    logits = decoder.first_logits
    b = prompt_ids.shape[0]
    tokens = torch.full((b, max_new_tokens), pad_token_id, dtype=torch.long)
    finished = torch.zeros(b, dtype=torch.bool)
    lengths = torch.full((b,), max_new_tokens, dtype=torch.long)
    pad = torch.full((b,), pad_token_id, dtype=torch.long)
    for t in range(max_new_tokens):
        nxt = _sample_next(logits.float(), temperature, top_p, generator)
        if eos_token_id is not None:
            nxt = torch.where(finished, pad, nxt)
            just = (nxt == eos_token_id) & ~finished
            lengths.masked_fill_(just, t + 1)
            finished |= just
        tokens[:, t] = nxt
        if t == max_new_tokens - 1 or (eos_token_id is not None and bool(finished.all())):
            break
        logits = decoder.step(nxt, t)
    width = int(lengths.max()) if b else 0
    tokens = tokens[:, :width]
    ar = torch.arange(width).unsqueeze(0)
    comp_mask = (ar < lengths.unsqueeze(1)).long()
    return Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=tokens,
        completion_mask=comp_mask,
        truncated=~finished,
    )


def token_logprobs(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities ``(B, T)`` of the completion tokens, and the mean token entropy.

    Only the positions that predict completion tokens go through the LM head, and the log
    softmax is taken as ``logit - logsumexp`` so the full ``(B, T, V)`` log-prob tensor is never
    materialised. Llama and Qwen2 models run through :mod:`trustgrpo.policy.lean`, which
    encodes each distinct prompt once for all the rows that repeat it (a GRPO group).
    """
    fast = lean(model)
    if fast is not None:
        logits = fast.completion_logits(prompt_ids, prompt_mask, completion_ids)
    else:
        ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attn = torch.cat([prompt_mask, completion_mask], dim=1)
        positions = (attn.cumsum(-1) - 1).clamp(min=0)
        t = completion_ids.shape[1]
        out = model(
            input_ids=ids, attention_mask=attn, position_ids=positions, logits_to_keep=t + 1
        )
        logits = out.logits[:, :-1, :]
    logits = logits.float() / temperature if temperature != 1.0 else logits.float()
    lse = torch.logsumexp(logits, dim=-1)
    chosen = logits.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    logp = chosen - lse
    with torch.no_grad():
        p = torch.softmax(logits, dim=-1)
        ent = -(p * (logits - lse.unsqueeze(-1))).sum(-1)
        m = completion_mask.to(ent.dtype)
        entropy = (ent * m).sum() / m.sum().clamp(min=1.0)
    return logp, entropy


def make_policy(cfg: PolicyConfig, texts: Iterable[str], seed: int) -> tuple[nn.Module, Any]:
    """The policy and tokenizer a run file describes.

    ``model = "tiny"``: a tokenizer from ``policy.tokenizer``, or else a character tokenizer
    over printable ASCII and every character of ``texts``; then a model initialised from
    ``seed``. Otherwise: a Hugging Face model directory.
    """
    import string

    if cfg.model != "tiny":
        return load_pretrained(cfg.model, cfg.tokenizer or None)
    if cfg.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer, local_files_only=True)
        tokenizer.padding_side = "left"
    else:
        tokenizer = build_char_tokenizer([string.printable, *texts])
    return build_tiny_model(cfg, tokenizer, seed), tokenizer
