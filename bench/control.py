"""GRPO on Gymnasium against Stable-Baselines3 PPO: wall time and environment steps to a
return threshold, measured side by side in one process.

    OMP_NUM_THREADS=1 python bench/control.py [--seeds 3] [--cap 600] [--quick]
                                              [--envs CartPole-v1,Pendulum-v1]
                                              [--algos grpo,ppo,ppo-zoo] [--json FILE]

Needs ``stable-baselines3`` (a benchmark-only dependency: ``pip install 'trustgrpo[bench]'``).

For each environment and seed, in turn (interleaved, so that a change of machine load hits
every algorithm alike), each algorithm trains until the mean return of its last 20 training
episodes reaches the threshold (CartPole-v1: 475, Pendulum-v1: -200), or until ``--cap``
seconds of wall time:

* **grpo**: ``trustgrpo.Trainer`` with ``examples/<env>.toml`` (ledger and monitors on, as a
  user runs it; evaluation episodes off). Its episodes run G at a time from shared start
  states, so "the last 20 episodes" are taken from the latest step round-robin over its
  groups (the last episode of each group, then the one before...), which is neither biased
  towards long episodes (the order they finish in) nor towards one start state.
* **ppo**: ``PPO("MlpPolicy", env)`` with Stable-Baselines3's defaults (1 environment).
* **ppo-zoo**: PPO with the tuned rl-baselines3-zoo hyperparameters (``hyperparams/ppo.yml``;
  its ``n_timesteps`` sets the length of the linear schedules and caps the run). Its last 20
  episodes are those that finished last, across its vector environments.

Wall time runs from building the trainer or model to the step at which the threshold was
met; environment steps are those of finished and running episodes up to then. Both use one
thread (``torch.set_num_threads(--threads)``). The summary gives medians over seeds and the
ratios trustgrpo / PPO (below 1: trustgrpo is faster); a run that never reached the
threshold reports where it stood at the cap.

The last 20 training episodes of a GRPO step come from only ``prompts_per_step`` start states,
so a lucky draw of start states can meet the threshold early. Every run therefore also reports
``eval20``: the final policy's most likely actions on 20 fresh start states (the same seeds
for every run), measured after the clock stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}
EXAMPLES = {"CartPole-v1": "cartpole.toml", "Pendulum-v1": "pendulum.toml"}
WINDOW = 20
EVAL_SEED = 1_000_000

#: rl-baselines3-zoo ``hyperparams/ppo.yml`` (both entries marked "Tuned" there).
ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "n_envs": 8,
        "n_timesteps": 100_000,
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    "Pendulum-v1": {
        "n_envs": 4,
        "n_timesteps": 100_000,
        "n_steps": 1024,
        "gae_lambda": 0.95,
        "gamma": 0.9,
        "n_epochs": 10,
        "ent_coef": 0.0,
        "learning_rate": 1e-3,
        "clip_range": 0.2,
        "use_sde": True,
        "sde_sample_freq": 4,
    },
}


@dataclass
class Result:
    """One training run."""

    env: str
    algo: str
    seed: int
    reached: bool
    wall_s: float
    """To the threshold, or to the stop (cap, or the zoo's n_timesteps) when not reached."""
    env_steps: int
    last20: float
    """Mean return of the last 20 episodes when it stopped."""
    eval20: float = float("nan")
    """Mean return of the final policy's most likely actions on 20 fresh start states (seeds
    ``EVAL_SEED..EVAL_SEED+19``, the same for every run), measured after the clock stopped: a
    check that the threshold was not met by a lucky window."""


class _Watch:
    """The stopping rule shared by both sides: threshold on the last 20 returns, or cap."""

    def __init__(self, threshold: float, cap: float) -> None:
        self.threshold, self.cap = threshold, cap
        self.t0 = time.perf_counter()
        self.returns: deque[float] = deque(maxlen=WINDOW)
        self.reached = False
        self.stop_at: tuple[float, int, float] | None = None

    def add(self, returns: list[float], env_steps: int) -> bool:
        """Record finished episodes; True when training should stop."""
        self.returns.extend(returns)
        mean = float(np.mean(self.returns)) if self.returns else float("nan")
        elapsed = time.perf_counter() - self.t0
        if len(self.returns) == WINDOW and mean >= self.threshold:
            self.reached = True
        if self.reached or elapsed > self.cap:
            self.stop_at = (elapsed, env_steps, mean)
            return True
        return False

    def result(self, env: str, algo: str, seed: int, env_steps: int) -> Result:
        if self.stop_at is None:  # ran out of timesteps (zoo schedule) before either rule
            mean = float(np.mean(self.returns)) if self.returns else float("nan")
            self.stop_at = (time.perf_counter() - self.t0, env_steps, mean)
        wall, steps, mean = self.stop_at
        return Result(env, algo, seed, self.reached, round(wall, 2), steps, round(mean, 1))


def evaluate(env_id: str, act: Callable[[np.ndarray], Any]) -> float:
    """Mean return of ``act`` (observation -> action) over ``WINDOW`` fresh seeded episodes."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for i in range(WINDOW):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(act(obs))
            total += float(r)
            done = bool(terminated or truncated)
        returns.append(total)
    env.close()
    return round(float(np.mean(returns)), 1)


GRPO_SETS: list[str] = []
"""``--grpo-set`` overrides of the example run file (for tuning)."""


def run_grpo(env: str, seed: int, cap: float, threshold: float) -> Result:
    from trustgrpo import Callback, Trainer
    from trustgrpo.callbacks import RunInfo, StepBatch
    from trustgrpo.config import load

    out = Path(tempfile.mkdtemp(prefix="bench-control-"))
    watch = _Watch(threshold, cap)
    steps = [0]

    class Stop(Callback):
        def __init__(self) -> None:
            self.stop = False

        def on_step_rewards(self, run: RunInfo, batch: StepBatch) -> None:
            g = batch.group_size
            order = [k * g + i for i in range(g) for k in range(len(batch.samples) // g)]
            steps[0] += sum(s.num_tokens for s in batch.samples)
            if not self.stop:
                self.stop = watch.add([float(batch.rewards[j]) for j in order], steps[0])

        def on_step_end(self, run: RunInfo, batch: StepBatch) -> bool:
            return not self.stop

    try:
        cfg = load(
            ROOT / "examples" / EXAMPLES[env],
            [
                f"run.seed={seed}",
                f'run.output_dir="{out}"',
                'run.name="grpo"',
                "grpo.max_steps=100000",
                "grpo.eval_every=0",
                "env.eval_episodes=0",
                *GRPO_SETS,
            ],
        )
        watch.t0 = time.perf_counter()
        trainer = Trainer(cfg, callbacks=[Stop()], progress=False)
        trainer.train()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result = watch.result(env, "grpo", seed, steps[0])
    policy = trainer.model

    def act(obs: np.ndarray) -> Any:
        return policy.act(torch.as_tensor(obs, dtype=torch.float32)[None], None, True)[1][0]

    result.eval20 = evaluate(env, act)
    return result


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def run_ppo(env: str, seed: int, cap: float, threshold: float, zoo: bool) -> Result:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    watch = _Watch(threshold, cap)

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            done = [float(i["episode"]["r"]) for i in self.locals["infos"] if "episode" in i]
            return not watch.add(done, self.num_timesteps)

    params = dict(ZOO[env]) if zoo else {}
    n_envs = int(params.pop("n_envs", 1))
    total = int(params.pop("n_timesteps", 10**9))
    params = {k: _schedule(v) for k, v in params.items()}
    watch.t0 = time.perf_counter()
    vec = make_vec_env(env, n_envs=n_envs, seed=seed)
    model = PPO("MlpPolicy", vec, seed=seed, device="cpu", verbose=0, **params)
    cb = Stop()
    model.learn(total_timesteps=total, callback=cb)
    vec.close()
    result = watch.result(env, "ppo-zoo" if zoo else "ppo", seed, model.num_timesteps)
    result.eval20 = evaluate(env, lambda obs: model.predict(obs, deterministic=True)[0])
    return result


RUNNERS: dict[str, Callable[[str, int, float, float], Result]] = {
    "grpo": run_grpo,
    "ppo": lambda e, s, c, t: run_ppo(e, s, c, t, zoo=False),
    "ppo-zoo": lambda e, s, c, t: run_ppo(e, s, c, t, zoo=True),
}


def summarise(results: list[Result], cap: float) -> list[str]:
    lines = []
    for env in dict.fromkeys(r.env for r in results):
        lines.append(f"\n{env} (threshold {THRESHOLDS[env]:g} on the last {WINDOW} episodes)")
        lines.append(
            f"  {'algo':8} {'reached':>8} {'wall s (median)':>16} {'env steps (median)':>19} "
            f"{'eval-20 (median)':>17}   last-20 at stop"
        )
        med: dict[str, tuple[float, float]] = {}
        for algo in dict.fromkeys(r.algo for r in results if r.env == env):
            rs = [r for r in results if r.env == env and r.algo == algo]
            wall = statistics.median(r.wall_s for r in rs)
            steps = statistics.median(r.env_steps for r in rs)
            med[algo] = (wall, steps)
            reached = sum(r.reached for r in rs)
            last = ", ".join(f"{r.last20:g}" for r in rs)
            ev = statistics.median(r.eval20 for r in rs)
            lines.append(
                f"  {algo:8} {reached:>4}/{len(rs):<3} {wall:>16.1f} {steps:>19,.0f} "
                f"{ev:>17.1f}   [{last}]"
            )
        if "grpo" in med:
            for algo in (a for a in med if a != "grpo"):
                w = med["grpo"][0] / med[algo][0]
                s = med["grpo"][1] / med[algo][1]
                bound = any(r.env == env and r.algo == algo and not r.reached for r in results)
                note = f" (a bound: {algo} did not always reach it)" if bound else ""
                lines.append(f"  grpo / {algo}: wall {w:.2f}x, env steps {s:.2f}x{note}")
        unreached = [r for r in results if r.env == env and not r.reached]
        if unreached:
            lines.append(
                f"  not reached (stood at the stop, cap {cap:g} s): "
                + "; ".join(
                    f"{r.algo} seed {r.seed}: {r.last20:g} after {r.wall_s:g} s, "
                    f"{r.env_steps:,} steps"
                    for r in unreached
                )
            )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--cap", type=float, default=600.0, help="wall-time cap per run, seconds")
    p.add_argument("--envs", default="CartPole-v1,Pendulum-v1")
    p.add_argument("--algos", default="grpo,ppo,ppo-zoo")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="1 seed, 120 s cap, grpo and ppo-zoo")
    p.add_argument("--json", type=Path, help="also write every result here")
    p.add_argument(
        "--grpo-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the GRPO run file (repeatable), e.g. grpo.learning_rate=1e-2",
    )
    args = p.parse_args()
    GRPO_SETS.extend(args.grpo_set)
    if args.quick:
        args.seeds, args.cap, args.algos = 1, min(args.cap, 120.0), "grpo,ppo-zoo"
    torch.set_num_threads(args.threads)
    import os

    load = os.getloadavg()
    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; threads {args.threads}"
    )
    results: list[Result] = []
    for env in args.envs.split(","):
        for seed in range(args.seeds):
            for algo in args.algos.split(","):
                r = RUNNERS[algo](env, seed, args.cap, THRESHOLDS[env])
                results.append(r)
                print(json.dumps(asdict(r)), flush=True)
    print("\n".join(summarise(results, args.cap)))
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
