"""The trainer's hook into the ledger: :class:`LedgerCallback`.

What each hook writes (bodies in :mod:`trustgrpo.ledger.events`)::

    on_train_start   run_started (or run_resumed): config, provenance, start step, ledger key
    on_step_rewards  one reward event per sample; prompt, completion, reference and metadata
                     go to the blob table
    on_step_end      a step event with the step's metrics, then a signed checkpoint (queued)
    on_checkpoint    a checkpoint event with the weights' SHA-256, then a signed checkpoint,
                     waited for: the events that shaped saved weights are on disk with them
    on_train_end     run_finished, then a signed checkpoint, waited for (flushed)

The hot path only copies the step's results and queues them: the ledger's writer thread builds
and encodes the reward events (:meth:`Ledger.append_later`) and does the disk work, and
step-end signatures are queued too (``sign(wait=False)``), so the trainer waits on disk only
when it saves weights and at the end of the run. The callback does not close the
ledger; whoever opened it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from trustgrpo.callbacks import Callback, CheckpointInfo, RunInfo, StepBatch
from trustgrpo.ledger.canonical import to_jsonable
from trustgrpo.ledger.events import StepRewards, reward_events
from trustgrpo.ledger.ledger import Ledger


class LedgerCallback(Callback):
    """Writes a run's events to ``ledger`` (see the module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def on_train_start(self, run: RunInfo) -> None:
        kind = "run_resumed" if run.resumed else "run_started"
        self.ledger.append(
            kind,
            {
                "config": to_jsonable(run.config),
                "provenance": to_jsonable(run.provenance),
                "start_step": int(run.start_step),
                "ledger": {
                    "origin": self.ledger.verifier_key.name,
                    "key": self.ledger.verifier_key.to_vkey(),
                },
            },
        )
        self.ledger.sign(wait=False)

    def on_step_rewards(self, run: RunInfo, batch: StepBatch) -> None:
        # The writer builds and encodes the step's reward events (the step does not wait for
        # it); everything they read is copied or immutable now.
        data = StepRewards(
            step=int(batch.step),
            samples=list(batch.samples),
            outcomes=[list(o) for o in batch.outcomes],
            rewards=[float(r) for r in batch.rewards],
            advantages=[float(a) for a in batch.advantages],
            overrides=dict(batch.overrides),
        )
        self.ledger.append_later(partial(reward_events, data))

    def on_step_end(self, run: RunInfo, batch: StepBatch) -> bool | None:
        self.ledger.append(
            "step",
            {
                "step": batch.step,
                "num_samples": len(batch.samples),
                "group_size": int(batch.group_size),
                "metrics": to_jsonable(batch.metrics),
            },
        )
        self.ledger.sign(wait=False)
        return None

    def on_checkpoint(self, run: RunInfo, info: CheckpointInfo) -> None:
        path = Path(info.path)
        try:
            shown = str(path.resolve().relative_to(Path(run.run_dir).resolve()))
        except ValueError:
            shown = str(path)
        self.ledger.append(
            "checkpoint",
            {"step": int(info.step), "weights_sha256": info.weights_sha256, "path": shown},
        )
        self.ledger.sign(wait=True)

    def on_train_end(self, run: RunInfo, result: Mapping[str, Any]) -> None:
        self.ledger.append("run_finished", {"result": to_jsonable(result)})
        self.ledger.sign(wait=True)
