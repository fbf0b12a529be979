"""A lean forward pass for Llama- and Qwen2-style causal LMs, on the model's own parameters.

For a small model, Hugging Face's forward spends most of its time in Python (mask building,
cache bookkeeping, a dozen module calls per layer), and a GRPO batch repeats each prompt G
times. :class:`LeanLM` computes the same function with a few tensor operations per layer. It
reads the parameters of the ``nn.Module`` (gradients flow to them; the optimiser, checkpoints
and everything else are untouched), and it shares each prompt among its G completions:

* **sampling** (:meth:`LeanLM.generate`): each distinct prompt is encoded once; its G
  completions attend to its keys and values in place (a grouped matmul, never a copy); the
  generated keys and values go into buffers allocated once per call; the rotary tables are
  computed once per call; q/k/v and gate/up are fused into one matmul each.
* **scoring** (:meth:`LeanLM.token_logprobs`, the loss's forward): each distinct prompt goes
  through the layers once, with autograd, and its completions attend to its keys and values;
  only the positions that predict completion tokens reach the LM head.

The results equal Hugging Face's up to float rounding (the tests compare both). Supported:
``LlamaForCausalLM`` and ``Qwen2ForCausalLM`` with a SiLU MLP, full attention (no sliding
window), a rotary embedding whose frequencies do not depend on the sequence length, and no
attention dropout; :func:`lean` returns None for anything else (a PEFT-wrapped or offloaded
model included), and callers use the Hugging Face forward.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")
_STATIC_ROPE = ("default", "linear", "llama3", "yarn")
"""Rotary types whose frequencies are fixed (``dynamic`` and ``longrope`` depend on length)."""
_CACHE: weakref.WeakKeyDictionary[nn.Module, LeanLM] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _Weights:
    """One decoder layer's parameters, q/k/v and gate/up concatenated."""

    norm1: torch.Tensor
    eps1: float
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    out: torch.Tensor
    out_bias: torch.Tensor | None
    norm2: torch.Tensor
    eps2: float
    gate_up: torch.Tensor
    gate_up_bias: torch.Tensor | None
    down: torch.Tensor
    down_bias: torch.Tensor | None


def _cat_bias(*linears: nn.Linear) -> torch.Tensor | None:
    biases = [m.bias for m in linears]
    if all(b is None for b in biases):
        return None
    return torch.cat(
        [b if b is not None else m.weight.new_zeros(m.out_features) for m, b in zip(linears, biases, strict=True)]
    )


def _layer_weights(layer: nn.Module) -> _Weights:
    a, m = layer.self_attn, layer.mlp
    return _Weights(
        norm1=layer.input_layernorm.weight,
        eps1=float(layer.input_layernorm.variance_epsilon),
        qkv=torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
        qkv_bias=_cat_bias(a.q_proj, a.k_proj, a.v_proj),
        out=a.o_proj.weight,
        out_bias=a.o_proj.bias,
        norm2=layer.post_attention_layernorm.weight,
        eps2=float(layer.post_attention_layernorm.variance_epsilon),
        gate_up=torch.cat([m.gate_proj.weight, m.up_proj.weight]),
        gate_up_bias=_cat_bias(m.gate_proj, m.up_proj),
        down=m.down_proj.weight,
        down_bias=m.down_proj.bias,
    )


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Hugging Face's ``LlamaRMSNorm`` (normalised in float32, scaled in the input's dtype)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return weight * F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding, as Hugging Face's ``apply_rotary_pos_emb``."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def supports(model: nn.Module) -> bool:
    """Whether :class:`LeanLM` computes exactly what ``model``'s own forward computes."""
    if type(model).__name__ not in _ARCHITECTURES or hasattr(model, "_hf_hook"):
        return False
    cfg = model.config
    inner = getattr(model, "model", None)
    if (
        inner is None
        or getattr(cfg, "hidden_act", "") != "silu"
        or getattr(cfg, "pretraining_tp", 1) not in (None, 1)
        or getattr(cfg, "use_sliding_window", False)
        or "sliding_attention" in (getattr(cfg, "layer_types", None) or ())
        or float(getattr(cfg, "attention_dropout", 0.0) or 0.0) > 0.0
        or getattr(inner.rotary_emb, "rope_type", "default") not in _STATIC_ROPE
        or type(model.lm_head) is not nn.Linear
        or type(inner.embed_tokens) is not nn.Embedding
    ):
        return False
    linears = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    for layer in inner.layers:
        parts = [getattr(layer.self_attn, n, None) for n in linears[:4]]
        parts += [getattr(layer.mlp, n, None) for n in linears[4:]]
        if any(type(p) is not nn.Linear for p in parts):
            return False
    return True


