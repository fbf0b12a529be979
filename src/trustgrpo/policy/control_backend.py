"""The control backend: GRPO on Gymnasium environments, the environment as the verifier.

A sequence is an episode and a position an action. Each step runs ``prompts_per_step`` groups
of ``num_generations`` episodes from one seeded start state per group
(:mod:`trustgrpo.rollout.gym`). Every episode becomes a :class:`~trustgrpo.verifiers.Sample`
for the ledger:

* ``prompt_id``: the reset seed; ``prompt``: ``{"env": id, "seed": seed}``;
* ``completion``: the JSON action sequence (the action blob);
* ``metadata``: environment id and version, Gymnasium version, seed, return, length,
  terminated, truncated; ``num_tokens``: the length; ``truncated``: cut by the time limit.

Its outcome comes from the ``env`` verifier (:mod:`trustgrpo.verifiers.env`) with the return
the rollout just computed; ``audit replay`` rebuilds that verifier from the recorded run file
and re-simulates the episode from the seed and the actions.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustgrpo.backend import Batch, step_seed
from trustgrpo.checkpoint import WEIGHTS_FILE
from trustgrpo.config import Config
from trustgrpo.errors import UserError, VerifierError
from trustgrpo.policy.control import MLPPolicy, observation_dim
from trustgrpo.policy.lm import state_digest
from trustgrpo.rollout.gym import EpisodeCollector, Episodes, env_metadata, eval_seeds, group_seed
from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.compose import RewardResult
from trustgrpo.verifiers.env import (
    EnvVerifier,
    describe_start,
    env_source_sha256,
    episode_return,
    format_actions,
    make_env,
)

POLICY_FILE = "policy.json"
SELF_TEST_EPISODES = 4


@dataclass
class ControlData:
    """A step's episodes with the index tensors the update uses."""

    episodes: Episodes
    episode_index: torch.Tensor
    """``(N,)`` episode (row of the batch) of each step."""
    time_index: torch.Tensor
    """``(N,)`` position of each step in its episode."""
    simulate_ms: float
    """Wall time of the rollout per episode."""


def build_policy(cfg: Config, observation_space: Any, action_space: Any) -> MLPPolicy:
    """The ``[control]`` MLP for these spaces, initialised from ``run.seed``."""
    c = cfg.control
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        return MLPPolicy(
            observation_dim(observation_space),
            action_space,
            hidden_sizes=c.hidden_sizes,
            activation=c.activation,
            normalize_obs=c.normalize_obs,
            squash=c.squash,
            log_std_init=c.log_std_init,
        )


