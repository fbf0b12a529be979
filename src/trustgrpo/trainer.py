"""The GRPO trainer: one loop, its phases named and timed, for every kind of policy.

One step (``Trainer.train``)::

    rollout     G samples per prompt (completions), or G episodes per seeded start state
    verify      every verifier scores every sample -> typed outcomes, final rewards
                (control: the environment is the verifier, its outcome the return)
    advantage   group-relative advantages; masked (failed/abstained) samples get 0
                (control, process supervision: one advantage per action)
    record      callbacks that record (the ledger) see the step's reward events
    monitor     the other callbacks (monitors) see them too
    update      reference and old log-probs when needed, then μ passes of clipped-surrogate
                updates over shuffled minibatches
    checkpoint  weights, optimiser, RNG; callbacks are told the weights' hash

What depends on the kind of policy (language model or Gymnasium control) sits behind
:class:`trustgrpo.backend.Backend`; everything above is shared.

The advantage is computed before recording (a deliberate change from ARCHITECTURE.md's
drawing) so that each reward event carries the advantage it received.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustgrpo import checkpoint as ckpt
from trustgrpo.advantage import group_advantages, process_advantages_padded, zero_variance_groups
from trustgrpo.backend import Backend, Batch, make_backend, step_seed
from trustgrpo.callbacks import Callback, CheckpointInfo, RunInfo, StepBatch
from trustgrpo.config import Config, control_config, dump_toml, load, with_env
from trustgrpo.errors import TrainingStopped, UserError
from trustgrpo.loss import grpo_loss
from trustgrpo.verifiers.base import Sample

PHASES = ("rollout", "verify", "advantage", "record", "monitor", "update", "checkpoint")


@dataclass
class RunResult:
    """What ``Trainer.train()`` returns."""

    run_dir: Path
    steps: int
    """The last completed step."""
    stopped_early: bool
    """True when a callback or monitor stopped training."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The last step's metrics."""
    eval_accuracy: float | None = None
    """Held-out accuracy at the end (None without ``data.eval``)."""
    checkpoint: Path | None = None
    """The last checkpoint written."""
    eval_return: float | None = None
    """Mean return of the greedy evaluation episodes at the end (control runs)."""


def configure_threads(threads: int) -> int:
    """Set PyTorch's intra-op threads (0: ``OMP_NUM_THREADS`` if set, else the CPUs this process
    may use)."""
    n = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0


