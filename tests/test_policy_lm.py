"""Language-model policy: tokenizer, tiny models, KV-cached sampling, log-probabilities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trustgrpo.config import PolicyConfig
from trustgrpo.errors import ConfigError
from trustgrpo.policy.lm import (
    build_char_tokenizer,
    build_tiny_model,
    encode_prompts,
    generate,
    load_pretrained,
    state_digest,
    token_logprobs,
)


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, object]:
    tok = build_char_tokenizer(["0123456789+-= abc"])
    model = build_tiny_model(PolicyConfig(hidden_size=32, num_layers=2, num_heads=4), tok, seed=0)
    return model.eval(), tok


def test_char_tokenizer_round_trip_and_specials() -> None:
    tok = build_char_tokenizer(["12+3= x"])
    ids = tok.encode("12+3= x", add_special_tokens=False)
    assert len(ids) == 7
    assert tok.decode(ids) == "12+3= x"
    assert tok.pad_token == "<pad>" and tok.eos_token == "</s>"
    assert tok.padding_side == "left"


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_model_is_seeded(arch: str) -> None:
    tok = build_char_tokenizer(["0123456789"])
    cfg = PolicyConfig(architecture=arch, hidden_size=16, num_layers=1, num_heads=2)  # type: ignore[arg-type]
    a, b = build_tiny_model(cfg, tok, 0), build_tiny_model(cfg, tok, 0)
    c = build_tiny_model(cfg, tok, 1)
    assert state_digest(a) == state_digest(b) != state_digest(c)


def test_sampling_log_probs_match_a_full_forward(tiny: tuple) -> None:
    """The KV-cached sampler and the loss's forward agree, including under left padding."""
    model, tok = tiny
    ids, mask = encode_prompts(tok, ["1+2=", "12+34=", "7="], 64)
    assert mask[0].tolist() == [0, 0, 1, 1, 1, 1]  # left padded
    g = torch.Generator().manual_seed(0)
    out = generate(
        model,
        ids,
        mask,
        max_new_tokens=5,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        generator=g,
        temperature=1.0,
    )
    logp, _ = token_logprobs(
        model, out.prompt_ids, out.prompt_mask, out.completion_ids, out.completion_mask
    )
    # Scoring each sequence alone, without any padding, gives the same log-probs.
    for i in range(3):
        p_len = int(mask[i].sum())
        c_len = int(out.completion_mask[i].sum())
        single, _ = token_logprobs(
            model,
            ids[i : i + 1, -p_len:],
            mask[i : i + 1, -p_len:],
            out.completion_ids[i : i + 1, :c_len],
            out.completion_mask[i : i + 1, :c_len],
        )
        torch.testing.assert_close(single[0], logp[i, :c_len], atol=1e-5, rtol=1e-5)


def test_greedy_generation_matches_step_by_step_argmax(tiny: tuple) -> None:
    model, tok = tiny
    ids, mask = encode_prompts(tok, ["12+3="], 64)
    out = generate(
        model,
        ids,
        mask,
        max_new_tokens=4,
        eos_token_id=None,
        pad_token_id=tok.pad_token_id,
        temperature=0.0,
    )
    seq = ids.clone()
    for _ in range(4):
        nxt = model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    assert out.completion_ids[0].tolist() == seq[0, ids.shape[1] :].tolist()
    assert out.truncated.tolist() == [True]


def test_eos_ends_a_completion_and_is_counted(tiny: tuple) -> None:
    model, tok = tiny
    ids, mask = encode_prompts(tok, ["1", "2", "3", "4"] * 4, 64)
    g = torch.Generator().manual_seed(3)
    out = generate(
        model,
        ids,
        mask,
        max_new_tokens=40,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        generator=g,
        temperature=3.0,
    )
    for row, m, trunc in zip(out.completion_ids, out.completion_mask, out.truncated, strict=True):
        n = int(m.sum())
        if not trunc:
            assert row[n - 1].item() == tok.eos_token_id
            assert all(t == tok.pad_token_id for t in row[n:].tolist())


def test_same_generator_seed_same_samples(tiny: tuple) -> None:
    model, tok = tiny
    ids, mask = encode_prompts(tok, ["1+1="] * 4, 64)
    runs = [
        generate(
            model,
            ids,
            mask,
            max_new_tokens=6,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            generator=torch.Generator().manual_seed(7),
            top_p=0.9,
        ).completion_ids
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])


def test_load_pretrained_round_trip(tmp_path: Path, tiny: tuple) -> None:
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = load_pretrained(tmp_path)
    assert state_digest(loaded) == state_digest(model)
    assert tok2.encode("12+3=", add_special_tokens=False) == tok.encode(
        "12+3=", add_special_tokens=False
    )


def test_load_pretrained_bad_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy.model: cannot load a causal LM"):
        load_pretrained(tmp_path)


def test_shared_prompt_cache_equals_repeated_prompts(tiny: tuple) -> None:
    """Sharing each prompt's KV cache among its G samples changes nothing but the cost."""
    model, tok = tiny
    prompts = ["1+2=", "12+34=", "7="]
    ids, mask = encode_prompts(tok, prompts, 64)
    shared = generate(
        model,
        ids,
        mask,
        max_new_tokens=5,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        generator=torch.Generator().manual_seed(1),
        num_samples=4,
    )
    rep_ids, rep_mask = encode_prompts(tok, [p for p in prompts for _ in range(4)], 64)
    repeated = generate(
        model,
        rep_ids,
        rep_mask,
        max_new_tokens=5,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(shared.prompt_ids, repeated.prompt_ids)
    assert torch.equal(shared.completion_ids, repeated.completion_ids)
    assert torch.equal(shared.completion_mask, repeated.completion_mask)
