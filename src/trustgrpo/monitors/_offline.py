"""Monitors over a recorded ledger (``trustgrpo monitor RUN``) and the replay they share with
a resumed run.

The detectors are rebuilt from the ``[monitors]`` table recorded in the run's
``run_started`` event and fed the ledger's ``reward`` and ``step`` events in order. A step
counts once: after a resume, the steps redone (those after the checkpoint) are skipped,
since a resumed run redoes them exactly, and reward events of a step that never finished
(no ``step`` event before the ``run_resumed``) are dropped. Detectors that need the running
trainer (held-out gap, canaries, nondeterminism, probe drift) cannot be recomputed; their
recorded alerts are reported as they are. ``[monitors] enabled = false`` in the run does not
stop an explicit ``trustgrpo monitor``; each detector's own ``enabled`` is honoured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from trustgrpo.errors import UserError
from trustgrpo.monitors._alert import Alert, rank
from trustgrpo.monitors._base import Context
from trustgrpo.monitors._checking import parse_config
from trustgrpo.monitors._config import MonitorsConfig
from trustgrpo.monitors._data import ComponentInfo, StepData, components_from_inventory
from trustgrpo.monitors._data import step_from_events as _step_from_events
from trustgrpo.monitors._monitor import DETECTOR_CLASSES, Monitor

LIVE_DETECTORS = frozenset(c.name for c in DETECTOR_CLASSES if c.live)


@dataclass
class Replay:
    """What a pass over a ledger collected besides the steps."""

    config: dict[str, Any] = field(default_factory=dict)
    """The resolved run configuration recorded in ``run_started``."""
    components: tuple[ComponentInfo, ...] = ()
    recorded: list[Alert] = field(default_factory=list)
    """``alert`` events, with their indices."""
    decisions: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Alert index → the first ``decision`` on it (body plus ``event``: its own index)."""
    steps: int = 0
    """Steps fed."""


def iter_steps(
    reader: Any,
    replay: Replay,
    *,
    texts: bool = False,
    metadata: bool = False,
    until: int | None = None,
) -> Iterator[tuple[StepData, Mapping[str, float]]]:
    """``(StepData, step metrics)`` per recorded step, once each (see the module docstring);
    ``replay`` is filled as events go by. ``until``: stop after that step."""
    pending: dict[int, list[Any]] = {}
    done = 0
    cache: dict[str, Any] = {}
    for ev in reader.events():
        kind, body = ev.kind, ev.body
        if kind == "reward":
            pending.setdefault(int(body["step"]), []).append(ev)
        elif kind == "step":
            step = int(body["step"])
            events = pending.pop(step, [])
            if step <= done or (until is not None and step > until):
                continue
            if not replay.components:
                raise UserError(f"{reader.location}: step {step} comes before run_started")
            done = step
            replay.steps += 1
            data = _step_from_events(
                step,
                events,
                replay.components,
                reader,
                texts=texts,
                metadata=metadata,
                cache=cache,
            )
            yield data, dict(body.get("metrics") or {})
        elif kind == "run_started":
            replay.config = dict(body.get("config") or {})
            inventory = (body.get("provenance") or {}).get("verifiers") or []
            replay.components = components_from_inventory(inventory)
        elif kind == "run_resumed":
            pending.clear()
        elif kind == "alert":
            replay.recorded.append(Alert.from_body(body, ev.index))
        elif kind == "decision" and isinstance(body.get("alert"), int):
            replay.decisions.setdefault(body["alert"], {**body, "event": ev.index})


def first_event_config(reader: Any) -> dict[str, Any]:
    """The ``config`` of the ledger's first event (``run_started``)."""
    if reader.size() == 0:
        raise UserError(f"{reader.location}: the ledger is empty")
    ev = reader.get_event(0)
    if ev.kind != "run_started":
        raise UserError(f"{reader.location}: expected run_started as event 0, found {ev.kind}")
    return dict(ev.body.get("config") or {})


@dataclass
class MonitorReport:
    """The result of ``trustgrpo monitor``."""

    alerts: list[Alert]
    """Recomputed by the detectors that read the record (action ``none``)."""
    recorded: list[Alert]
    """Alerts the live detectors recorded during training."""
    decisions: dict[int, dict[str, Any]]
    detectors: list[str]
    """Detectors recomputed."""
    steps: int

    def all(self) -> list[Alert]:
        """Every alert, by step."""
        return sorted([*self.alerts, *self.recorded], key=lambda a: (a.step, a.detector))

    @property
    def worst(self) -> str | None:
        """The highest severity among the alerts, or None."""
        alerts = self.all()
        return max((a.severity for a in alerts), key=rank) if alerts else None

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "detectors": self.detectors,
            "alerts": [
                {
                    **a.to_json(),
                    "source": "recorded" if a.index is not None else "recomputed",
                    "decision": self.decisions.get(a.index) if a.index is not None else None,
                }
                for a in self.all()
            ],
        }


def monitor_run(reader: Any) -> MonitorReport:
    """Run the record-only detectors over a ledger; collect the live detectors' alerts."""
    raw = first_event_config(reader)
    cfg, problems = parse_config(raw.get("monitors") or {})
    if problems:
        raise UserError(
            f"{reader.location}: the recorded [monitors] table has problems: " + "; ".join(problems)
        )
    replay = Replay()
    monitor: Monitor | None = None
    alerts: list[Alert] = []
    for data, metrics in iter_steps(
        reader, replay, texts=_needs_texts(cfg), metadata=bool(cfg.group_bias.column)
    ):
        if monitor is None:
            monitor = _offline_monitor(cfg, replay)
        alerts += monitor.on_rewards(data) + monitor.on_metrics(data.step, metrics)
    if monitor is None:
        monitor = _offline_monitor(cfg, replay)
    alerts = [dataclasses.replace(a, action="none") for a in alerts]
    recorded = [a for a in replay.recorded if a.detector in LIVE_DETECTORS]
    return MonitorReport(alerts, recorded, replay.decisions, monitor.names, replay.steps)


def _offline_monitor(cfg: MonitorsConfig, replay: Replay) -> Monitor:
    seed = int((replay.config.get("run") or {}).get("seed", 0))
    control = bool((replay.config.get("env") or {}).get("id"))
    ctx = Context(replay.components, seed=seed, max_evidence=cfg.max_evidence, language=not control)
    return Monitor(cfg, ctx)


def _needs_texts(cfg: MonitorsConfig) -> bool:
    return bool(cfg.training_health.enabled)