class ControlBackend:
    """Gymnasium control tasks (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        from trustgrpo.verifiers import build_reward

        cfg = self.config = config
        e, g = cfg.env, cfg.grpo
        self.reward = build_reward(cfg)
        verifier = self.reward.components[0].verifier
        assert isinstance(verifier, EnvVerifier)
        self.verifier = verifier
        self.collector = EpisodeCollector(
            e.id,
            e.kwargs,
            e.max_episode_steps,
            e.num_envs or g.prompts_per_step * g.num_generations,
            e.vectorization,
        )
        self.meta = env_metadata(e.id)
        spaces = self.collector.observation_space, self.collector.action_space
        self.model = build_policy(cfg, *spaces)
        self.train_prompts: list[Any] = []
        self.eval_prompts: list[Any] = []
        self.initial_digest = state_digest(self.model)
        self.env_steps = 0
        self.env_steps_simulated = 0
        spec_limit = self.collector.max_steps
        self.max_length = e.max_episode_steps or spec_limit

    # ------------------------------------------------------------------ rollout

    def rollout(self, step: int) -> Batch:
        cfg = self.config
        n_groups, size = cfg.grpo.prompts_per_step, cfg.grpo.num_generations
        seeds = np.repeat([group_seed(cfg.run.seed, step, k) for k in range(n_groups)], size)
        gen = torch.Generator().manual_seed(step_seed(cfg.run.seed, step))
        t0 = time.perf_counter()
        eps = self.collector.collect(self.model, seeds.tolist(), gen)
        ms = (time.perf_counter() - t0) * 1000.0 / len(seeds)
        self.env_steps += int(eps.lengths.sum())
        self.env_steps_simulated += eps.steps_simulated
        horizon = int(eps.lengths.max())
        mask = torch.arange(horizon).unsqueeze(0) < torch.from_numpy(eps.lengths).unsqueeze(1)
        data = ControlData(
            eps,
            torch.from_numpy(eps.episode_index()),
            torch.from_numpy(eps.time_index()),
            ms,
        )
        return Batch(
            samples=self._samples(eps, size),
            mask=mask.long(),
            truncated=torch.from_numpy(eps.truncated.copy()),
            data=data,
            step_rewards=eps.padded_rewards(),
            terminated=eps.terminated.copy(),
        )

    def _samples(self, eps: Episodes, size: int) -> list[Sample]:
        env_id = self.config.env.id
        off = eps.offsets
        out: list[Sample] = []
        prompt = ""
        for i, seed in enumerate(eps.seeds.tolist()):
            if i % size == 0:  # one prompt object per group (the ledger stores it once)
                prompt = describe_start(env_id, seed)
            rewards = eps.rewards[off[i] : off[i + 1]]
            length = int(eps.lengths[i])
            meta = {
                **self.meta,
                "seed": seed,
                "return": episode_return(rewards),
                "length": length,
                "terminated": bool(eps.terminated[i]),
                "truncated": bool(eps.truncated[i]),
            }
            out.append(
                Sample(
                    prompt_id=str(seed),
                    group_id=i // size,
                    index=i % size,
                    prompt=prompt,
                    completion=format_actions(eps.env_actions[off[i] : off[i + 1]]),
                    reference=None,
                    metadata=meta,
                    num_tokens=length,
                    truncated=bool(eps.truncated[i]),
                )
            )
        return out

    def verify(self, batch: Batch) -> RewardResult:
        """The environment's outcome of each episode (its return), from the rollout."""
        data: ControlData = batch.data
        eps = data.episodes
        off = eps.offsets
        outcomes = [
            [
                self.verifier.outcome(
                    int(seed),
                    eps.rewards[off[i] : off[i + 1]],
                    bool(eps.terminated[i]),
                    bool(eps.truncated[i]),
                    data.simulate_ms,
                )
            ]
            for i, seed in enumerate(eps.seeds.tolist())
        ]
        return self.reward.combine(outcomes)

    def logprobs(
        self, model: nn.Module, batch: Batch, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        data: ControlData = batch.data
        eps = data.episodes
        b, horizon = batch.mask.shape
        ep, t = data.episode_index, data.time_index
        obs, raw = eps.obs, eps.raw_actions
        if rows is not None:
            rowmap = torch.full((b,), -1, dtype=torch.long)
            rowmap[rows] = torch.arange(len(rows))
            sel = rowmap[ep] >= 0
            obs, raw, ep, t = obs[sel], raw[sel], rowmap[ep[sel]], t[sel]
            b = len(rows)
        logp, entropy = model.log_prob(obs, raw)  # type: ignore[operator]
        out = torch.zeros((b, horizon), dtype=logp.dtype).index_put((ep, t), logp)
        return out, entropy.detach().mean() if entropy.numel() else torch.tensor(0.0)

    def reference(self) -> nn.Module:
        ref = copy.deepcopy(self.model)
        ref.eval().requires_grad_(False)
        return ref

    def after_update(self, batch: Batch) -> None:
        """Fold the step's observations into the running statistics (after the update, so
        that the update saw what the rollout saw)."""
        if self.model.obs_norm is not None:
            self.model.obs_norm.update(batch.data.episodes.obs)

    def step_metrics(self, batch: Batch) -> dict[str, float]:
        eps: Episodes = batch.data.episodes
        return {
            "episodes/mean_length": float(eps.lengths.mean()),
            "episodes/terminated_frac": float(eps.terminated.mean()),
            "episodes/truncated_frac": float(eps.truncated.mean()),
            "env/steps": float(self.env_steps),
            "env/steps_simulated": float(self.env_steps_simulated),
        }

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self, prompts: Sequence[Any] | None = None, batch_size: int = 0
    ) -> dict[str, float]:
        """Greedy episodes on the run's evaluation seeds: mean and std of the return."""
        n = self.config.env.eval_episodes
        if prompts or not n:
            return {}
        eps = self.collector.collect(
            self.model, eval_seeds(self.config.run.seed, n), None, deterministic=True
        )
        returns = np.array([episode_return(eps.episode_rewards(i)) for i in range(n)])
        return {
            "eval/return_mean": float(returns.mean()),
            "eval/return_std": float(returns.std()),
            "eval/length_mean": float(eps.lengths.mean()),
        }

    def complete(self, prompts: Sequence[Any], batch_size: int = 0) -> list[Sample]:
        if prompts:
            raise UserError("complete: a control run has no prompts to complete")
        return []

    def self_test(self, n: int) -> None:
        """Up to four episodes of random actions must replay to the same outcome."""
        e = self.config.env
        env = make_env(e.id, e.kwargs, e.max_episode_steps)
        rng = np.random.default_rng([self.config.run.seed, 0x7365])
        samples, live = [], []
        try:
            for j in range(min(n, SELF_TEST_EPISODES)):
                seed = int(rng.integers(2**31))
                env.action_space.seed(seed)
                env.reset(seed=seed)
                actions, rewards, done = [], [], (False, False)
                while not any(done):
                    a = env.action_space.sample()
                    _, r, term, trunc, _ = env.step(a)
                    actions.append(a)
                    rewards.append(float(r))
                    done = (bool(term), bool(trunc))
                live.append(self.verifier.outcome(seed, rewards, *done))
                completion = format_actions(np.asarray(actions))
                samples.append(Sample(str(seed), 0, j, describe_start(e.id, seed), completion))
        finally:
            env.close()
        for want, got in zip(live, self.verifier.score(samples), strict=True):
            if (want.status, want.score) != (got.status, got.score):
                raise VerifierError(
                    f"env: {e.id} is not deterministic given the seed and the actions: "
                    f"expected {want.status} {want.score} (simulated), found {got.status} "
                    f"{got.score} (replayed), seed {want.details.get('seed')}; audit replay "
                    "could not verify its episodes (set reward.self_test = 0 to train anyway)"
                )

    # ------------------------------------------------------------------ checkpoints

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        spec = {
            "policy": self.model.describe(),
            "control": dataclasses.asdict(self.config.control),
            "env": {**self.meta, "kwargs": dict(self.config.env.kwargs)},
        }
        (directory / POLICY_FILE).write_text(json.dumps(spec, indent=1, default=list))

    def load(self, directory: Path) -> None:
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))

    def state(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "env_steps_simulated": self.env_steps_simulated}

    def restore(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state.get("env_steps", 0))
        self.env_steps_simulated = int(state.get("env_steps_simulated", 0))

    def provenance(self) -> dict[str, Any]:
        import gymnasium

        e = self.config.env
        return {
            "packages": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "gymnasium": gymnasium.__version__,
            },
            "model": {
                "source": "mlp",
                "initial_sha256": self.initial_digest,
                "architecture": self.model.describe(),
            },
            "data": {},
            "env": {
                **self.meta,
                "kwargs": dict(e.kwargs),
                "max_episode_steps": e.max_episode_steps or gymnasium.spec(e.id).max_episode_steps,
                "entry_point": str(gymnasium.spec(e.id).entry_point),
                "source_sha256": env_source_sha256(e.id),
            },
        }

    def close(self) -> None:
        self.collector.close()
        self.verifier.close()


__all__ = ["ControlBackend", "ControlData", "build_policy"]
