"""Monitors: detectors that watch the reward signal for hacking and breakage.

Each detector is grounded in a published failure mode and calibrated so that clean runs stay
quiet (at most one alert per 1,000 steps per detector over 20 seeds)::

    length_bias          reward tracks length within groups, and length explains the gain
                         (Singhal et al. 2023, arXiv:2310.03716); incorrect answers grow
                         longer than correct ones (Dr. GRPO, arXiv:2503.20783)
    component_dominance  a format/shaping component rises while accuracy is flat
                         (TRL issue #5298)
    held_out             training reward vs an independent verifier on held-out prompts
                         (over-optimisation, Gao et al. 2022, arXiv:2210.10760)
    canaries             known-exploit completions must never score correct
    nondeterminism       re-scored samples must score the same
    verifier_health      error, timeout and abstain rates per verifier, and their change
    probe_drift          a frozen probe set must keep its scores
    group_bias           gaps between prompt categories that grow (Holm-corrected)
    saturation           share of groups with no reward variance (no learning signal)
    training_health      entropy collapse, KL spikes, repetitive completions

They run as a trainer callback (:func:`build_callback`, added by the trainer) on each step's
reward events, and offline over a recorded ledger (:func:`monitor_run`,
``trustgrpo monitor RUN``). Alerts go into the ledger; their action (warn, review, pause,
halt) is set per detector in the run file's ``[monitors]`` table (:class:`MonitorsConfig`).
"""

from __future__ import annotations

from trustgrpo.monitors._alert import SEVERITIES, Alert, Finding, Severity
from trustgrpo.monitors._base import Context, Detector, Live, Windows
from trustgrpo.monitors._callback import MonitorCallback, build_callback
from trustgrpo.monitors._checking import check_config, load_config, parse_config
from trustgrpo.monitors._config import (
    DETECTORS,
    CanariesConfig,
    ComponentDominanceConfig,
    GroupBiasConfig,
    HeldOutConfig,
    LengthBiasConfig,
    MonitorsConfig,
    NondeterminismConfig,
    ProbeDriftConfig,
    SaturationConfig,
    TrainingHealthConfig,
    VerifierHealthConfig,
    reference_markdown,
)
from trustgrpo.monitors._data import ComponentInfo, StepData, step_from_batch, step_from_events
from trustgrpo.monitors._health import GroupBias, TrainingHealth, VerifierHealth
from trustgrpo.monitors._live import Canaries, HeldOutGap, Nondeterminism, ProbeDrift
from trustgrpo.monitors._monitor import DETECTOR_CLASSES, Monitor
from trustgrpo.monitors._offline import MonitorReport, monitor_run
from trustgrpo.monitors._reward_shape import ComponentDominance, LengthBias, Saturation

__all__ = [
    "DETECTORS",
    "DETECTOR_CLASSES",
    "SEVERITIES",
    "Alert",
    "Canaries",
    "CanariesConfig",
    "ComponentDominance",
    "ComponentDominanceConfig",
    "ComponentInfo",
    "Context",
    "Detector",
    "Finding",
    "GroupBias",
    "GroupBiasConfig",
    "HeldOutConfig",
    "HeldOutGap",
    "LengthBias",
    "LengthBiasConfig",
    "Live",
    "Monitor",
    "MonitorCallback",
    "MonitorReport",
    "MonitorsConfig",
    "Nondeterminism",
    "NondeterminismConfig",
    "ProbeDrift",
    "ProbeDriftConfig",
    "Saturation",
    "SaturationConfig",
    "Severity",
    "StepData",
    "TrainingHealth",
    "TrainingHealthConfig",
    "VerifierHealth",
    "VerifierHealthConfig",
    "Windows",
    "build_callback",
    "check_config",
    "load_config",
    "monitor_run",
    "parse_config",
    "reference_markdown",
    "step_from_batch",
    "step_from_events",
]