class Trainer:
    """GRPO for language models and Gymnasium control: ``Trainer(config).train()``.

    ``config`` is a :class:`~trustgrpo.config.Config` or the path of a run file. ``env`` names
    a Gymnasium environment: alone (``Trainer(env="CartPole-v1")``) it trains with
    :func:`~trustgrpo.config.control_config`; with a config it replaces ``[env] id``.
    ``callbacks`` receive the hooks described in :mod:`trustgrpo.callbacks`; the ledger is
    added automatically unless the run file sets ``ledger.enabled = false``.
    """

    def __init__(
        self,
        config: Config | str | Path | None = None,
        *,
        env: str | None = None,
        callbacks: Sequence[Callback] = (),
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        if config is None:
            if env is None:
                raise UserError("Trainer: expected a config, a run file, or env=<Gymnasium id>")
            config = control_config(env)
        else:
            config = config if isinstance(config, Config) else load(config)
            if env is not None:
                config = with_env(config, env)
        self.config = config
        self.user_callbacks = list(callbacks)
        self.resume = resume
        self.progress = progress
        self.run_dir = self.config.run_dir
        self.recorders: list[Callback] = []
        self._setup()

    # ------------------------------------------------------------------ set-up

    def _setup(self) -> None:
        cfg = self.config
        configure_threads(cfg.run.threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        last = ckpt.latest(self.run_dir)
        recorded = _ledger_exists(self.run_dir, cfg)
        if not self.resume and (last is not None or recorded):
            raise UserError(
                f"{self.run_dir}: already holds a run; pass --resume to continue it, or choose "
                "another --out"
            )
        if self.resume and last is None and self.run_dir.exists():
            self.resume = recorded
        self.run_dir.mkdir(parents=True, exist_ok=True)

        self.backend: Backend = make_backend(cfg)
        self.reward = self.backend.reward
        self.train_prompts = self.backend.train_prompts
        self.eval_prompts = self.backend.eval_prompts
        self.model = self.backend.model
        self.tokenizer: Any = getattr(self.backend, "tokenizer", None)
        self.ref_model = self.backend.reference() if cfg.grpo.beta > 0 else None
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.grpo.learning_rate, weight_decay=cfg.grpo.weight_decay
        )
        warm = cfg.grpo.warmup_steps * cfg.grpo.num_iterations * cfg.grpo.minibatches
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0
        )
        self.start_step = 0
        if self.resume and last is not None:
            self.backend.load(last)
            ckpt.restore_optimizer(last, self.optimizer, self.scheduler)
            state = ckpt.load_state(last)
            self.start_step = int(state["step"])
            self.backend.restore(state)
        self.last_checkpoint = last
        if cfg.reward.self_test and not self.resume:
            self.backend.self_test(cfg.reward.self_test)
        self.ledger: Any = None
        if cfg.ledger.enabled:
            from trustgrpo.ledger import Ledger
            from trustgrpo.ledger.callback import LedgerCallback

            self.ledger = Ledger.open(
                self.run_dir,
                url=cfg.ledger.url or None,
                signing_key=Path(cfg.ledger.signing_key) if cfg.ledger.signing_key else None,
                origin=f"trustgrpo/{cfg.run.name}",
                process=cfg.ledger.writer == "process",
            )
            self.recorders.append(LedgerCallback(self.ledger))
        # reviewers' corrected rewards (``override`` events), applied in the verify phase
        self.overrides: Any = None
        if self.ledger is not None:
            from trustgrpo.review.overrides import Overrides

            self.overrides = Overrides.from_ledger(self.ledger)
        # monitors see the ledger (trainer.ledger) and may generate with the policy
        self.monitors: list[Callback] = []
        try:
            from trustgrpo.monitors import build_callback
        except ImportError:  # monitors are part of the package; tolerate partial installs
            pass
        else:
            monitor = build_callback(cfg, self)
            if monitor is not None:
                self.monitors.append(monitor)

    def provenance(self) -> dict[str, Any]:
        """Code, packages, model and data (or environment) digests, verifier inventory (for
        ``run_started``)."""
        import trustgrpo

        own = self.backend.provenance()
        out: dict[str, Any] = {
            "code": {"trustgrpo": trustgrpo.__version__, "git": _git_commit()},
            "packages": own["packages"],
            "hardware": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "threads": torch.get_num_threads(),
            },
            "model": own["model"],
            "data": own["data"],
        }
        if "env" in own:
            out["env"] = own["env"]
        out["verifiers"] = self.reward.inventory()
        return out

    # ------------------------------------------------------------------ the loop

    def train(self) -> RunResult:
        """Run GRPO to ``grpo.max_steps`` (or until a callback stops it)."""
        from tqdm.auto import tqdm

        cfg = self.config
        g = cfg.grpo
        callbacks = [*self.recorders, *self.monitors, *self.user_callbacks]
        (self.run_dir / "run.toml").write_text(dump_toml(cfg.to_dict()))
        run = RunInfo(
            run_dir=self.run_dir,
            config=cfg.to_dict(),
            start_step=self.start_step,
            resumed=self.resume,
            provenance=self.provenance(),
        )
        metrics_path = self.run_dir / "metrics.jsonl"
        _truncate_metrics(metrics_path, self.start_step)
        for cb in callbacks:
            cb.on_train_start(run)
        metrics: dict[str, float] = {}
        stopped = False
        step = completed = self.start_step
        bar = tqdm(
            total=g.max_steps, initial=step, disable=not self.progress, desc="grpo", unit="step"
        )
        try:
            for step in range(self.start_step + 1, g.max_steps + 1):
                timer = _Timer()
                t_step = time.perf_counter()

                with timer("rollout"):
                    rollout = self.backend.rollout(step)
                    samples = rollout.samples
                with timer("verify"):
                    scored = self.backend.verify(rollout)
                    rewards = np.asarray(scored.rewards, dtype=np.float64)
                    rewards, corrections = self._apply_overrides(samples, rewards)
                with timer("advantage"):
                    advantages, loss_advantages = self._advantages(rollout, rewards)
                batch = StepBatch(
                    step=step,
                    samples=samples,
                    outcomes=scored.outcomes,
                    rewards=rewards,
                    advantages=advantages,
                    group_size=g.num_generations,
                    overrides=corrections,
                )
                with timer("record"):
                    for cb in self.recorders:
                        cb.on_step_rewards(run, batch)
                with timer("monitor"):
                    for cb in (*self.monitors, *self.user_callbacks):
                        cb.on_step_rewards(run, batch)
                with timer("update"):
                    update_stats = self._update(rollout, rewards, loss_advantages, step)
                    self.backend.after_update(rollout)

                metrics = self._step_metrics(step, rollout, rewards, scored.counts, update_stats)
                if self.overrides is not None:
                    metrics["review/overridden"] = float(len(corrections))
                completed = step
                due = (g.eval_every and step % g.eval_every == 0) or step == g.max_steps
                if due:
                    metrics.update(self.evaluate())
                for phase in PHASES[:-1]:
                    metrics[f"time/{phase}"] = round(timer.seconds.get(phase, 0.0), 6)
                batch.metrics.update(metrics)
                # callbacks (the ledger's step event) come before the checkpoint, so that a
                # checkpoint on disk implies its step is recorded
                stop = any(cb.on_step_end(run, batch) is False for cb in callbacks)
                with timer("checkpoint"):
                    every = g.checkpoint_every and step % g.checkpoint_every == 0
                    if step == g.max_steps or every or stop:
                        self._checkpoint(run, step, callbacks)
                metrics["time/checkpoint"] = round(timer.seconds.get("checkpoint", 0.0), 6)
                metrics["time/step"] = round(time.perf_counter() - t_step, 6)
                with metrics_path.open("a") as f:
                    f.write(json.dumps(metrics) + "\n")
                bar.update(1)
                bar.set_postfix(_postfix(metrics))
                if stop:
                    raise TrainingStopped(f"a callback stopped training at step {step}")
        except TrainingStopped:
            # a monitor may stop a step before its update: checkpoint the last completed one
            stopped = True
            step = completed
            saved = (
                self.last_checkpoint is not None
                and int(ckpt.load_state(self.last_checkpoint)["step"]) == completed
            )
            if not saved and completed > 0:
                self._checkpoint(run, completed, callbacks)
        finally:
            bar.close()
        result = RunResult(
            run_dir=self.run_dir,
            steps=step,
            stopped_early=stopped,
            metrics=metrics,
            eval_accuracy=metrics.get("eval/accuracy"),
            checkpoint=self.last_checkpoint,
            eval_return=metrics.get("eval/return_mean"),
        )
        summary = {"steps": step, "stopped_early": stopped, "metrics": metrics}
        for cb in callbacks:
            cb.on_train_end(run, summary)
        if self.ledger is not None:
            self.ledger.close()
        self.backend.close()
        return result

    # ------------------------------------------------------------------ phases

    def _apply_overrides(
        self, samples: Sequence[Sample], rewards: np.ndarray
    ) -> tuple[np.ndarray, dict[int, dict[str, Any]]]:
        """Replace the rewards of samples a reviewer corrected (the same completion of the same
        prompt as a reviewed reward event); returns the rewards and what was applied."""
        if self.overrides is None:
            return rewards, {}
        from trustgrpo.review.overrides import describe

        self.overrides.refresh()
        corrected, applied = self.overrides.apply(samples, rewards)
        return corrected, {
            i: describe(c)
            for i in applied
            if (c := self.overrides.lookup(samples[i].prompt, samples[i].completion))
        }

    def _advantages(self, rollout: Batch, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample advantages (recorded), and those the loss uses: the same ``(B,)``, or,
        with process supervision, one per action ``(B, T)`` (the recorded one is that of the
        first action)."""
        cfg = self.config
        g = cfg.grpo
        if not (cfg.is_control and cfg.env.supervision == "process"):
            adv = group_advantages(rewards, g.num_generations, g.scale_rewards)
            return adv, adv
        assert rollout.step_rewards is not None
        per_action = process_advantages_padded(
            rollout.step_rewards,
            rollout.mask.sum(-1).numpy(),
            g.num_generations,
            rollout.terminated,
            g.scale_rewards,
            cfg.env.gamma,
        )
        per_action[np.isnan(rewards)] = 0.0
        return per_action[:, 0].copy(), per_action

    def _update(
        self, rollout: Batch, rewards: np.ndarray, advantages: np.ndarray, step: int
    ) -> dict[str, float]:
        """μ passes of optimiser steps on the clipped surrogate, each pass over ``minibatches``
        shuffled minibatches. Masked samples (NaN reward) and, with dynamic sampling,
        zero-variance groups are left out of the loss entirely."""
        g = self.config.grpo
        keep = ~np.isnan(rewards)
        if g.dynamic_sampling:
            flat = np.repeat(zero_variance_groups(rewards, g.num_generations), g.num_generations)
            keep &= ~flat
        mask = rollout.mask.clone()
        if g.mask_truncated:
            mask[rollout.truncated] = 0
        mask[torch.from_numpy(~keep)] = 0
        stats: dict[str, float] = {"update/samples": float(keep.sum())}
        if mask.sum() == 0:
            stats["update/skipped"] = 1.0
            return stats
        adv = torch.from_numpy(advantages).float()
        ref_logp = old_logp = None
        with torch.no_grad():
            if self.ref_model is not None:
                ref_logp, _ = self.backend.logprobs(self.ref_model, rollout)
            if g.num_iterations > 1 or g.minibatches > 1:
                self.model.eval()
                old_logp, _ = self.backend.logprobs(self.model, rollout)
        self.model.train()
        order = torch.Generator().manual_seed(_minibatch_seed(self.config.run.seed, step))
        sums: dict[str, float] = {}
        n = 0
        for _ in range(g.num_iterations):
            for rows in _minibatches(len(rollout.samples), g.minibatches, order):

                def part(t: torch.Tensor | None, rows: torch.Tensor | None = rows) -> Any:
                    return t if t is None or rows is None else t[rows]

                if part(mask).sum() == 0:
                    continue
                logp, entropy = self.backend.logprobs(self.model, rollout, rows)
                loss, ls = grpo_loss(
                    logp,
                    part(adv),
                    part(mask),
                    old_logp=part(old_logp),
                    ref_logp=part(ref_logp),
                    epsilon_low=g.epsilon_low,
                    epsilon_high=g.epsilon_high,
                    beta=g.beta,
                    aggregation=g.loss_aggregation,
                    importance_sampling=g.importance_sampling,
                    max_completion_length=self.backend.max_length,
                )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = (
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), g.max_grad_norm)
                    if g.max_grad_norm > 0
                    else torch.tensor(0.0)
                )
                self.optimizer.step()
                self.scheduler.step()
                values = {
                    "loss": float(loss.detach()),
                    "kl": ls.kl,
                    "clip/low": ls.clip_low,
                    "clip/high": ls.clip_high,
                    "ratio/mean": ls.ratio_mean,
                    "entropy": float(entropy),
                    "grad_norm": float(grad_norm),
                }
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
        self.model.eval()
        stats.update({k: v / max(n, 1) for k, v in sums.items()})
        stats["lr"] = float(self.scheduler.get_last_lr()[0])
        return stats

    def _step_metrics(
        self,
        step: int,
        rollout: Batch,
        rewards: np.ndarray,
        counts: dict[str, int],
        update_stats: dict[str, float],
    ) -> dict[str, float]:
        g = self.config.grpo
        scored = rewards[~np.isnan(rewards)]
        out: dict[str, float] = {
            "step": step,
            "reward/mean": float(scored.mean()) if scored.size else float("nan"),
            "reward/std": float(scored.std()) if scored.size else float("nan"),
            "reward/masked": float(np.isnan(rewards).sum()),
            "groups/zero_std_frac": float(zero_variance_groups(rewards, g.num_generations).mean()),
        }
        out.update(self.backend.step_metrics(rollout))
        out.update({f"verifier/{k}": float(v) for k, v in sorted(counts.items())})
        out.update(update_stats)
        return out

    def complete(self, prompts: Sequence[Any], batch_size: int = 128) -> list[Sample]:
        """Greedy completions of ``prompts`` by the current policy (for monitors: held-out
        sets, canaries' prompts). A control run has no prompts: ``[]`` for none."""
        return self.backend.complete(prompts, batch_size=batch_size)

    def evaluate(
        self, prompts: Sequence[Any] | None = None, batch_size: int = 128
    ) -> dict[str, float]:
        """Greedy held-out evaluation: accuracy (every non-shaping component correct) and mean
        reward; for control, the return of ``env.eval_episodes`` greedy episodes."""
        return self.backend.evaluate(prompts, batch_size=batch_size)

    def _checkpoint(self, run: RunInfo, step: int, callbacks: Sequence[Callback]) -> None:
        """Save weights, optimiser and RNG. The ledger is flushed first, so a checkpoint on
        disk implies that every reward and step event up to it is durable."""
        if self.ledger is not None:
            self.ledger.flush()
        directory = self.run_dir / "checkpoints" / f"step-{step}"
        sha = ckpt.save(
            directory,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            step=step,
            extra=self.backend.state() or None,
            write_weights=self.backend.save,
        )
        self.last_checkpoint = directory
        info = CheckpointInfo(step=step, path=directory, weights_sha256=sha)
        for cb in callbacks:
            cb.on_checkpoint(run, info)


def _ledger_exists(run_dir: Path, cfg: Config) -> bool:
    """Whether the run's ledger (SQLite in the run directory, or its PostgreSQL schema) already
    holds events: a new run must not append to another run's record."""
    if not cfg.ledger.enabled:
        return False
    if not cfg.ledger.url:
        return (run_dir / "ledger.db").exists()
    from trustgrpo.ledger import LedgerReader

    try:
        with LedgerReader.open_readonly(run_dir, url=cfg.ledger.url) as reader:
            return reader.size() > 0
    except UserError:  # no ledger there yet
        return False


def _minibatches(n: int, count: int, generator: torch.Generator) -> Iterator[torch.Tensor | None]:
    """Row indices of ``count`` shuffled minibatches (``None``: the whole batch, in order)."""
    if count <= 1:
        yield None
        return
    perm = torch.randperm(n, generator=generator)
    yield from (rows for rows in torch.tensor_split(perm, min(count, n)) if len(rows))


def _minibatch_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step, 1]).generate_state(1)[0])


def _postfix(metrics: dict[str, float]) -> dict[str, str]:
    out = {"reward": f"{metrics['reward/mean']:.3f}"}
    if "eval/accuracy" in metrics:
        out["eval_acc"] = f"{metrics['eval/accuracy']:.3f}"
    if "eval/return_mean" in metrics:
        out["eval_return"] = f"{metrics['eval/return_mean']:.1f}"
    return out


_step_seed = step_seed  # the name other modules used


def _truncate_metrics(path: Path, keep_until: int) -> None:
    """On resume, drop metric lines of steps after the checkpoint (they will be redone)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= keep_until]
    path.write_text("".join(ln + "\n" for ln in kept))


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
