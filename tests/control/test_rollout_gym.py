"""Rollouts: seeded start states shared within a group, a queue of episodes over fewer
sub-environments, and the flat layout the update reads."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from trustgrpo.policy.control import MLPPolicy
from trustgrpo.rollout.gym import EpisodeCollector, eval_seeds, group_seed


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_queued_episodes_start_from_their_seeded_state(mode: str) -> None:
    seeds = [group_seed(0, 1, k) for k in (0, 1) for _ in range(3)] + [123]
    collector = EpisodeCollector("Pendulum-v1", {}, 30, num_envs=3, vectorization=mode)
    policy = MLPPolicy(3, collector.action_space, hidden_sizes=(8,))
    eps = collector.collect(policy, seeds, torch.Generator().manual_seed(0))
    collector.close()
    assert eps.lengths.tolist() == [30] * 7 and eps.truncated.all() and not eps.terminated.any()
    assert sorted(eps.finish_order.tolist()) == list(range(7))
    env = gym.make("Pendulum-v1")
    firsts = eps.obs[torch.from_numpy(eps.offsets[:-1])].numpy()
    for seed, first in zip(seeds, firsts, strict=True):
        np.testing.assert_array_equal(first, env.reset(seed=seed)[0])
    # a group shares its start state; groups differ
    assert np.array_equal(firsts[0], firsts[2]) and not np.array_equal(firsts[0], firsts[3])
    # different actions within a group: the episodes diverge
    assert not np.array_equal(eps.episode_rewards(0), eps.episode_rewards(1))
    assert eps.obs.shape == (210, 3) and eps.raw_actions.shape == (210, 1)
    assert eps.env_actions.dtype == np.float32 and np.abs(eps.env_actions).max() <= 2.0
    if mode == "sync":  # only running episodes are stepped
        assert eps.steps_simulated == 210
    else:
        assert eps.steps_simulated >= 210
    np.testing.assert_array_equal(eps.padded_rewards()[1], eps.episode_rewards(1))


def test_seeds_are_fixed_functions_of_the_run_seed() -> None:
    assert group_seed(0, 1, 0) == group_seed(0, 1, 0)
    assert len({group_seed(0, s, k) for s in range(1, 20) for k in range(8)}) == 19 * 8
    assert group_seed(1, 1, 0) != group_seed(0, 1, 0)
    assert eval_seeds(0, 3) == eval_seeds(0, 5)[:3]
    assert all(0 <= s < 2**31 for s in eval_seeds(0, 5))
