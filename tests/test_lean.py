"""The lean forward (``trustgrpo.policy.lean``) computes what the Hugging Face forward computes:
the same logits while sampling and scoring, the same gradients, and it steps aside for models
it does not support."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from trustgrpo.config import PolicyConfig
from trustgrpo.policy.lean import GROUPED_FROM, lean, supports
from trustgrpo.policy.lm import build_char_tokenizer, build_tiny_model, encode_prompts

TOK = build_char_tokenizer(["0123456789+-= abc"])


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random non-trivial weights (norm scales and Qwen2's q/k/v biases included)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def _models() -> list[torch.nn.Module]:
    llama = build_tiny_model(PolicyConfig(hidden_size=32, num_layers=2, num_heads=4), TOK, 0)
    qwen = build_tiny_model(
        PolicyConfig(architecture="qwen2", hidden_size=32, num_layers=2, num_heads=4), TOK, 0
    )
    gqa = LlamaForCausalLM(  # grouped-query attention, untied head
        LlamaConfig(
            vocab_size=len(TOK),
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=8,
            num_key_value_heads=2,
            pad_token_id=TOK.pad_token_id,
            tie_word_embeddings=False,
        )
    )
    return [_perturbed(m) for m in (llama, qwen, gqa)]


MODELS = _models()
SHORT = ["1+2=", "12+34=", "7="]  # left padding
EVEN = ["1+2=", "3+4=", "5+6="]  # no padding
LONG = ["1+2=" * 15, "12+34=" * 12, "7=" * 30]  # sampling reads the prompt in place


def _hf_logits(model, prompt_ids, prompt_mask, completion_ids):  # type: ignore[no-untyped-def]
    ids = torch.cat([prompt_ids, completion_ids], 1)
    attn = torch.cat([prompt_mask, torch.ones_like(completion_ids)], 1)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=positions).logits
    return out[:, prompt_ids.shape[1] - 1 : -1]


def _batch(prompts: list[str], group: int, t: int) -> tuple[torch.Tensor, ...]:
    ids, mask = encode_prompts(TOK, prompts, 128)
    gen = torch.Generator().manual_seed(0)
    completion = torch.randint(4, len(TOK), (len(prompts) * group, t), generator=gen)
    return ids.repeat_interleave(group, 0), mask.repeat_interleave(group, 0), completion


@pytest.mark.parametrize("model", MODELS, ids=["llama", "qwen2", "gqa"])
@pytest.mark.parametrize("prompts", [SHORT, EVEN, LONG], ids=["padded", "even", "long"])
def test_scoring_logits_and_gradients_match_hugging_face(model, prompts) -> None:  # type: ignore[no-untyped-def]
    fast = lean(model)
    assert fast is not None
    ids, mask, completion = _batch(prompts, group=3, t=6)
    ref = _hf_logits(model, ids, mask, completion)
    torch.testing.assert_close(
        fast.completion_logits(ids, mask, completion), ref, atol=2e-6, rtol=1e-5
    )
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))  # no groups
    got = fast.completion_logits(ids[perm], mask[perm], completion[perm])
    torch.testing.assert_close(got, ref[perm], atol=2e-6, rtol=1e-5)
    one = fast.completion_logits(ids, mask, completion[:, :1])  # a single completion token
    torch.testing.assert_close(one, ref[:, :1], atol=2e-6, rtol=1e-5)

    def grads(logits: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        torch.log_softmax(logits, -1).gather(-1, completion.unsqueeze(-1)).sum().backward()
        return [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]

    for a, b in zip(
        grads(fast.completion_logits(ids, mask, completion)),
        grads(_hf_logits(model, ids, mask, completion)),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    model.zero_grad()


@pytest.mark.parametrize("model", MODELS, ids=["llama", "qwen2", "gqa"])
@pytest.mark.parametrize("prompts", [SHORT, EVEN, LONG], ids=["padded", "even", "long"])
@pytest.mark.parametrize("group", [1, 4])
def test_sampling_logits_match_hugging_face(model, prompts, group) -> None:  # type: ignore[no-untyped-def]
    fast = lean(model)
    assert fast is not None
    ids, mask = encode_prompts(TOK, prompts, 128)
    _, _, completion = _batch(prompts, group, t=5)
    state, first = fast.start(ids, mask, group, max_new_tokens=5)
    assert state.grouped == (group > 1 and ids.shape[1] >= GROUPED_FROM)
    steps = [first] + [fast.step(state, completion[:, t], t) for t in range(4)]
    reps = ids.repeat_interleave(group, 0), mask.repeat_interleave(group, 0)
    ref = _hf_logits(model, *reps, completion)
    torch.testing.assert_close(torch.stack(steps, 1), ref, atol=2e-6, rtol=1e-5)


def test_unsupported_models_use_their_own_forward() -> None:
    cfg = dict(
        vocab_size=len(TOK),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    assert supports(LlamaForCausalLM(LlamaConfig(**cfg)))
    assert not supports(LlamaForCausalLM(LlamaConfig(**cfg, hidden_act="gelu")))
    assert not supports(LlamaForCausalLM(LlamaConfig(**cfg, attention_dropout=0.1)))
    wrapped = LlamaForCausalLM(LlamaConfig(**cfg))
    wrapped.model.layers[0].self_attn.q_proj = torch.nn.Sequential(  # as an adapter would
        wrapped.model.layers[0].self_attn.q_proj
    )
    assert lean(wrapped) is None
    assert lean(torch.nn.Linear(2, 2)) is None
    checkpointed = LlamaForCausalLM(LlamaConfig(**cfg))
    for layer in checkpointed.model.layers:
        layer.gradient_checkpointing = True  # what gradient_checkpointing_enable() sets
    assert lean(checkpointed) is None  # it would ignore the checkpointing
    with torch.no_grad():
        assert lean(checkpointed) is not None  # nothing to checkpoint
