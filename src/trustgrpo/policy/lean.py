"""A lean forward pass for Llama- and Qwen2-style causal LMs, on the model's own parameters.

For a small model, Hugging Face's forward spends most of its time in Python (mask building,
cache bookkeeping, a dozen module calls per layer), and a GRPO batch repeats each prompt G
times. :class:`LeanLM` computes the same function with a few tensor operations per layer. It
reads the parameters of the ``nn.Module`` (gradients flow to them; the optimiser, checkpoints
and everything else are untouched), and it shares each prompt among its G completions:

* **sampling** (:meth:`LeanLM.start`, :meth:`LeanLM.step`): each distinct prompt is encoded
  once; the keys and values go into buffers allocated once per call; the rotary tables are
  computed once per call; q/k/v and gate/up are fused into one matmul each.
* **scoring** (:meth:`LeanLM.completion_logits`, the loss's forward): each distinct prompt
  goes through the layers once, with autograd, and its completions attend to its keys and
  values; the last completion token is not fed (it is only a target), and the last layer
  computes only the prompt's last position.
* **long prompts, sampling** (from :data:`GROUPED_FROM` tokens): the G completions read
  their prompt's keys and values in place, as one matmul per prompt and head
  (:func:`grouped_attention`), instead of from G copies. Short prompts, and scoring, copy
  them and call PyTorch's fused attention, which measured faster there.

The results equal Hugging Face's up to float rounding (the tests compare both). Supported:
``LlamaForCausalLM`` and ``Qwen2ForCausalLM`` with a SiLU MLP, full attention (no sliding
window), a rotary embedding whose frequencies do not depend on the sequence length, and no
attention dropout; :func:`lean` returns None for anything else (a PEFT-wrapped or offloaded
model included), and callers use the Hugging Face forward.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")
_STATIC_ROPE = ("default", "linear", "llama3", "yarn")
"""Rotary types whose frequencies are fixed (``dynamic`` and ``longrope`` depend on length)."""
_CACHE: weakref.WeakKeyDictionary[nn.Module, LeanLM | None] = weakref.WeakKeyDictionary()


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


def _cat_bias(*linears: Any) -> torch.Tensor | None:
    biases = [m.bias for m in linears]
    if all(b is None for b in biases):
        return None
    return torch.cat(
        [
            b if b is not None else m.weight.new_zeros(m.out_features)
            for m, b in zip(linears, biases, strict=True)
        ]
    )


def _layer_weights(layer: Any) -> _Weights:
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


def _rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding: Hugging Face's ``x * cos + rotate_half(x) * sin``, bit for
    bit, as ``x * cos + roll(x, d/2) * signed_sin`` (the sign of ``rotate_half`` moved into the
    table: fewer operations)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


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
    """The :class:`LeanLM` of ``model`` (made once per model), or None when the model is not
    supported or computes gradients with activation checkpointing (which it would ignore)."""
    if model not in _CACHE:
        _CACHE[model] = LeanLM(model) if supports(model) else None
    fast = _CACHE[model]
    if fast is None or (
        torch.is_grad_enabled()
        and any(getattr(layer, "gradient_checkpointing", False) for layer in fast.layers)
    ):
        return None
    return fast


GROUPED_FROM = 48
"""Prompt length from which, while sampling, the completions of a group read their prompt's
keys in place (:func:`grouped_attention`) rather than from a copy each (measured crossover)."""

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""Attention of queries ``(N, H, L, d)`` to a layer's own keys and values ``(N, Hkv, T, d)``
(and whatever else it closes over): ``(N, H, L, d)``."""


@dataclass
class _Decoding:
    """Sampling state: key/value buffers, masks, rotary tables."""

    weights: list[_Weights]
    cache: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer, keys and values ``(B, Hkv, S, d)``: the prompt's then the generated
    tokens' (``S = P + T``), or, when ``grouped``, only the generated tokens' (``S = T``)."""
    prompt_kv: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer ``(U, Hkv, P, d)`` keys and values of the U prompts."""
    real: torch.Tensor | None
    """``(U, 1, 1, P)`` False on prompt padding (None: no padding)."""
    mask: torch.Tensor | None
    """``(B, 1, 1, P + T)`` False on prompt padding (None: no padding)."""
    positions: torch.Tensor
    """``(B,)`` position of each row's first generated token (its prompt's length)."""
    cos: torch.Tensor
    sin: torch.Tensor
    """``(P + T, d)`` rotary tables."""
    group: int
    """G: rows ``i * G ... (i + 1) * G - 1`` share prompt ``i``."""
    grouped: bool


