"""MLP policies for Gymnasium control tasks, and one factory for their action distributions.

:func:`make_distribution` picks the head from the action space, so discrete and continuous
policies share everything else (as in Stable-Baselines3's ``make_proba_distribution`` and
CleanRL's ~15-line head difference)::

    Discrete(n)          Categorical        n logits
    MultiDiscrete(nvec)  MultiCategorical   sum(nvec) logits, one independent categorical each
    Box(low, high)       DiagGaussian       mean per dimension; log-std is a learned parameter
                                            that does not depend on the state

A distribution works on *raw* actions (what the policy sampled: category indices, or the
Gaussian sample ``u``) and maps them to *environment* actions (``start`` offsets added; a Box
sample clipped or squashed into the bounds). Log-probabilities are always of the raw action,
which is what the update re-evaluates.

Choices, and where they depart from common practice:

1. ``squash = "clip"`` (the default, as SB3 and CleanRL): the environment receives
   ``clip(u, low, high)`` and the log-probability is the Gaussian density of the unclipped
   ``u``; actions beyond the bounds are all treated as different although the environment
   sees the same action.
2. ``squash = "tanh"``: ``a = low + (tanh(u) + 1) (high - low) / 2``, with the change of
   variables ``log π(a) = log N(u) - Σ log((high - low) / 2 · (1 - tanh(u)²))`` (SAC,
   arXiv:1801.01290, appendix C), computed as ``2 (log 2 - u - softplus(-2u))`` for stability.
   Its entropy has no closed form; the reported entropy is that of ``u``.
3. Orthogonal initialisation (gain √2 for hidden layers, 0.01 for the action head), as in
   SB3 and CleanRL's PPO.
4. Observation normalisation (optional) keeps a running mean and variance in buffers, so
   checkpoints carry it; the trainer updates it only after a step's update, so the update
   sees exactly the inputs the rollout saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

Squash = Literal["clip", "tanh"]
Activation = Literal["tanh", "relu"]
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
OBS_CLIP = 10.0


class ActionDistribution(Protocol):
    """An action head: parameter layout, sampling, log-probabilities, environment actions."""

    num_params: int
    """Outputs of the network's last layer."""
    action_shape: tuple[int, ...]
    """Shape of one raw action (``()`` for Discrete)."""
    action_dtype: torch.dtype

    def log_prob(self, params: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """``(N,)`` log-probabilities of raw actions ``raw`` under ``params`` ``(N, P)``."""
        ...

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """``(N,)`` entropies."""
        ...

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Raw actions ``(N, *action_shape)`` drawn with ``generator``."""
        ...

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        """The most likely raw actions (greedy evaluation)."""
        ...

    def to_env(self, raw: torch.Tensor) -> np.ndarray:
        """Raw actions as the batch of environment actions (``start`` added, clipped...)."""
        ...

    def extra_parameters(self) -> list[nn.Parameter]:
        """Learned parameters that live in the head (the Gaussian log-std)."""
        ...


class Categorical:
    """``Discrete(n, start)``: a categorical over ``n`` logits."""

    def __init__(self, n: int, start: int = 0) -> None:
        self.num_params = n
        self.start = start
        self.action_shape: tuple[int, ...] = ()
        self.action_dtype = torch.long

    def log_prob(self, params: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(params, dim=-1)
        return logp.gather(-1, raw.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(params, dim=-1)
        return -(logp.exp() * logp).sum(-1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        probs = torch.softmax(params, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params.argmax(-1)

    def to_env(self, raw: torch.Tensor) -> np.ndarray:
        return raw.numpy().astype(np.int64) + self.start

    def extra_parameters(self) -> list[nn.Parameter]:
        return []


class MultiCategorical:
    """``MultiDiscrete(nvec, start)``: independent categoricals, one per dimension."""

    def __init__(self, nvec: Sequence[int], start: Sequence[int] | None = None) -> None:
        self.nvec = [int(n) for n in nvec]
        self.start = np.asarray(start if start is not None else [0] * len(self.nvec), np.int64)
        self.num_params = sum(self.nvec)
        self.action_shape: tuple[int, ...] = (len(self.nvec),)
        self.action_dtype = torch.long

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(params, self.nvec, dim=-1)

    def log_prob(self, params: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        parts = [
            torch.log_softmax(p, -1).gather(-1, raw[:, i].long().unsqueeze(-1)).squeeze(-1)
            for i, p in enumerate(self._split(params))
        ]
        return torch.stack(parts, -1).sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        ents = []
        for p in self._split(params):
            logp = torch.log_softmax(p, -1)
            ents.append(-(logp.exp() * logp).sum(-1))
        return torch.stack(ents, -1).sum(-1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.stack(
            [
                torch.multinomial(torch.softmax(p, -1), 1, generator=generator).squeeze(-1)
                for p in self._split(params)
            ],
            -1,
        )

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.argmax(-1) for p in self._split(params)], -1)

    def to_env(self, raw: torch.Tensor) -> np.ndarray:
        return raw.numpy().astype(np.int64) + self.start

    def extra_parameters(self) -> list[nn.Parameter]:
        return []


class DiagGaussian:
    """``Box(low, high)``: a diagonal Gaussian with a learned, state-independent log-std;
    actions clipped into the bounds or tanh-squashed (see the module docstring)."""

    def __init__(
        self,
        low: np.ndarray,
        high: np.ndarray,
        squash: Squash = "clip",
        log_std_init: float = 0.0,
        dtype: Any = np.float32,
    ) -> None:
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        self.shape = np.asarray(low).shape
        self.dim = self.low.size
        self.num_params = self.dim
        self.action_shape: tuple[int, ...] = (self.dim,)
        self.action_dtype = torch.float32
        self.squash = squash
        self.env_dtype = dtype
        if squash == "tanh" and not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ValueError("squash: 'tanh' needs finite action bounds; use 'clip'")
        self.log_std = nn.Parameter(torch.full((self.dim,), float(log_std_init)))
        half = (self.high - self.low) / 2 if squash == "tanh" else np.ones(self.dim)
        self._log_half = float(np.log(half).sum())

    def _std(self) -> torch.Tensor:
        return self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def log_prob(self, params: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (raw - params) / log_std.exp()
        logp = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        if self.squash == "tanh":
            log_det = 2.0 * (math.log(2.0) - raw - F.softplus(-2.0 * raw))
            logp = logp - log_det.sum(-1) - self._log_half
        return logp

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        ent = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum()
        return ent.expand(params.shape[0])

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(params.shape, generator=generator, dtype=params.dtype)
        return params + self._std().detach() * noise

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def to_env(self, raw: torch.Tensor) -> np.ndarray:
        u = raw.detach().double().numpy()
        if self.squash == "tanh":
            a = self.low + (np.tanh(u) + 1.0) * (self.high - self.low) / 2.0
            a = np.clip(a, self.low, self.high)  # rounding must never leave the box
        else:
            a = np.clip(u, self.low, self.high)
        return a.astype(self.env_dtype).reshape((u.shape[0], *self.shape))

    def extra_parameters(self) -> list[nn.Parameter]:
        return [self.log_std]


def make_distribution(
    action_space: Any, squash: Squash = "clip", log_std_init: float = 0.0
) -> ActionDistribution:
    """The action head for a Gymnasium action space (Discrete, MultiDiscrete or Box).

    >>> from gymnasium import spaces
    >>> type(make_distribution(spaces.Discrete(3))).__name__
    'Categorical'
    >>> make_distribution(spaces.Box(-1.0, 1.0, (2,))).num_params
    2
    """
    from gymnasium import spaces

    if isinstance(action_space, spaces.Discrete):
        return Categorical(int(action_space.n), int(action_space.start))
    if isinstance(action_space, spaces.MultiDiscrete):
        if action_space.nvec.ndim != 1:
            raise ValueError(
                f"action space: expected a 1-D MultiDiscrete, got nvec of shape "
                f"{action_space.nvec.shape}"
            )
        return MultiCategorical(action_space.nvec.tolist(), action_space.start.tolist())
    if isinstance(action_space, spaces.Box):
        return DiagGaussian(
            action_space.low, action_space.high, squash, log_std_init, action_space.dtype
        )
    raise ValueError(
        f"action space: expected Discrete, MultiDiscrete or Box, got {type(action_space).__name__}"
    )


class RunningNorm(nn.Module):
    """Running mean and variance of observations (parallel-update formula of Chan et al.),
    kept in float64 buffers so that they are saved with the weights."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``(N, dim)`` into the statistics."""
        if x.shape[0] == 0:
            return
        x = x.double()
        n = float(x.shape[0])
        mean, var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta.pow(2) * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.fill_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(self.count) == 0.0:
            return x
        y = (x.double() - self.mean) / torch.sqrt(self.var + 1e-8)
        return y.clamp(-OBS_CLIP, OBS_CLIP).to(x.dtype)


class MLPPolicy(nn.Module):
    """An MLP from (optionally normalised) observations to the parameters of an action
    distribution made by :func:`make_distribution`."""

    def __init__(
        self,
        obs_dim: int,
        action_space: Any,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: Activation = "tanh",
        normalize_obs: bool = False,
        squash: Squash = "clip",
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.dist = make_distribution(action_space, squash, log_std_init)
        for i, p in enumerate(self.dist.extra_parameters()):
            self.register_parameter("log_std" if i == 0 else f"head_param{i}", p)
        act: type[nn.Module] = nn.Tanh if activation == "tanh" else nn.ReLU
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden_sizes:
            linear = nn.Linear(width, h)
            nn.init.orthogonal_(linear.weight, gain=math.sqrt(2))
            nn.init.zeros_(linear.bias)
            layers += [linear, act()]
            width = h
        head = nn.Linear(width, self.dist.num_params)
        nn.init.orthogonal_(head.weight, gain=0.01)
        nn.init.zeros_(head.bias)
        layers.append(head)
        self.net = nn.Sequential(*layers)
        self.obs_norm: RunningNorm | None = RunningNorm(obs_dim) if normalize_obs else None
        self.obs_dim = obs_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Distribution parameters for raw observations ``(N, obs_dim)``."""
        x = self.obs_norm(obs) if self.obs_norm is not None else obs
        out: torch.Tensor = self.net(x)
        return out

    def log_prob(self, obs: torch.Tensor, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N,)`` log-probabilities of raw actions, and ``(N,)`` entropies."""
        params = self(obs)
        return self.dist.log_prob(params, raw), self.dist.entropy(params)

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, generator: torch.Generator | None, deterministic: bool = False
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Raw actions (for the update) and environment actions (for ``step``)."""
        params = self(obs)
        raw = self.dist.mode(params) if deterministic else self.dist.sample(params, generator)
        return raw, self.dist.to_env(raw)

    def describe(self) -> dict[str, Any]:
        """Architecture summary for the ledger's provenance and ``policy.json``."""
        return {
            "kind": "mlp",
            "obs_dim": self.obs_dim,
            "distribution": type(self.dist).__name__,
            "layers": [m.out_features for m in self.net if isinstance(m, nn.Linear)],
            "normalize_obs": self.obs_norm is not None,
            "parameters": sum(p.numel() for p in self.parameters()),
        }


def observation_dim(space: Any) -> int:
    """Size of a flat observation from a Box observation space (other spaces are refused)."""
    from gymnasium import spaces

    if not isinstance(space, spaces.Box):
        raise ValueError(
            f"observation space: expected a Box, got {type(space).__name__} "
            "(wrap the environment so that it observes a vector)"
        )
    return int(np.prod(space.shape))


__all__ = [
    "ActionDistribution",
    "Categorical",
    "DiagGaussian",
    "MLPPolicy",
    "MultiCategorical",
    "RunningNorm",
    "make_distribution",
    "observation_dim",
]
