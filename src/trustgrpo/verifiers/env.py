"""``env``: a Gymnasium environment as the verifier of its own episodes.

In a control run (``[env]`` in the run file) the reward of an episode is its return, and the
environment computed it. This verifier makes that auditable: its outcome is the return with
status ``correct`` (details: seed, length, terminated, truncated), and ``audit replay``
rebuilds it from the recorded run file and re-simulates each episode from its sample:

* ``prompt``: ``{"env": id, "seed": seed}`` (the start state, as the reset seed);
* ``completion``: the JSON list of the actions sent to the environment, one per step.

Re-simulation resets a fresh environment with the seed, plays the actions, and sums the
rewards with :func:`math.fsum` (correctly rounded, so the training run and the replay agree
bit for bit). The actions must end the episode exactly at the last one (terminated or
truncated, as Gymnasium defines them); otherwise the outcome is an ``error`` naming where it
ended. For deterministic environments (every Gymnasium classic-control and Box2D task: their
randomness comes from the reset seed) a replay reproduces every return exactly; an edit of
the actions or of the seed is caught whenever it changes the return or where the episode
ends (any edit of a stored blob is caught by ``audit verify`` regardless).

The version covers this module, the parameters (environment id, ``gymnasium.make``
keyword arguments, time limit), the installed Gymnasium version and the source of the
environment's own module: a changed environment is a different verifier.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trustgrpo.verifiers.base import Outcome, Sample
from trustgrpo.verifiers.core import (
    BaseVerifier,
    Check,
    dependency_versions,
    module_source_sha256,
)
from trustgrpo.verifiers.params import ge


@dataclass(frozen=True)
class EnvParams:
    """Parameters of ``env`` (written by the trainer from the run file's ``[env]``)."""

    id: str
    """Registered Gymnasium environment id, e.g. ``"CartPole-v1"``."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``gymnasium.make``."""
    max_episode_steps: int = field(default=0, metadata=ge(0))
    """Time limit; 0 keeps the environment's registered one."""

    def problems(self) -> list[str]:
        """An unknown id (with the closest registered one suggested)."""
        return env_id_problems(self.id, "id")


def env_id_problems(env_id: str, path: str) -> list[str]:
    """Why ``env_id`` cannot be made: Gymnasium missing, or an unregistered id."""
    import difflib

    try:
        import gymnasium as gym
    except ImportError:
        return [f"{path}: needs Gymnasium (pip install 'trustgrpo[gym]')"]
    if env_id in gym.registry:
        return []
    close = difflib.get_close_matches(env_id, list(gym.registry), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return [f"{path}: unknown Gymnasium environment {env_id!r}{hint}"]


def make_env(env_id: str, kwargs: Mapping[str, Any], max_episode_steps: int = 0) -> Any:
    """``gymnasium.make`` exactly as training and replay both build the environment."""
    import gymnasium as gym

    return gym.make(env_id, max_episode_steps=max_episode_steps or None, **dict(kwargs))


def episode_return(rewards: Sequence[float] | np.ndarray) -> float:
    """The return: the correctly rounded sum of the rewards (``math.fsum``), so that it does
    not depend on summation order."""
    return math.fsum(float(r) for r in rewards)


def describe_start(env_id: str, seed: int) -> str:
    """The prompt of an episode: its environment and reset seed as compact JSON."""
    return json.dumps({"env": env_id, "seed": int(seed)}, separators=(",", ":"), sort_keys=True)


def format_actions(actions: np.ndarray) -> str:
    """The completion of an episode: its environment actions as a JSON list.

    Integers stay integers; floats are written in their shortest form that reads back to
    the same value of the action dtype (float32 for most Box spaces), so a replay sends the
    environment the very same bits.

    >>> format_actions(np.array([0, 1, 1]))
    '[0,1,1]'
    >>> format_actions(np.array([[0.1], [-2.0]], dtype=np.float32))
    '[[0.1],[-2.0]]'
    """
    a = np.asarray(actions)
    if a.dtype.kind in "iub":
        return json.dumps(a.tolist(), separators=(",", ":"))
    rows = a.reshape(a.shape[0], -1) if a.ndim > 1 else a
    if a.ndim == 1:
        return "[" + ",".join(_float(x) for x in rows) + "]"
    return "[" + ",".join("[" + ",".join(_float(x) for x in row) + "]" for row in rows) + "]"


def _float(x: Any) -> str:
    s = str(x)  # numpy's shortest round-trip repr of its own dtype
    if not math.isfinite(float(x)):
        raise ValueError(f"actions: expected finite numbers, got {s}")
    return s


def parse_actions(text: str, space: Any) -> list[Any]:
    """Actions from :func:`format_actions` as the environment receives them from a vector
    environment (NumPy scalars and arrays of the space's dtype)."""
    from gymnasium import spaces

    raw = json.loads(text)
    if not isinstance(raw, list):
        raise ValueError(f"actions: expected a JSON list, got {type(raw).__name__}")
    if isinstance(space, spaces.Discrete):
        return [np.int64(a) for a in raw]
    return [np.asarray(a, dtype=space.dtype).reshape(space.shape) for a in raw]


@dataclass(frozen=True)
class Simulated:
    """An episode re-simulated from a seed and actions."""

    rewards: list[float]
    terminated: bool
    truncated: bool
    actions_left: int
    """Actions left over after the episode ended (0 for a faithful record)."""


def simulate(env: Any, seed: int, actions: Sequence[Any]) -> Simulated:
    """Reset ``env`` with ``seed`` and play ``actions`` until the episode ends."""
    env.reset(seed=int(seed))
    rewards: list[float] = []
    for k, a in enumerate(actions):
        _, r, terminated, truncated, _ = env.step(a)
        rewards.append(float(r))
        if terminated or truncated:
            return Simulated(rewards, bool(terminated), bool(truncated), len(actions) - k - 1)
    return Simulated(rewards, False, False, 0)


def verdict(
    seed: int, rewards: Sequence[float], terminated: bool, truncated: bool, actions_left: int = 0
) -> Check:
    """The outcome of an episode: its return when it is a whole episode, else an error."""
    details = {
        "seed": int(seed),
        "length": len(rewards),
        "terminated": bool(terminated),
        "truncated": bool(truncated),
    }
    if actions_left:
        reason = (
            f"the episode ended after {len(rewards)} of {len(rewards) + actions_left} "
            "recorded actions"
        )
        return Check("error", None, {**details, "error": reason})
    if not (terminated or truncated):
        reason = f"the episode had not ended after all {len(rewards)} recorded actions"
        return Check("error", None, {**details, "error": reason})
    return Check("correct", episode_return(rewards), details)


class EnvVerifier(BaseVerifier[EnvParams]):
    """The environment's return for an episode, re-simulated from its seed and actions."""

    type = "env"
    Params = EnvParams
    dependencies = ("gymnasium",)

    def setup(self) -> None:
        self._env: Any = None

    def deps(self) -> dict[str, str]:
        """Gymnasium's version and the SHA-256 of the environment's module source."""
        out = dependency_versions(self.dependencies)
        out["env_source_sha256"] = env_source_sha256(self.params.id)
        return out

    def env(self) -> Any:
        """The environment used for re-simulation (made once)."""
        if self._env is None:
            p = self.params
            self._env = make_env(p.id, p.kwargs, p.max_episode_steps)
        return self._env

    def check(self, sample: Sample) -> Check:
        start = json.loads(sample.prompt)
        if start.get("env") != self.params.id:
            reason = f"episode of {start.get('env')!r}, this verifier simulates {self.params.id!r}"
            return Check("error", None, {"error": reason})
        env = self.env()
        actions = parse_actions(sample.completion, env.action_space)
        sim = simulate(env, int(start["seed"]), actions)
        return verdict(
            int(start["seed"]), sim.rewards, sim.terminated, sim.truncated, sim.actions_left
        )

    def outcome(
        self,
        seed: int,
        rewards: Sequence[float] | np.ndarray,
        terminated: bool,
        truncated: bool,
        duration_ms: float = 0.0,
    ) -> Outcome:
        """The outcome of an episode just simulated by the trainer (the same as
        :meth:`check` gives on its record, without simulating it again)."""
        return self.to_outcome(verdict(seed, list(rewards), terminated, truncated), duration_ms)

    def gold_completion(self, sample: Sample) -> str | None:
        """No gold answers: an environment has no reference episode."""
        return None

    def close(self) -> None:
        """Close the re-simulation environment."""
        if self._env is not None:
            self._env.close()
            self._env = None


def env_source_sha256(env_id: str) -> str:
    """SHA-256 of the source module of a registered environment's entry point (or of the
    entry point's name when its module cannot be read here)."""
    try:
        import gymnasium as gym

        entry = gym.spec(env_id).entry_point
    except Exception:
        return "unavailable"
    if not isinstance(entry, str):
        entry = f"{getattr(entry, '__module__', '')}:{getattr(entry, '__qualname__', entry)}"
    module = entry.split(":", 1)[0]
    try:
        return module_source_sha256(module)
    except Exception:  # e.g. Box2D missing: the module cannot be located
        import hashlib

        return "entry:" + hashlib.sha256(entry.encode()).hexdigest()


__all__ = [
    "EnvParams",
    "EnvVerifier",
    "Simulated",
    "describe_start",
    "env_id_problems",
    "episode_return",
    "format_actions",
    "make_env",
    "parse_actions",
    "simulate",
    "verdict",
]
