"""Gymnasium rollouts for GRPO: groups of G episodes that share one seeded start state.

A step runs ``prompts_per_step`` groups. Group k of step s starts every one of its G episodes
with ``reset(seed=group_seed(run_seed, s, k))``, so the group shares its start state (and, for
environments with seeded noise, its noise), and the group's advantage compares actions, not
luck. The seed is recorded with each episode (the ledger's ``prompt_id``).

Episodes run in the sub-environments of a Gymnasium vector environment (``SyncVectorEnv`` or
``AsyncVectorEnv``, autoreset disabled): when a sub-environment's episode ends (terminated or
truncated, as Gymnasium defines them) it is reset with the seed of the next waiting episode;
once none is waiting it idles. ``sync`` steps only the sub-environments that run an episode
(``SyncVectorEnv.step`` would step the idle ones too); ``async`` must step them all
(``AsyncVectorEnv.step``), so an idle one repeats a running one's action, is reset unseeded
when it ends, and its steps are discarded (counted in ``steps_simulated`` only).

Actions are sampled for the running episodes with one ``torch.Generator`` per step, so the
same seed and step give the same episodes, bit for bit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trustgrpo.verifiers.env import make_env


def group_seed(run_seed: int, step: int, group: int) -> int:
    """The reset seed shared by group ``group`` of step ``step`` (a 31-bit integer)."""
    state = np.random.SeedSequence([run_seed, step, group, 0x6E76]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def eval_seeds(run_seed: int, n: int) -> list[int]:
    """Seeds of the greedy evaluation episodes (fixed for a run; never a training seed's
    stream: training uses ``(seed, step, group)``, evaluation ``(seed, 'eval')``)."""
    states = np.random.SeedSequence([run_seed, 0x6576616C]).generate_state(max(n, 1))
    return [int(s) & 0x7FFFFFFF for s in states[:n]]


def env_metadata(env_id: str) -> dict[str, Any]:
    """Environment id, its registered version and the Gymnasium version."""
    import gymnasium as gym

    spec = gym.spec(env_id)
    return {"env": env_id, "env_version": spec.version, "gymnasium": gym.__version__}


@dataclass
class Episodes:
    """The episodes of one rollout, steps laid out episode by episode in time order."""

    seeds: np.ndarray
    """``(E,)`` reset seed of each episode."""
    lengths: np.ndarray
    """``(E,)`` number of actions of each episode."""
    terminated: np.ndarray
    """``(E,)`` ended in a terminal state."""
    truncated: np.ndarray
    """``(E,)`` cut by the time limit (or another truncation)."""
    obs: torch.Tensor
    """``(N, obs_dim)`` raw float32 observation before each action (N = total steps)."""
    raw_actions: torch.Tensor
    """``(N, ...)`` what the policy sampled (the update re-evaluates their log-probabilities)."""
    env_actions: np.ndarray
    """``(N, ...)`` what the environment received."""
    rewards: np.ndarray
    """``(N,)`` float64 reward of each step."""
    finish_order: np.ndarray
    """``(E,)`` episode indices in the order the episodes ended."""
    steps_simulated: int
    """Environment steps taken, idle sub-environments included."""

    @property
    def offsets(self) -> np.ndarray:
        """``(E + 1,)`` start of each episode's steps in the flat arrays."""
        return np.concatenate([[0], np.cumsum(self.lengths)])

    def episode_rewards(self, i: int) -> np.ndarray:
        o = self.offsets
        return self.rewards[o[i] : o[i + 1]]

    def padded_rewards(self) -> np.ndarray:
        """``(E, T)`` rewards, zero after each episode's end (T = longest episode)."""
        e, horizon = len(self.lengths), int(self.lengths.max(initial=0))
        out = np.zeros((e, horizon))
        out[self.episode_index(), self.time_index()] = self.rewards
        return out

    def episode_index(self) -> np.ndarray:
        """``(N,)`` episode of each step."""
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    def time_index(self) -> np.ndarray:
        """``(N,)`` position of each step within its episode."""
        return np.arange(int(self.lengths.sum())) - np.repeat(self.offsets[:-1], self.lengths)


