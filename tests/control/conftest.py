"""Tiny hand-built Gymnasium environments (real ``gymnasium.Env`` subclasses, registered under
``trustgrpo_test/``) whose episodes and learning signal are known exactly."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Corridor(gym.Env[np.ndarray, np.int64]):
    """Action 1 walks on (+1), action 0 stops (reward 0, terminated). Observation: [t].
    Registered with a time limit of 3 steps, so walking three times is *truncated*."""

    observation_space = spaces.Box(0.0, 10.0, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        walk = int(action) == 1
        return np.array([self.t], np.float32), float(walk), not walk, False, {}


class Reach(gym.Env[np.ndarray, np.ndarray]):
    """Box actions: the seeded start state is a target in [-1, 1]^2; each of 5 steps pays
    ``-|a - target|^2``. A policy must learn to output its observation."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.target = self.np_random.uniform(-0.8, 0.8, 2).astype(np.float32)
        return self.target.copy(), {}

    def step(self, action: Any) -> Any:
        cost = float(np.sum((np.asarray(action, np.float64) - self.target) ** 2))
        return self.target.copy(), -cost, False, False, {}


class Match(gym.Env[np.ndarray, np.ndarray]):
    """MultiDiscrete([3, 3]) actions: the seeded start state is a target pair shown one-hot;
    each of 4 steps pays 1 per component that matches the target."""

    observation_space = spaces.Box(0.0, 1.0, (6,), np.float32)
    action_space = spaces.MultiDiscrete([3, 3])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.target = self.np_random.integers(0, 3, 2)
        obs = np.zeros(6, np.float32)
        obs[self.target[0]] = obs[3 + self.target[1]] = 1.0
        self.obs = obs
        return obs.copy(), {}

    def step(self, action: Any) -> Any:
        hits = float(np.sum(np.asarray(action) == self.target))
        return self.obs.copy(), hits, False, False, {}


_ENVS: tuple[tuple[str, type[gym.Env[Any, Any]], int | None], ...] = (
    ("Corridor", Corridor, 3),
    ("Reach", Reach, 5),
    ("Match", Match, 4),
    ("NoLimit", Corridor, None),  # no registered time limit
)
for _name, _cls, _limit in _ENVS:
    _id = f"trustgrpo_test/{_name}-v0"
    if _id not in gym.registry:
        gym.register(_id, entry_point=_cls, max_episode_steps=_limit)
