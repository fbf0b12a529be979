"""The :class:`Monitor`: every active detector, findings turned into alerts.

It is the same object online (inside :class:`~trustgrpo.monitors.MonitorCallback`) and
offline (``trustgrpo monitor``): it owns the detectors, the cooldown per ``(detector,
check)``, and the severity of each alert (the detector's ``action``, capped by
``monitors.max_action``). What an alert then *does* is the callback's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trustgrpo.monitors._alert import Alert, Finding, cap
from trustgrpo.monitors._base import Context, Detector
from trustgrpo.monitors._config import MonitorsConfig
from trustgrpo.monitors._data import StepData
from trustgrpo.monitors._health import GroupBias, TrainingHealth, VerifierHealth
from trustgrpo.monitors._live import Canaries, HeldOutGap, Nondeterminism, ProbeDrift
from trustgrpo.monitors._reward_shape import ComponentDominance, LengthBias, Saturation

DETECTOR_CLASSES: tuple[type[Detector], ...] = (
    LengthBias,
    ComponentDominance,
    HeldOutGap,
    Canaries,
    Nondeterminism,
    VerifierHealth,
    ProbeDrift,
    GroupBias,
    Saturation,
    TrainingHealth,
)
"""Every detector, in the order they run (and as the issue lists them)."""


class Monitor:
    """Runs the active detectors of a ``[monitors]`` configuration.

    ``ctx.live`` is None offline: then only the detectors that read the record alone run.
    """

    def __init__(self, cfg: MonitorsConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.detectors: list[Detector] = [
            cls(cfg.detector(cls.name), ctx)
            for cls in DETECTOR_CLASSES
            if cls.active(cfg.detector(cls.name), ctx)
        ]
        self.last_fired: dict[tuple[str, str], int] = {}

    @property
    def names(self) -> list[str]:
        """Names of the active detectors."""
        return [d.name for d in self.detectors]

    def on_rewards(self, data: StepData, *, record_only: bool = False) -> list[Alert]:
        """Alerts from the step's reward events. ``record_only``: only detectors that read
        the record, findings discarded (warming up after a resume)."""
        out: list[Alert] = []
        for d in self.detectors:
            if record_only and d.live:
                continue
            found = d.on_rewards(data)
            if not record_only:
                out.extend(self._alerts(d, data.step, found))
        return out

    def on_metrics(
        self, step: int, metrics: Mapping[str, float], *, record_only: bool = False
    ) -> list[Alert]:
        """Alerts from the step's scalars (after the update)."""
        out: list[Alert] = []
        for d in self.detectors:
            if record_only and d.live:
                continue
            found = d.on_metrics(step, metrics)
            if not record_only:
                out.extend(self._alerts(d, step, found))
        return out

    def remember(self, alert: Alert) -> None:
        """Count ``alert`` for the cooldown (an alert recorded before a resume)."""
        key = alert.key
        self.last_fired[key] = max(self.last_fired.get(key, alert.step), alert.step)

    def _alerts(self, d: Detector, step: int, found: Sequence[Finding]) -> list[Alert]:
        if not found:
            return []
        severity = cap(d.cfg.action, self.cfg.max_action)
        out = []
        for f in found:
            key = (d.name, f.check)
            last = self.last_fired.get(key)
            if last is not None and step - last < self.cfg.cooldown_steps:
                continue
            self.last_fired[key] = step
            out.append(
                Alert(
                    step=step,
                    detector=d.name,
                    check=f.check,
                    severity=severity,
                    statistic=float(f.statistic),
                    threshold=float(f.threshold),
                    evidence=tuple(f.evidence)[: self.ctx.max_evidence],
                    action=severity,
                    message=f.message,
                    details=dict(f.details),
                )
            )
        return out