class EpisodeCollector:
    """Runs batches of seeded episodes in one (lazily made) Gymnasium vector environment."""

    def __init__(
        self,
        env_id: str,
        kwargs: Mapping[str, Any],
        max_episode_steps: int,
        num_envs: int,
        vectorization: str = "sync",
    ) -> None:
        self.env_id = env_id
        self.kwargs = dict(kwargs)
        self.max_episode_steps = max_episode_steps
        self.num_envs = num_envs
        self.vectorization = vectorization
        self._vec: Any = None
        probe = make_env(env_id, kwargs, max_episode_steps)
        self.observation_space = probe.observation_space
        self.action_space = probe.action_space
        self.max_steps = int(probe.spec.max_episode_steps or 0)
        """The time limit in force."""
        probe.close()

    def _env(self) -> Any:
        if self._vec is None:
            import gymnasium as gym
            from gymnasium.vector import AutoresetMode

            fns = [self._make_one for _ in range(self.num_envs)]
            cls = gym.vector.AsyncVectorEnv if self.vectorization == "async" else None
            if cls is not None:
                self._vec = cls(fns, autoreset_mode=AutoresetMode.DISABLED)
            else:
                self._vec = gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED)
        return self._vec

    def _make_one(self) -> Any:
        return make_env(self.env_id, self.kwargs, self.max_episode_steps)

    def collect(
        self,
        policy: Any,
        seeds: Sequence[int],
        generator: torch.Generator | None,
        deterministic: bool = False,
    ) -> Episodes:
        """Run one episode per entry of ``seeds`` with ``policy`` (an ``MLPPolicy``)."""
        vec = self._env()
        slots = _Sync(vec) if self.vectorization == "sync" else _Vector(vec)
        n = len(seeds)
        waiting = deque(range(n))
        owner = np.full(vec.num_envs, -1)
        for i in range(vec.num_envs):
            if waiting:
                owner[i] = waiting.popleft()
        obs_dim = int(np.prod(self.observation_space.shape))
        obs = np.zeros((vec.num_envs, obs_dim), np.float32)
        start = np.flatnonzero(owner >= 0)
        obs[start] = slots.reset(start, [int(seeds[owner[i]]) for i in start], first=True)
        hist_obs, hist_raw, hist_act, hist_rew, hist_owner = [], [], [], [], []
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        order: list[int] = []
        policy.eval()
        while (active := np.flatnonzero(owner >= 0)).size:
            x = torch.from_numpy(obs[active])  # a copy: fancy indexing
            raw, act = policy.act(x, generator, deterministic)
            next_obs, rew, term, trunc = slots.step(active, act)
            hist_obs.append(x)
            hist_raw.append(raw)
            hist_act.append(act)
            hist_rew.append(rew)
            hist_owner.append(owner[active])
            obs[active] = next_obs.reshape(len(active), obs_dim)
            ended = np.flatnonzero(np.logical_or(term, trunc))
            if ended.size:
                fresh, fresh_seeds = [], []
                for j in ended.tolist():
                    i, e = int(active[j]), int(owner[active[j]])
                    terminated[e], truncated[e] = bool(term[j]), bool(trunc[j])
                    order.append(e)
                    owner[i] = waiting.popleft() if waiting else -1
                    if owner[i] >= 0:
                        fresh.append(i)
                        fresh_seeds.append(int(seeds[owner[i]]))
                if fresh:
                    obs[fresh] = slots.reset(np.asarray(fresh), fresh_seeds)
        return _assemble(
            seeds, hist_obs, hist_raw, hist_act, hist_rew, hist_owner,
            terminated, truncated, order, slots.simulated,
        )  # fmt: skip

    def close(self) -> None:
        """Close the vector environment (a later ``collect`` makes a new one)."""
        if self._vec is not None:
            self._vec.close()
            self._vec = None


