"""The GRPO loss against hand-computed values, for every variant."""

from __future__ import annotations

import math

import pytest
import torch

from trustgrpo.loss import aggregate, grpo_loss, importance_ratio, k3_kl

MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
ADV = torch.tensor([1.0, -1.0])


def _logp() -> torch.Tensor:
    return torch.log(torch.full((2, 3), 0.5)).requires_grad_(True)


def test_on_policy_token_mean_value_and_gradient() -> None:
    logp = _logp()
    loss, stats = grpo_loss(logp, ADV, MASK, aggregation="token_mean")
    # ratio 1 everywhere: per-token loss -A; (-1 -1 + 1 + 1 + 1) / 5
    assert loss.item() == pytest.approx(0.2)
    loss.backward()
    expected = -(ADV.unsqueeze(-1) * MASK) / 5
    torch.testing.assert_close(logp.grad, expected)
    assert stats.ratio_mean == pytest.approx(1.0)


def test_sequence_mean_and_dr_grpo() -> None:
    loss, _ = grpo_loss(_logp(), ADV, MASK, aggregation="sequence_mean")
    assert loss.item() == pytest.approx((-1.0 + 1.0) / 2)
    loss, _ = grpo_loss(_logp(), ADV, MASK, aggregation="dr_grpo", max_completion_length=4)
    assert loss.item() == pytest.approx((-2.0 + 3.0) / (2 * 4))


def test_micro_batch_normalisers_add_up() -> None:
    full, _ = grpo_loss(_logp(), ADV, MASK, aggregation="token_mean")
    parts = [
        grpo_loss(_logp()[i : i + 1], ADV[i : i + 1], MASK[i : i + 1], total_tokens=5.0)[0]
        for i in range(2)
    ]
    assert sum(p.item() for p in parts) == pytest.approx(full.item())


def test_clip_symmetric_and_clip_higher() -> None:
    logp = torch.log(torch.tensor([[1.5]])).requires_grad_(True)
    old = torch.zeros((1, 1))
    m = torch.ones((1, 1))
    pos = torch.tensor([1.0])
    loss, stats = grpo_loss(logp, pos, m, old_logp=old, epsilon_high=0.2)
    assert loss.item() == pytest.approx(-1.2)
    loss.backward()
    assert logp.grad is not None and logp.grad.item() == 0.0  # clipped: no gradient
    assert stats.clip_high == 1.0
    loss, _ = grpo_loss(logp, pos, m, old_logp=old, epsilon_high=0.28)
    assert loss.item() == pytest.approx(-1.28)
    # negative advantage, ratio 0.5 < 1 - 0.2: min(-0.5, -0.8) = -0.8 -> loss 0.8
    low = torch.log(torch.tensor([[0.5]]))
    loss, stats = grpo_loss(low, torch.tensor([-1.0]), m, old_logp=old, epsilon_low=0.2)
    assert loss.item() == pytest.approx(0.8)
    assert stats.clip_low == 1.0


def test_k3_kl_value_and_penalty() -> None:
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    expected = 0.5 - math.log(0.5) - 1.0
    assert k3_kl(logp, ref).item() == pytest.approx(expected)
    loss, stats = grpo_loss(logp, torch.tensor([0.0]), torch.ones((1, 1)), ref_logp=ref, beta=0.1)
    assert loss.item() == pytest.approx(0.1 * expected)
    assert stats.kl == pytest.approx(expected)
    assert k3_kl(ref, ref).item() == 0.0


def test_beta_without_reference_is_an_error() -> None:
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(_logp(), ADV, MASK, beta=0.1)


def test_gspo_sequence_ratio() -> None:
    logp = torch.tensor([[math.log(2.0), 0.0]])
    old = torch.zeros((1, 2))
    m = torch.ones((1, 2))
    ratio = importance_ratio(logp, old, m, "sequence")
    torch.testing.assert_close(ratio, torch.full((1, 2), math.sqrt(2.0)))
    loss, _ = grpo_loss(logp, torch.tensor([1.0]), m, old_logp=old, importance_sampling="sequence")
    assert loss.item() == pytest.approx(-1.2)  # sqrt(2) clipped to 1.2 for both tokens
    # padding does not enter the sequence ratio
    padded = importance_ratio(
        torch.tensor([[math.log(2.0), 5.0]]), old, torch.tensor([[1.0, 0.0]]), "sequence"
    )
    assert padded[0, 0].item() == pytest.approx(2.0)


def test_unknown_modes_are_errors() -> None:
    with pytest.raises(ValueError, match="loss_aggregation"):
        aggregate(torch.ones(1, 1), torch.ones(1, 1), "mean", max_completion_length=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="importance_sampling"):
        importance_ratio(torch.ones(1, 1), torch.ones(1, 1), torch.ones(1, 1), "seq")  # type: ignore[arg-type]


def test_per_token_advantages_for_process_supervision() -> None:
    """``(B, T)`` advantages (one per action) weigh each position by its own advantage; a
    ``(B, T)`` tensor that repeats ``(B,)`` gives exactly the sequence-advantage loss."""
    per_token = torch.tensor([[1.0, 2.0, 5.0], [-1.0, 0.5, 3.0]])
    logp = _logp()
    loss, _ = grpo_loss(logp, per_token, MASK, aggregation="token_mean")
    # on policy: per-token loss -A; masked mean over (1, 2, -1, 0.5, 3)
    assert loss.item() == pytest.approx(-(1.0 + 2.0 - 1.0 + 0.5 + 3.0) / 5)
    loss.backward()
    torch.testing.assert_close(logp.grad, -(per_token * MASK) / 5)
    same, _ = grpo_loss(_logp(), ADV.unsqueeze(-1).expand(2, 3), MASK)
    ref, _ = grpo_loss(_logp(), ADV, MASK)
    assert same.item() == ref.item()
    with pytest.raises(ValueError, match="advantages: expected shape"):
        grpo_loss(_logp(), torch.ones(2, 2), MASK)
