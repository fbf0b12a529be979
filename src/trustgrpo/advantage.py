"""Group-relative advantages (pure functions on arrays).

GRPO (DeepSeekMath, arXiv:2402.03300, §4.1.2, outcome supervision) samples a group of G outputs
per prompt and uses ``A_i = (r_i - mean(r)) / std(r)`` within the group as the advantage of every
token of output i. Choices made here, and where they depart from the paper:

1. ``scale="group"`` divides by the group's sample standard deviation (Bessel-corrected, as
   TRL does) plus ``eps = 1e-4``; the paper does not say which std.
2. ``scale="batch"`` divides by the std of all rewards in the batch (TRL's ``"batch"``): the
   per-question std over-weights very easy and very hard questions (Dr. GRPO, arXiv:2503.20783).
3. ``scale="none"`` is Dr. GRPO: the centred reward, no division.
4. Samples with a missing reward (NaN: a verifier abstained, failed or timed out and the run's
   policy masks such samples) are left out of the mean and std of their group and get advantage
   0, so a failure never masquerades as a legitimate low score (TRL treats all-None rows the
   same way). A group with fewer than two scored samples has advantage 0 throughout.
5. A group whose scored rewards are all equal carries no signal: its advantages are exactly 0.

Process supervision, for control tasks (``process_advantages``): every step of an episode gets
its own advantage, the reward-to-go ``G_t = sum_{t' >= t} gamma^(t'-t) r_t'`` normalised within
the group *at that step* (mean and std over the group's episodes at position t). Departures:

6. DeepSeekMath §4.1.3 (and sb3-contrib #301) normalise each step *reward* by the mean and std
   of all step rewards of the group, then sum the normalised rewards that follow. With a
   constant reward per step (CartPole +1, Acrobot and MountainCar -1) every normalised reward
   is 0 and there is no signal at all; normalising the reward-to-go per position keeps the
   signal that survival (or reaching the goal sooner) carries.
7. Termination and truncation as Gymnasium defines them: after a *terminated* episode's end
   its reward-to-go is exactly 0 (an absorbing state), so it stays in the comparison at later
   positions with value 0; a *truncated* episode's future is unknown, so it leaves the
   comparison after its last step. Without the flags every episode counts as truncated.
8. ``gamma`` (default 1, undiscounted) discounts the reward-to-go; outcome supervision always
   uses the undiscounted return, which is what the ledger records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Scale = Literal["group", "batch", "none"]
EPS = 1e-4


def group_advantages(
    rewards: np.ndarray | list[float],
    group_size: int,
    scale: Scale = "group",
    eps: float = EPS,
) -> np.ndarray:
    """Advantages for rewards laid out group by group (``len(rewards) = num_groups * G``).

    >>> group_advantages([1.0, 0.0, 1.0, 0.0], 2, scale="none").tolist()
    [0.5, -0.5, 0.5, -0.5]
    >>> group_advantages([1.0, float("nan"), 0.0, 0.0], 2).tolist()
    [0.0, 0.0, 0.0, 0.0]
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"rewards: expected a 1-D array, got shape {r.shape}")
    if group_size < 1 or r.size % group_size:
        raise ValueError(
            f"group_size: expected a divisor of len(rewards) = {r.size}, got {group_size}"
        )
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale: expected 'group', 'batch' or 'none', got {scale!r}")
    g = r.reshape(-1, group_size)
    valid = ~np.isnan(g)
    n = valid.sum(axis=1, keepdims=True)
    filled = np.where(valid, g, 0.0)
    mean = filled.sum(axis=1, keepdims=True) / np.maximum(n, 1)
    centred = np.where(valid, g - mean, 0.0)
    centred[(n < 2).ravel()] = 0.0
    if scale == "group":
        var = (centred**2).sum(axis=1, keepdims=True) / np.maximum(n - 1, 1)
        adv = centred / (np.sqrt(var) + eps)
    elif scale == "batch":
        flat = r[~np.isnan(r)]
        std = float(flat.std(ddof=1)) if flat.size > 1 else 0.0
        adv = centred / (std + eps)
    else:
        adv = centred
    return adv.reshape(-1)