def lean(model: nn.Module) -> LeanLM | None:
    """The :class:`LeanLM` of ``model`` (made once per model), or None when unsupported."""
    if model in _CACHE:
        return _CACHE[model]
    if not supports(model):
        return None
    _CACHE[model] = out = LeanLM(model)
    return out


@dataclass
class _Decoding:
    """Sampling state: the prompts' keys and values, the generated ones, the masks."""

    prompt_kv: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer ``(U, Hkv, P, d)`` keys and values of the U distinct prompts."""
    new_kv: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer ``(B, Hkv, T, d)`` buffers for the generated tokens' keys and values."""
    bias: torch.Tensor
    """``(B, 1, P + T)``: -inf on prompt padding, 0 elsewhere."""
    cos: torch.Tensor
    sin: torch.Tensor
    """``(L, d)`` rotary tables for every position a call reaches."""
    group: int
    """G: rows ``i * G ... (i + 1) * G - 1`` share prompt ``i``."""


class LeanLM:
    """The forward pass of a supported model with little Python (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        cfg = model.config
        inner: Any = model.model
        self.model = model
        self.embed: nn.Embedding = inner.embed_tokens
        self.layers: Any = inner.layers
        self.norm: Any = inner.norm
        self.head: nn.Linear = model.lm_head
        self.rotary: Any = inner.rotary_emb
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(getattr(cfg, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads)
        self.scale = self.head_dim**-0.5

    # ------------------------------------------------------------------ shared pieces

    def weights(self) -> list[_Weights]:
        """Every layer's parameters, fused; differentiable when grad is enabled."""
        return [_layer_weights(layer) for layer in self.layers]

    def rotary_tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(length, d)`` cos and sin of positions ``0 .. length - 1``."""
        ref = self.embed.weight
        positions = torch.arange(length, device=ref.device).unsqueeze(0)
        cos, sin = self.rotary(ref[:1].unsqueeze(0), positions)
        return cos[0], sin[0]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head over the final norm."""
        norm = self.norm
        return F.linear(_rms(hidden, norm.weight, norm.variance_epsilon), self.head.weight, self.head.bias)

    def block(
        self,
        w: _Weights,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder layer over ``(N, T, hidden)``; the queries also attend to ``prefix``
        keys and values (``(N, Hkv, S, d)``). Returns the output and this layer's keys and
        values ``(N, Hkv, T, d)``. ``mask``: ``(N, 1, T, S + T)``, True where attended."""
        n, t, _ = x.shape
        h, hkv, d = self.heads, self.kv_heads, self.head_dim
        qkv = F.linear(_rms(x, w.norm1, w.eps1), w.qkv, w.qkv_bias)
        qkv = qkv.view(n, t, h + 2 * hkv, d).transpose(1, 2)
        qk = _rope(qkv[:, : h + hkv], cos, sin)
        q, k, v = qk[:, :h], qk[:, h:], qkv[:, h + hkv :]
        keys, values = (k, v) if prefix is None else (torch.cat([prefix[0], k], 2), torch.cat([prefix[1], v], 2))
        att = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale, enable_gqa=h != hkv)
        x = x + F.linear(att.transpose(1, 2).reshape(n, t, h * d), w.out, w.out_bias)
        gate, up = F.linear(_rms(x, w.norm2, w.eps2), w.gate_up, w.gate_up_bias).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, w.down, w.down_bias), k, v
