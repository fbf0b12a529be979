"""The trainer's hook into the monitors: :class:`MonitorCallback` and :func:`build_callback`.

Per step::

    on_step_rewards   the step's reward events → every detector (before the update)
    on_step_end       the step's scalars (KL, entropy) → training health (after the update)

Each alert is appended to the ledger (kind ``alert``) and then acted on by severity:
``warn`` and ``review`` go on; ``pause`` flushes the ledger, prints how to resolve the
alert, and polls the ledger for a ``decision`` event on it (``trustgrpo review resolve``),
for at most ``monitors.pause_timeout_s``; ``halt`` (or a ``halt`` decision) raises
:class:`~trustgrpo.errors.TrainingStopped`, so the trainer checkpoints the last completed
step and the CLI exits 3. Without a ledger nobody can resolve a pause, so it halts.

Evidence: when an alert fires, the ledger is flushed and the reward events' coordinates
(``step, group_id, index``) are replaced by their event indices, read back from the end of
the store. Nothing of this runs on a step without an alert.

On resume, the detectors that read the record are warmed up by replaying the ledger up to
the checkpoint (alerts already recorded count for the cooldown), so their reference
windows are those of the original run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from trustgrpo.callbacks import Callback, RunInfo, StepBatch
from trustgrpo.errors import TrainingStopped
from trustgrpo.monitors._alert import Alert, Ref
from trustgrpo.monitors._base import Context, Live
from trustgrpo.monitors._checking import load_config
from trustgrpo.monitors._config import MonitorsConfig
from trustgrpo.monitors._data import components_of, step_from_batch
from trustgrpo.monitors._monitor import Monitor
from trustgrpo.monitors._offline import Replay, iter_steps


def _say(text: str) -> None:
    try:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(text, file=sys.stderr)


class MonitorCallback(Callback):
    """Runs a :class:`Monitor` inside training and carries out its alerts' actions."""

    def __init__(
        self,
        cfg: MonitorsConfig,
        ctx: Context,
        *,
        ledger: Any = None,
        run_dir: Path | None = None,
        quiet: bool = False,
    ) -> None:
        self.cfg = cfg
        self.monitor = Monitor(cfg, ctx)
        self.ledger = ledger
        self.run_dir = run_dir
        self.quiet = quiet
        self.alerts: list[Alert] = []
        """Every alert raised in this process, in order (with event indices when ledgered)."""

    # ------------------------------------------------------------------ hooks

    def on_train_start(self, run: RunInfo) -> None:
        if not run.resumed or self.ledger is None:
            return
        replay = Replay()
        cfg = self.cfg
        for data, metrics in iter_steps(
            self.ledger,
            replay,
            texts=cfg.training_health.enabled,
            metadata=bool(cfg.group_bias.column),
            until=run.start_step,
        ):
            self.monitor.on_rewards(data, record_only=True)
            self.monitor.on_metrics(data.step, metrics, record_only=True)
        for a in replay.recorded:
            if a.step <= run.start_step:
                self.monitor.remember(a)

    def on_step_rewards(self, run: RunInfo, batch: StepBatch) -> None:
        data = step_from_batch(batch, self.monitor.ctx.components)
        self._act(self.monitor.on_rewards(data))

    def on_step_end(self, run: RunInfo, batch: StepBatch) -> bool | None:
        self._act(self.monitor.on_metrics(batch.step, batch.metrics))
        return None

    # ------------------------------------------------------------------ actions

    def _act(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        alerts = self._record(alerts)
        self.alerts.extend(alerts)
        for a in alerts:
            if not self.quiet:
                where = f"alert {a.index}" if a.index is not None else "alert"
                _say(
                    f"trustgrpo: {where} at step {a.step} [{a.severity}] {a.detector}/{a.check}: "
                    f"{a.message}"
                )
        halts = [a for a in alerts if a.action == "halt"]
        if halts:  # nothing to wait for: the run stops anyway
            a = halts[0]
            raise TrainingStopped(
                f"monitor {a.detector}/{a.check} halted training at step {a.step}: {a.message}"
            )
        for a in alerts:
            if a.action == "pause":
                self._pause(a)

    def _record(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Append the alerts to the ledger (evidence as event indices); return them with
        their own indices. Without a ledger a pause becomes a halt."""
        if self.ledger is None:
            return [replace(a, action="halt") if a.action == "pause" else a for a in alerts]
        size = self.ledger.flush()
        resolved = [replace(a, evidence=tuple(self._resolve(a.evidence, size))) for a in alerts]
        for a in resolved:
            self.ledger.append("alert", a.to_body())
        size = self.ledger.flush()
        found: dict[tuple[int, str, str, str], int] = {}
        for i in range(size - 1, max(-1, size - 1 - 64 - len(resolved)), -1):
            ev = self.ledger.get_event(i)
            if ev.kind == "alert":
                b = ev.body
                found.setdefault((b["step"], b["detector"], b["check"], b["message"]), i)
        return [
            replace(a, index=found.get((a.step, a.detector, a.check, a.message))) for a in resolved
        ]

    def _resolve(self, evidence: Sequence[Ref], size: int) -> list[Ref]:
        """Reward-event coordinates replaced by event indices, read back from the end of the
        flushed ledger (the newest occurrence wins: a step redone after a resume)."""
        wanted = {_coord(r) for r in evidence if isinstance(r, dict) and _is_coord(r)}
        if not wanted:
            return list(evidence)
        oldest = min(step for step, _, _ in wanted)
        found: dict[tuple[int, int, int], int] = {}
        i = size - 1
        while i >= 0 and len(found) < len(wanted):
            ev = self.ledger.get_event(i)
            if ev.kind == "reward":
                key = _coord(ev.body)
                if key[0] < oldest:
                    break
                if key in wanted:
                    found.setdefault(key, i)
            i -= 1
        return [
            found.get(_coord(r), r) if isinstance(r, dict) and _is_coord(r) else r for r in evidence
        ]

    def _pause(self, alert: Alert) -> None:
        if alert.index is None:  # could not be read back: nobody could name it
            raise TrainingStopped(f"alert at step {alert.step} could not be paused on")
        timeout = self.cfg.pause_timeout_s
        _say(
            f"trustgrpo: PAUSED at step {alert.step} by {alert.detector}/{alert.check} "
            f"(alert {alert.index}). Training waits "
            + (f"up to {timeout:g} s " if timeout else "")
            + "for a decision:\n"
            f"  trustgrpo review resolve {self.run_dir} {alert.index} --decision continue|halt"
        )
        decision = self._wait(alert.index, timeout)
        if decision["decision"] == "halt":
            raise TrainingStopped(
                f"alert {alert.index} ({alert.detector}/{alert.check}) resolved: halt by "
                f"{decision.get('reviewer', '?')}"
                + (f" ({decision['reason']})" if decision.get("reason") else "")
            )
        _say(
            f"trustgrpo: alert {alert.index} resolved: continue by "
            f"{decision.get('reviewer', '?')}; training goes on"
        )

    def _wait(self, index: int, timeout: float) -> Mapping[str, Any]:
        deadline = time.monotonic() + timeout if timeout else None
        cursor = index + 1
        while True:
            for ev in self.ledger.events(cursor):
                cursor = ev.index + 1
                if ev.kind == "decision" and ev.body.get("alert") == index:
                    return ev.body
            if deadline is not None and time.monotonic() >= deadline:
                body = {
                    "alert": index,
                    "decision": self.cfg.on_pause_timeout,
                    "reviewer": "trustgrpo",
                    "reason": f"no decision within {timeout:g} s (monitors.pause_timeout_s)",
                }
                self.ledger.append("decision", body)
                self.ledger.flush()
                return body
            time.sleep(self.cfg.pause_poll_s)


def _is_coord(r: Mapping[str, Any]) -> bool:
    return set(r) == {"step", "group_id", "index"}


def _coord(r: Mapping[str, Any]) -> tuple[int, int, int]:
    return (int(r["step"]), int(r["group_id"]), int(r["index"]))


def build_callback(config: Any, trainer: Any) -> MonitorCallback | None:
    """The monitors of a run (None when ``[monitors] enabled = false``).

    ``config`` is the run's :class:`~trustgrpo.config.Config`; ``trainer`` supplies
    ``reward``, ``complete``, ``train_prompts``, ``eval_prompts``, ``tokenizer``,
    ``ledger`` and ``run_dir`` (read, never changed).
    """
    cfg = load_config(config.monitors)
    if not cfg.enabled:
        return None
    live = Live(
        reward=trainer.reward,
        complete=trainer.complete,
        train_prompts=getattr(trainer, "train_prompts", ()),
        eval_prompts=getattr(trainer, "eval_prompts", ()),
        config=config,
        tokenizer=getattr(trainer, "tokenizer", None),
    )
    ctx = Context(
        components_of(trainer.reward),
        seed=int(config.run.seed),
        max_evidence=cfg.max_evidence,
        live=live,
        source=getattr(config, "source", "") or "",
        language=not getattr(config, "is_control", False),
    )
    return MonitorCallback(
        cfg,
        ctx,
        ledger=getattr(trainer, "ledger", None),
        run_dir=getattr(trainer, "run_dir", None),
    )
