"""The GRPO objective: clipped surrogate, KL to a reference, and loss aggregation.

For completion i with tokens t, advantage A_i, current log-prob ``logp`` and the log-prob under
the policy that sampled it ``old_logp``::

    ratio_{i,t} = exp(logp_{i,t} - old_logp_{i,t})                        (token level, GRPO)
    ratio_{i}   = exp(mean_t (logp_{i,t} - old_logp_{i,t}))               (sequence level, GSPO)
    L_{i,t}     = -min(ratio * A_i, clip(ratio, 1 - eps_low, 1 + eps_high) * A_i)
                  + beta * KL_k3(pi_theta || pi_ref)_{i,t}

Choices, and where they depart from the papers:

1. Clip-higher (DAPO, arXiv:2503.14476): separate ``epsilon_low`` and ``epsilon_high``; with
   both 0.2 this is the PPO/GRPO clip.
2. KL: the k3 estimator ``exp(ref - logp) - (ref - logp) - 1`` (DeepSeekMath, arXiv:2402.03300,
   eq. 4), added to the loss, never to the reward. ``beta = 0`` (the default, as in TRL and
   DAPO) skips it and the trainer loads no reference model.
3. GSPO (arXiv:2507.18071): the sequence ratio is the length-normalised geometric mean of the
   token ratios; it is clipped per sequence and applied to every token of the sequence.
4. Aggregation: ``token_mean`` averages over every completion token of the batch (DAPO's
   token-level loss); ``sequence_mean`` averages per sequence then over sequences (the
   original GRPO 1/|o_i| normalisation, which Dr. GRPO arXiv:2503.20783 shows lengthens wrong
   answers); ``dr_grpo`` sums and divides by ``num_sequences * max_completion_length``,
   a constant.
5. With ``num_iterations == 1`` the old policy is the current one: ``old_logp`` is
   ``logp.detach()``, the ratio is 1 and only its gradient matters; no extra forward pass is run.
6. Advantages are ``(B,)`` (outcome supervision: one per sequence, given to every token) or
   ``(B, T)`` (process supervision: one per token or action, DeepSeekMath §4.1.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Aggregation = Literal["token_mean", "sequence_mean", "dr_grpo"]
ISLevel = Literal["token", "sequence"]


@dataclass(frozen=True)
class LossStats:
    """Diagnostics of one loss evaluation (plain floats)."""

    kl: float
    clip_low: float
    clip_high: float
    ratio_mean: float


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi_theta || pi_ref); always ≥ 0."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def importance_ratio(
    logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, level: ISLevel
) -> torch.Tensor:
    """Token ratios ``(B, T)``, or sequence ratios broadcast to ``(B, T)`` for GSPO."""
    log_ratio = logp - old_logp
    if level == "token":
        return torch.exp(log_ratio)
    if level != "sequence":
        raise ValueError(f"importance_sampling: expected 'token' or 'sequence', got {level!r}")
    seq = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return torch.exp(seq).unsqueeze(-1).expand_as(logp)


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: Aggregation,
    *,
    max_completion_length: int,
    total_tokens: float | None = None,
    total_sequences: int | None = None,
) -> torch.Tensor:
    """Reduce a ``(B, T)`` per-token loss to a scalar.

    ``total_tokens`` / ``total_sequences`` are the whole batch's counts when this call sees only
    a micro-batch, so that micro-batch losses add up to the full-batch loss.
    """
    masked = per_token * mask
    if mode == "token_mean":
        denom = total_tokens if total_tokens is not None else mask.sum().clamp(min=1.0)
        return masked.sum() / denom
    n_seq = total_sequences if total_sequences is not None else per_token.shape[0]
    if mode == "sequence_mean":
        per_seq = masked.sum(-1) / mask.sum(-1).clamp(min=1.0)
        return per_seq.sum() / n_seq
    if mode == "dr_grpo":
        return masked.sum() / (n_seq * max_completion_length)
    raise ValueError(
        f"loss_aggregation: expected 'token_mean', 'sequence_mean' or 'dr_grpo', got {mode!r}"
    )


def grpo_loss(
    logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    beta: float = 0.0,
    aggregation: Aggregation = "token_mean",
    importance_sampling: ISLevel = "token",
    max_completion_length: int | None = None,
    total_tokens: float | None = None,
    total_sequences: int | None = None,
) -> tuple[torch.Tensor, LossStats]:
    """The GRPO loss of a (micro-)batch.

    Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``mask``: ``(B, T)``; ``advantages``: ``(B,)``
    (one per sequence) or ``(B, T)`` (one per token or action: process supervision).
    ``mask`` is 1 on completion tokens that count and 0 on padding (and on truncated
    completions when they are masked).
    """
    mask = mask.to(logp.dtype)
    old = logp.detach() if old_logp is None else old_logp
    ratio = importance_ratio(logp, old, mask, importance_sampling)
    if advantages.dim() == 1:
        adv = advantages.to(logp.dtype).unsqueeze(-1)
    elif advantages.shape == logp.shape:
        adv = advantages.to(logp.dtype)
    else:
        raise ValueError(
            f"advantages: expected shape ({logp.shape[0]},) or {tuple(logp.shape)}, "
            f"got {tuple(advantages.shape)}"
        )
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl_mean = 0.0
    if beta > 0.0:
        if ref_logp is None:
            raise ValueError("ref_logp: required when beta > 0")
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + beta * kl
        kl_mean = float(((kl * mask).sum() / mask.sum().clamp(min=1.0)).detach())
    loss = aggregate(
        per_token,
        mask,
        aggregation,
        max_completion_length=max_completion_length or logp.shape[1],
        total_tokens=total_tokens,
        total_sequences=total_sequences,
    )
    with torch.no_grad():
        n = mask.sum().clamp(min=1.0)
        low = ((ratio < 1.0 - epsilon_low) & (adv < 0)).to(mask.dtype)
        high = ((ratio > 1.0 + epsilon_high) & (adv > 0)).to(mask.dtype)
        stats = LossStats(
            kl=kl_mean,
            clip_low=float((low * mask).sum() / n),
            clip_high=float((high * mask).sum() / n),
            ratio_mean=float((ratio * mask).sum() / n),
        )
    return loss, stats
