"""Action distributions against torch.distributions, and the running observation statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import AffineTransform, TanhTransform

from trustgrpo.policy.control import (
    Categorical,
    DiagGaussian,
    MLPPolicy,
    MultiCategorical,
    RunningNorm,
    make_distribution,
)


def test_factory_picks_the_head_from_the_space() -> None:
    assert isinstance(make_distribution(spaces.Discrete(3)), Categorical)
    assert isinstance(make_distribution(spaces.MultiDiscrete([2, 3])), MultiCategorical)
    assert isinstance(make_distribution(spaces.Box(-1.0, 1.0, (2,))), DiagGaussian)
    with pytest.raises(ValueError, match="expected Discrete, MultiDiscrete or Box"):
        make_distribution(spaces.MultiBinary(3))
    with pytest.raises(ValueError, match="finite action bounds"):
        make_distribution(spaces.Box(-np.inf, np.inf, (1,)), squash="tanh")


def test_categorical_and_multicategorical_log_probs() -> None:
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    raw = torch.tensor([0, 1, 2, 0, 1])
    cat = make_distribution(spaces.Discrete(3, start=-1))
    torch.testing.assert_close(
        cat.log_prob(logits[:, :3], raw), TorchCategorical(logits=logits[:, :3]).log_prob(raw)
    )
    assert cat.to_env(raw).tolist() == [-1, 0, 1, -1, 0]  # the space's start is added
    multi = make_distribution(spaces.MultiDiscrete([3, 4]))
    raw2 = torch.tensor([[0, 3], [1, 2], [2, 1], [0, 0], [1, 1]])
    want = TorchCategorical(logits=logits[:, :3]).log_prob(raw2[:, 0]) + TorchCategorical(
        logits=logits[:, 3:]
    ).log_prob(raw2[:, 1])
    torch.testing.assert_close(multi.log_prob(logits, raw2), want)
    want_h = (
        TorchCategorical(logits=logits[:, :3]).entropy()
        + TorchCategorical(logits=logits[:, 3:]).entropy()
    )
    torch.testing.assert_close(multi.entropy(logits), want_h)


def test_gaussian_clip_is_the_unclipped_density_and_clips_the_action() -> None:
    dist = make_distribution(spaces.Box(-2.0, 2.0, (2,)), log_std_init=-0.5)
    mean = torch.tensor([[0.0, 1.5], [3.0, -1.0]])
    raw = torch.tensor([[0.2, 2.5], [3.1, -3.0]])
    want = Normal(mean, torch.exp(torch.tensor(-0.5))).log_prob(raw).sum(-1)
    torch.testing.assert_close(dist.log_prob(mean, raw), want)
    assert dist.to_env(raw).tolist() == [[pytest.approx(0.2), 2.0], [2.0, -2.0]]
    assert dist.to_env(raw).dtype == np.float32


def test_gaussian_tanh_log_prob_is_the_change_of_variables() -> None:
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    dist = make_distribution(spaces.Box(low, high), squash="tanh")
    mean = torch.tensor([[0.3, -0.2], [-1.0, 0.5]], dtype=torch.float64)
    raw = torch.tensor([[0.5, -1.5], [-2.0, 0.1]], dtype=torch.float64)
    half = torch.tensor((high - low) / 2, dtype=torch.float64)
    ref = TransformedDistribution(
        Normal(mean, torch.ones(2, dtype=torch.float64)),
        [TanhTransform(), AffineTransform(torch.tensor(low, dtype=torch.float64) + half, half)],
    )
    action = torch.tensor(low, dtype=torch.float64) + (torch.tanh(raw) + 1) * half
    want = ref.log_prob(action).sum(-1)
    torch.testing.assert_close(
        dist.log_prob(mean.float(), raw.float()).double(), want, rtol=1e-5, atol=1e-5
    )
    env = dist.to_env(raw.float())
    assert np.all(env >= low) and np.all(env <= high)
    np.testing.assert_allclose(env, action.numpy(), rtol=1e-6)


def test_sampling_is_reproducible_with_a_generator() -> None:
    policy = MLPPolicy(3, spaces.Box(-1.0, 1.0, (2,)), hidden_sizes=(8,))
    obs = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    a1, e1 = policy.act(obs, torch.Generator().manual_seed(5))
    a2, e2 = policy.act(obs, torch.Generator().manual_seed(5))
    a3, _ = policy.act(obs, torch.Generator().manual_seed(6))
    assert torch.equal(a1, a2) and np.array_equal(e1, e2) and not torch.equal(a1, a3)
    logp, ent = policy.log_prob(obs, a1)
    assert logp.shape == (4,) and ent.shape == (4,)
    assert "log_std" in dict(policy.named_parameters())


def test_running_norm_matches_numpy_over_batches() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(3.0, 2.0, size=(n, 2)) for n in (5, 17, 1, 40)]
    norm = RunningNorm(2)
    x0 = torch.tensor(parts[0])
    assert torch.equal(norm(x0), x0)  # no statistics yet: the identity
    for p in parts:
        norm.update(torch.tensor(p))
    allx = np.concatenate(parts)
    np.testing.assert_allclose(norm.mean.numpy(), allx.mean(0), rtol=1e-12)
    np.testing.assert_allclose(norm.var.numpy(), allx.var(0), rtol=1e-12)
    assert float(norm.count) == len(allx)
    y = norm(torch.tensor(allx)).numpy()
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-9)