class _Sync:
    """A ``SyncVectorEnv``'s sub-environments stepped directly, only those running an episode
    (``SyncVectorEnv.step`` would also step the idle ones, to be discarded)."""

    def __init__(self, vec: Any) -> None:
        self.envs = vec.envs
        self.simulated = 0

    def reset(self, idx: np.ndarray, seeds: list[int], first: bool = False) -> np.ndarray:
        rows = [self.envs[i].reset(seed=s)[0] for i, s in zip(idx.tolist(), seeds, strict=True)]
        return np.asarray(rows, np.float32).reshape(len(rows), -1)

    def step(self, idx: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        out = [self.envs[i].step(a) for i, a in zip(idx.tolist(), actions, strict=True)]
        self.simulated += len(out)
        obs = np.asarray([o[0] for o in out], np.float32).reshape(len(out), -1)
        rew = np.array([float(o[1]) for o in out], np.float64)
        term = np.array([bool(o[2]) for o in out])
        trunc = np.array([bool(o[3]) for o in out])
        return obs, rew, term, trunc


class _Vector:
    """Any Gymnasium vector environment (autoreset disabled): every sub-environment steps;
    idle ones get a copy of a running one's action, and are reset, unseeded, when they end."""

    def __init__(self, vec: Any) -> None:
        self.vec = vec
        self.n = vec.num_envs
        self.ended = np.zeros(self.n, bool)
        self.simulated = 0

    def reset(self, idx: np.ndarray, seeds: list[int], first: bool = False) -> np.ndarray:
        seed_list: list[int | None] = [None] * self.n
        for i, s in zip(idx.tolist(), seeds, strict=True):
            seed_list[i] = s
        if first:
            obs, _ = self.vec.reset(seed=seed_list)
            self.ended[:] = False
        else:
            mask = np.zeros(self.n, bool)
            mask[idx] = True
            obs, _ = self.vec.reset(seed=seed_list, options={"reset_mask": mask})
            self.ended[idx] = False
        return np.asarray(obs, np.float32).reshape(self.n, -1)[idx]

    def step(self, idx: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        idle = np.ones(self.n, bool)
        idle[idx] = False
        stale = self.ended & idle
        if stale.any():  # autoreset is off: an ended sub-environment must be reset to step
            self.vec.reset(options={"reset_mask": stale})
            self.ended[stale] = False
        full = np.repeat(actions[:1], self.n, axis=0)
        full[idx] = actions
        obs, rew, term, trunc, _ = self.vec.step(full)
        self.simulated += self.n
        self.ended = np.logical_or(term, trunc)
        obs = np.asarray(obs, np.float32).reshape(self.n, -1)
        return obs[idx], np.asarray(rew, np.float64)[idx], term[idx], trunc[idx]


def _assemble(
    seeds: Sequence[int],
    hist_obs: list[torch.Tensor],
    hist_raw: list[torch.Tensor],
    hist_act: list[np.ndarray],
    hist_rew: list[np.ndarray],
    hist_owner: list[np.ndarray],
    terminated: np.ndarray,
    truncated: np.ndarray,
    order: list[int],
    simulated: int,
) -> Episodes:
    """Per-iteration histories (rows of the running episodes) as flat per-episode arrays."""
    n = len(seeds)
    owner = np.concatenate(hist_owner)  # iteration-major: an episode's steps in time order
    idx = np.argsort(owner, kind="stable")
    pick = torch.from_numpy(idx)
    obs = torch.cat(hist_obs)[pick]
    raw = torch.cat(hist_raw)[pick]
    act = np.concatenate(hist_act)[idx]
    rew = np.concatenate(hist_rew)[idx]
    lengths = np.bincount(owner, minlength=n)
    return Episodes(
        seeds=np.asarray(seeds, dtype=np.int64),
        lengths=lengths,
        terminated=terminated,
        truncated=truncated,
        obs=obs,
        raw_actions=raw,
        env_actions=act,
        rewards=rew,
        finish_order=np.asarray(order, dtype=np.int64),
        steps_simulated=simulated,
    )


__all__ = ["EpisodeCollector", "Episodes", "env_metadata", "eval_seeds", "group_seed"]
