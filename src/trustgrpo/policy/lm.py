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
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
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

    The prompts are encoded once and their KV cache is shared by the ``num_samples``
    completions of each prompt (rows ``i * num_samples ... (i + 1) * num_samples - 1`` of the
    result belong to prompt ``i``). Left padding is handled with explicit position ids and an
    attention mask that grows with each generated token. A finished sequence keeps emitting
    padding (masked out), and the loop stops as soon as every sequence has finished.
    """
    model.eval()
    attn = prompt_mask
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    cache_kw = _cache_keyword(model)
    out = model(input_ids=prompt_ids, attention_mask=attn, position_ids=positions, use_cache=True)
    past = _cache_of(out)
    logits = out.logits[:, -1, :]
    next_pos = positions[:, -1:] + 1
    if num_samples > 1:  # share the prompt's cache among its samples
        past.batch_repeat_interleave(num_samples)
        prompt_ids = prompt_ids.repeat_interleave(num_samples, dim=0)
        prompt_mask = prompt_mask.repeat_interleave(num_samples, dim=0)
        attn = prompt_mask
        logits = logits.repeat_interleave(num_samples, dim=0)
        next_pos = next_pos.repeat_interleave(num_samples, dim=0)
    b = prompt_ids.shape[0]
    tokens = torch.full((b, max_new_tokens), pad_token_id, dtype=torch.long)
    finished = torch.zeros(b, dtype=torch.bool)
    lengths = torch.full((b,), max_new_tokens, dtype=torch.long)
    for t in range(max_new_tokens):
        nxt = _sample_next(logits.float(), temperature, top_p, generator)
        nxt = torch.where(finished, torch.full_like(nxt, pad_token_id), nxt)
        tokens[:, t] = nxt
        if eos_token_id is not None:
            just = (nxt == eos_token_id) & ~finished
            lengths[just] = t + 1
            finished |= just
            if bool(finished.all()):
                break
        if t == max_new_tokens - 1:
            break
        attn = torch.cat([attn, torch.ones((b, 1), dtype=attn.dtype)], dim=1)
        out = model(
            input_ids=nxt.unsqueeze(-1),
            attention_mask=attn,
            position_ids=next_pos,
            use_cache=True,
            **{cache_kw: past},
        )
        past = _cache_of(out)
        logits = out.logits[:, -1, :]
        next_pos = next_pos + 1
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

    Only the completion positions go through the LM head (``logits_to_keep``), and the log
    softmax is taken as ``logit - logsumexp`` so the full ``(B, T, V)`` log-prob tensor is never
    materialised.
    """
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attn = torch.cat([prompt_mask, completion_mask], dim=1)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    t = completion_ids.shape[1]
    out = model(input_ids=ids, attention_mask=attn, position_ids=positions, logits_to_keep=t + 1)
    logits = out.logits[:, :-1, :].float() / temperature
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