def zero_variance_groups(rewards: np.ndarray, group_size: int) -> np.ndarray:
    """Boolean per group: True where all scored rewards are equal (or fewer than two exist)."""
    g = np.asarray(rewards, dtype=np.float64).reshape(-1, group_size)
    valid = ~np.isnan(g)
    hi = np.where(valid, g, -np.inf).max(axis=1)
    lo = np.where(valid, g, np.inf).min(axis=1)
    return (valid.sum(axis=1) < 2) | (hi == lo)


def reward_to_go(step_rewards: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``G_t = r_t + gamma G_{t+1}`` along the last axis (padding must be 0).

    >>> reward_to_go(np.array([[1.0, 1.0, 1.0]]), 0.5).tolist()
    [[1.75, 1.5, 1.0]]
    """
    r = np.asarray(step_rewards, dtype=np.float64)
    out = np.zeros_like(r)
    acc = np.zeros(r.shape[:-1])
    for t in range(r.shape[-1] - 1, -1, -1):
        acc = r[..., t] + gamma * acc
        out[..., t] = acc
    return out


def process_advantages_padded(
    step_rewards: np.ndarray,
    lengths: np.ndarray,
    group_size: int,
    terminated: np.ndarray | Sequence[bool] | None = None,
    scale: Scale = "group",
    gamma: float = 1.0,
    eps: float = EPS,
) -> np.ndarray:
    """Process-supervision advantages for a batch laid out group by group.

    ``step_rewards`` is ``(B, T)``, zero after each episode's ``lengths[i]`` steps; the result
    is ``(B, T)``, zero on padding. At position t of a group the comparison holds the episodes
    still running at t (their reward-to-go) and the *terminated* episodes that ended before t
    (reward-to-go 0); positions with fewer than two get advantage 0 (see the module docstring).
    """
    r = np.asarray(step_rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"step_rewards: expected a 2-D array (B, T), got shape {r.shape}")
    b, horizon = r.shape
    if group_size < 1 or b % group_size:
        raise ValueError(f"group_size: expected a divisor of B = {b}, got {group_size}")
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale: expected 'group', 'batch' or 'none', got {scale!r}")
    lengths = np.asarray(lengths).reshape(b, 1)
    term = np.zeros(b, bool) if terminated is None else np.asarray(terminated, bool)
    t = np.arange(horizon).reshape(1, horizon)
    running = t < lengths
    member = running | (term.reshape(b, 1) & ~running)
    values = np.where(running, reward_to_go(np.where(running, r, 0.0), gamma), 0.0)
    shape = (b // group_size, group_size, horizon)
    v, m = values.reshape(shape), member.reshape(shape)
    n = m.sum(axis=1, keepdims=True)
    mean = np.where(m, v, 0.0).sum(axis=1, keepdims=True) / np.maximum(n, 1)
    centred = np.where(m, v - mean, 0.0)
    centred = np.where(n >= 2, centred, 0.0)
    if scale == "group":
        var = (centred**2).sum(axis=1, keepdims=True) / np.maximum(n - 1, 1)
        adv = centred / (np.sqrt(var) + eps)
    elif scale == "batch":
        flat = values[member]
        std = float(flat.std(ddof=1)) if flat.size > 1 else 0.0
        adv = centred / (std + eps)
    else:
        adv = centred
    return np.where(running, adv.reshape(b, horizon), 0.0)


def process_advantages(
    step_rewards: list[np.ndarray],
    scale: Scale = "group",
    eps: float = EPS,
    *,
    terminated: list[bool] | None = None,
    gamma: float = 1.0,
) -> list[np.ndarray]:
    """Process supervision for one group of episodes (see the module docstring).

    Each episode i has per-step rewards ``step_rewards[i]`` (lengths may differ). The
    advantage of step t is the reward-to-go, normalised across the group's episodes at step t:
    those still running, and (when ``terminated`` says so) those that terminated before t,
    with reward-to-go 0.

    >>> [a.tolist() for a in process_advantages([np.ones(2), np.ones(1)], "none",
    ...                                          terminated=[False, True])]
    [[0.5, 0.5], [-0.5]]
    """
    lengths = np.array([len(x) for x in step_rewards])
    horizon = int(lengths.max(initial=0))
    padded = np.zeros((len(step_rewards), horizon))
    for i, x in enumerate(step_rewards):
        padded[i, : len(x)] = x
    if not len(step_rewards):
        return []
    adv = process_advantages_padded(
        padded, lengths, len(step_rewards), terminated, scale, gamma, eps
    )
    return [adv[i, :n] for i, n in enumerate(lengths)]