class LeanLM:
    """The forward pass of a supported model with little Python (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        cfg = model.config
        inner = model.model
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
        """``(length, d)`` cos and signed sin (see :func:`_rope`) of positions
        ``0 .. length - 1``, from the model's own rotary module."""
        ref = self.embed.weight
        positions = torch.arange(length, device=ref.device).unsqueeze(0)
        cos, sin = self.rotary(ref[:1].unsqueeze(0), positions)
        half = sin.shape[-1] // 2
        return cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head over the final norm."""
        norm = self.norm
        hidden = _rms(hidden, norm.weight, norm.variance_epsilon)
        return F.linear(hidden, self.head.weight, self.head.bias)

    def sdpa(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """PyTorch's fused attention; ``mask`` True where attended, None: causal (aligned at
        the end, so that one query attends to every key)."""
        causal = mask is None and q.shape[2] > 1
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal,
            scale=self.scale,
            enable_gqa=self.heads != self.kv_heads,
        )

    def block(
        self,
        w: _Weights,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attend: Attend,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder layer over ``x`` ``(N, T, hidden)``: its output and the layer's keys and
        values ``(N, Hkv, T, d)``. ``cos``, ``sin``: ``(N, 1, T, d)``. ``last_only``: the
        output of the last position only (the keys and values of all), as the last layer of
        a prompt needs."""
        n, t, _ = x.shape
        h, hkv, d = self.heads, self.kv_heads, self.head_dim
        qkv = F.linear(_rms(x, w.norm1, w.eps1), w.qkv, w.qkv_bias)
        # split, not slices: the gradient of a split is one cat, of slices zero-filled copies
        qk, v = qkv.view(n, t, h + 2 * hkv, d).transpose(1, 2).split([h + hkv, hkv], dim=1)
        q, k = _rope(qk, cos, sin).split([h, hkv], dim=1)
        if last_only:
            q, x, t = q[:, :, -1:], x[:, -1:], 1
        att = attend(q, k, v).transpose(1, 2).reshape(n, t, h * d)
        x = x + F.linear(att, w.out, w.out_bias)
        gate, up = F.linear(_rms(x, w.norm2, w.eps2), w.gate_up, w.gate_up_bias).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, w.down, w.down_bias), k, v

    def prompts(
        self,
        weights: list[_Weights],
        ids: torch.Tensor,
        mask: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Left-padded prompts ``(U, P)`` through every layer: the last position's hidden state
        ``(U, hidden)`` and each layer's keys and values. A padding position attends only to
        itself, so that no row of the attention is empty."""
        p = ids.shape[1]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cos_p, sin_p = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)
        attend_mask = None
        if not bool(mask.all()):
            square = torch.ones(p, p, dtype=torch.bool, device=ids.device)
            own = square.diag().diag_embed()
            attend_mask = square.tril() & (mask.bool()[:, None, None, :] | own)

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            rows = None if attend_mask is None else attend_mask[:, :, -q.shape[2] :]
            return self.sdpa(q, k, v, rows)

        x = self.embed(ids)
        kv = []
        for i, w in enumerate(weights):
            x, k, v = self.block(w, x, cos_p, sin_p, attend, last_only=i == len(weights) - 1)
            kv.append((k, v))
        return x[:, -1], kv

    # ------------------------------------------------------------------ scoring

    def completion_logits(
        self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor
    ) -> torch.Tensor:
        """``(B, T, V)`` logits that predict each completion token, the distinct prompts
        encoded once (rows that repeat a prompt, as a GRPO group does, share it)."""
        b, p = prompt_ids.shape
        t = completion_ids.shape[1]
        ids, mask, spread = _distinct(prompt_ids, prompt_mask)
        weights = self.weights()
        cos, sin = self.rotary_tables(p + t)
        last, kv = self.prompts(weights, ids, mask, cos, sin)
        if t == 1:
            return self.logits(spread(last).unsqueeze(1))
        positions = spread(mask.sum(-1)).unsqueeze(1) + torch.arange(t - 1, device=ids.device)
        cos_c, sin_c = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)
        causal = torch.ones(t - 1, t - 1, dtype=torch.bool, device=ids.device).tril()
        real = (
            torch.ones(b, 1, 1, p, dtype=torch.bool, device=ids.device)
            if mask.all()
            else spread(mask.bool())
        )
        attend_mask = torch.cat(
            [real.view(b, 1, 1, p).expand(b, 1, t - 1, p), causal.expand(b, 1, -1, -1)], dim=-1
        )
        x = self.embed(completion_ids[:, :-1])  # the last token is only ever a target
        for w, (kp, vp) in zip(weights, kv, strict=True):
            # the prompt's keys copied to its rows: in training, one fused attention call over
            # copies costs less than reading them in place (measured)
            keys, values = spread(kp), spread(vp)

            def attend(
                q: torch.Tensor,
                k: torch.Tensor,
                v: torch.Tensor,
                keys: torch.Tensor = keys,
                values: torch.Tensor = values,
            ) -> torch.Tensor:
                return self.sdpa(q, torch.cat([keys, k], 2), torch.cat([values, v], 2), attend_mask)

            x, _, _ = self.block(w, x, cos_c, sin_c, attend)
        return self.logits(torch.cat([spread(last).unsqueeze(1), x], dim=1))

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def start(
        self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, group: int, max_new_tokens: int
    ) -> tuple[_Decoding, torch.Tensor]:
        """Encode ``(U, P)`` prompts once for ``group`` samples each: the decoding state and
        the ``(U * group, V)`` logits of the first token."""
        u, p = prompt_ids.shape
        b = u * group
        weights = self.weights()
        cos, sin = self.rotary_tables(p + max_new_tokens)
        last, kv = self.prompts(weights, prompt_ids, prompt_mask, cos, sin)
        grouped = group > 1 and p >= GROUPED_FROM
        k0 = kv[0][0]
        shape = (b, self.kv_heads, max_new_tokens + (0 if grouped else p), self.head_dim)
        cache = [(k0.new_empty(shape), k0.new_empty(shape)) for _ in weights]
        if not grouped:
            for (k, v), (kc, vc) in zip(kv, cache, strict=True):
                kc[:, :, :p] = k.repeat_interleave(group, 0)
                vc[:, :, :p] = v.repeat_interleave(group, 0)
        real = mask = None
        if not bool(prompt_mask.all()):
            real = prompt_mask.bool()[:, None, None, :]
            mask = torch.ones(b, 1, 1, p + max_new_tokens, dtype=torch.bool, device=k0.device)
            mask[..., :p] = real.repeat_interleave(group, 0)
        state = _Decoding(
            weights=weights,
            cache=cache,
            prompt_kv=kv,
            real=real,
            mask=mask,
            positions=prompt_mask.sum(-1).repeat_interleave(group),
            cos=cos,
            sin=sin,
            group=group,
            grouped=grouped,
        )
        return state, self.logits(last).repeat_interleave(group, 0)

    @torch.no_grad()
    def step(self, state: _Decoding, tokens: torch.Tensor, t: int) -> torch.Tensor:
        """Feed the ``t``-th sampled tokens ``(B,)``; the ``(B, V)`` logits of the next."""
        positions = state.positions + t
        cos = state.cos[positions][:, None, None]
        sin = state.sin[positions][:, None, None]
        slot = t if state.grouped else state.prompt_kv[0][0].shape[2] + t
        x = self.embed(tokens).unsqueeze(1)
        for w, (keys, values), (kp, vp) in zip(
            state.weights, state.cache, state.prompt_kv, strict=True
        ):

            def attend(
                q: torch.Tensor,
                k: torch.Tensor,
                v: torch.Tensor,
                keys: torch.Tensor = keys,
                values: torch.Tensor = values,
                kp: torch.Tensor = kp,
                vp: torch.Tensor = vp,
            ) -> torch.Tensor:
                keys[:, :, slot] = k[:, :, 0]
                values[:, :, slot] = v[:, :, 0]
                seen, vals = keys[:, :, : slot + 1], values[:, :, : slot + 1]
                if state.grouped:
                    return grouped_attention(
                        q, kp, vp, seen, vals, state.real, state.group, self.scale
                    )
                mask = None if state.mask is None else state.mask[..., : slot + 1]
                return self.sdpa(q, seen, vals, mask)

            x, _, _ = self.block(w, x, cos, sin, attend)
        return self.logits(x[:, 0])


def grouped_attention(
    q: torch.Tensor,
    kp: torch.Tensor,
    vp: torch.Tensor,
    kn: torch.Tensor,
    vn: torch.Tensor,
    real: torch.Tensor | None,
    group: int,
    scale: float,
) -> torch.Tensor:
    """Attention of queries ``(B, H, L, d)`` to their prompt's keys ``(U, Hkv, P, d)``, shared
    by the ``group`` consecutive rows of each prompt and read in place (one matmul per prompt
    and head), and to their own keys ``(B, Hkv, n, d)``, in one softmax: ``(B, H, L, d)``.

    ``real`` ``(U, 1, 1, P)``: False on prompt padding (None: none).
    """
    b, h, length, d = q.shape
    u, hkv, p, _ = kp.shape
    n, rep = kn.shape[2], h // hkv

    def grouped(x: torch.Tensor) -> torch.Tensor:  # (B, H, L, c) -> (U, Hkv, G*rep*L, c)
        x = x.reshape(u, group, hkv, rep * length, x.shape[-1]).transpose(1, 2)
        return x.reshape(u, hkv, group * rep * length, x.shape[-1])

    def ungrouped(x: torch.Tensor) -> torch.Tensor:  # the inverse
        x = x.view(u, hkv, group, rep * length, x.shape[-1]).transpose(1, 2)
        return x.reshape(b, h, length, x.shape[-1])

    scores_p = torch.matmul(grouped(q), kp.transpose(-1, -2))
    if real is not None:
        scores_p = scores_p.masked_fill(~real, float("-inf"))
    scores_n = torch.matmul(q.reshape(b, hkv, rep * length, d), kn.transpose(-1, -2))
    scores = torch.cat([scores_p, grouped(scores_n.view(b, h, length, n))], dim=-1)
    weights_p, weights_n = torch.softmax(scores * scale, dim=-1).split([p, n], dim=-1)
    out_n = torch.matmul(ungrouped(weights_n).reshape(b, hkv, rep * length, n), vn)
    return ungrouped(torch.matmul(weights_p, vp)) + out_n.view(b, h, length, d)


def _distinct(
    ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The U distinct prompts among ``(B, P)`` rows, and a function that spreads a
    ``(U, ...)`` tensor back to the B rows: by ``expand`` (whose gradient is a plain sum) when
    the rows are U consecutive blocks of G (a GRPO batch), else by an index."""
    b, p = ids.shape
    key = torch.cat([ids, mask.to(ids.dtype)], dim=1)
    new = torch.ones(b, dtype=torch.bool, device=ids.device)
    new[1:] = (key[1:] != key[:-1]).any(-1)
    starts = new.nonzero().squeeze(-1)
    group = b // len(starts)
    if group * len(starts) == b and bool((starts == torch.arange(0, b, group)).all()):
        first = key[starts]

        def expand(x: torch.Tensor) -> torch.Tensor:
            if group == 1:
                return x
            return x.unsqueeze(1).expand(x.shape[0], group, *x.shape[1:]).reshape(b, *x.shape[1:])

        return first[:, :p], first[:, p:].to(mask.dtype), expand
    uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
    return uniq[:, :p], uniq[:, p:].to(mask.dtype), lambda x: x.index_select(0, inverse)
