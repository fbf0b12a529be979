"""The ``[monitors]`` table of a run file: one frozen dataclass per detector.

Every field's docstring says what it does and why its default is what it is; the defaults
are calibrated so that clean runs stay quiet (at most one alert per 1,000 steps per detector,
measured over 20 seeds: see ``tests/monitors/test_false_alarms.py`` and
``bench/monitors.py --false-alarms``). A run file sets any of them::

    [monitors]
    cooldown_steps = 100

    [monitors.length_bias]
    threshold = 0.4

    [monitors.held_out]
    verifier = {type = "exact"}

:func:`~trustgrpo.monitors.check_config` (in :mod:`._checking`) lists every problem, each
naming its TOML path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from trustgrpo._tables import field_range
from trustgrpo.monitors._alert import Severity

_PATH = {"path": True}


@dataclass(frozen=True)
class LengthBiasConfig:
    """[monitors.length_bias]: reward that tracks completion length (Singhal et al. 2023,
    arXiv:2310.03716; Dr. GRPO, arXiv:2503.20783). Language-model runs only: in a control
    run an episode's length is often its return."""

    enabled: bool = True
    """Run this detector."""
    action: Severity = "review"
    """Length bias is a reason to look at completions, not proof of a broken verifier."""
    window: int = field(default=20, metadata=field_range(ge=2))
    """Steps pooled per statistic. 20 steps of the demo pool 2,560 completions, so the
    correlation's standard error is about 0.02; the reference window is the first 20 steps."""
    threshold: float = field(default=0.3, metadata=field_range(ge=0, le=1))
    """Within-group Spearman ρ(length, reward), pooled over the window, at or above which
    reward is said to track length. 0.3 is a moderate monotone association; a correctness
    verifier shows none within groups (same prompt, different lengths)."""
    gain_share: float = field(default=0.5, metadata=field_range(ge=0, le=1))
    """Share of the reward gain since the reference window that a length-only reward model
    (mean reward per length bucket) must explain: Singhal et al. found length alone
    reproduces most RLHF reward gains; here more than half. ρ alone is no proof: a model that
    stops too early is both short and wrong."""
    min_gain: float = field(default=0.1, metadata=field_range(ge=0))
    """Reward gain (reward units) below which the gain is not analysed: no gain, no hacking."""
    min_samples: int = field(default=200, metadata=field_range(ge=10))
    """Informative samples (in groups whose lengths and rewards both vary) needed in the
    window; with 200, ρ = 0.3 is over four standard errors from 0."""
    divergence: float = field(default=0.5, metadata=field_range(gt=0))
    """Growth, since the reference window, of (mean length of incorrect − mean length of
    correct completions) / mean length at which to alert: Dr. GRPO shows GRPO's 1/|o|
    normalisation lengthens incorrect answers. 0.5 = half a mean length, a large change."""
    min_per_class: int = field(default=50, metadata=field_range(ge=2))
    """Correct and incorrect completions each needed in both windows for the divergence."""
    alpha: float = field(default=0.001, metadata=field_range(gt=0, le=1))
    """Level of the one-sided test the divergence's growth must also pass."""


@dataclass(frozen=True)
class ComponentDominanceConfig:
    """[monitors.component_dominance]: a shaping or format component rising while accuracy
    stays flat (TRL issue #5298: format reward up, accuracy near zero)."""

    enabled: bool = True
    """Run this detector (it needs at least one accuracy and one other component)."""
    action: Severity = "review"
    """The policy may be learning the format first; a person decides whether it is stuck."""
    accuracy: tuple[str, ...] = ()
    """Names of the accuracy components; empty: every ``reward`` or ``gate`` component whose
    type is not a format check (``regex``, ``format``, ``json_schema``, ``length``,
    ``overlong``)."""
    window: int = field(default=20, metadata=field_range(ge=2))
    """Steps per mean; the reference is the first window."""
    min_rise: float = field(default=0.2, metadata=field_range(gt=0))
    """Rise of a non-accuracy component's mean score (its own units; format checks score
    0..1) since the reference window at which it counts as rising: a fifth of full credit."""
    flat: float = field(default=0.05, metadata=field_range(ge=0))
    """Accuracy counts as flat when no accuracy component's mean rose by more than this."""
    ceiling: float = field(default=0.9, metadata=field_range(ge=0, le=1))
    """No alert when accuracy is already at or above this success rate (nothing to gain)."""


@dataclass(frozen=True)
class HeldOutConfig:
    """[monitors.held_out]: the gap between the training reward and an independent verifier
    on held-out prompts (over-optimisation, Gao et al. 2022, arXiv:2210.10760)."""

    enabled: bool = True
    """Run this detector when ``verifier`` is set."""
    action: Severity = "review"
    """Over-optimisation builds up over many steps; a person can compare checkpoints."""
    verifier: Mapping[str, Any] = field(default_factory=dict)
    """The held-out verifier, a ``[[verifiers]]``-style table (e.g. ``{type = "exact"}``),
    stricter than or independent of the training reward. Empty: the detector is off,
    since no independent verifier can be guessed."""
    prompts: str = field(default="", metadata=_PATH)
    """Held-out prompts (JSONL or Parquet, the run's data columns); empty: ``data.eval``."""
    max_prompts: int = field(default=64, metadata=field_range(ge=1))
    """Prompts used (the first N). 64 give a success-rate standard error of about 0.06 and
    cost one greedy batch."""
    every: int = field(default=50, metadata=field_range(ge=1))
    """Check every N steps (and at step 1, before any update, as the baseline).
    Over-optimisation builds up over hundreds of steps; one check costs about one step of
    greedy decoding, so every 50 steps keeps it near 1% of training time on the demo."""
    threshold: float = field(default=0.2, metadata=field_range(gt=0, le=1))
    """Growth since step 1 of the share of held-out completions the training reward calls
    correct and the held-out verifier does not (proxy rises, gold does not)."""
    drop: float = field(default=0.15, metadata=field_range(gt=0, le=1))
    """Fall of the held-out success rate from its best check while the training reward
    rose and still accepts at least as many of the held-out completions (Gao et al.: the
    gold reward peaks, then falls, while the proxy keeps rising)."""
    alpha: float = field(default=0.001, metadata=field_range(gt=0, le=1))
    """One-sided Fisher exact test level both changes must also pass (64 prompts are few)."""


@dataclass(frozen=True)
class CanariesConfig:
    """[monitors.canaries]: known-exploit completions that must never be scored correct."""

    enabled: bool = True
    """Run this detector."""
    action: Severity = "halt"
    """A verifier that accepts a known exploit pays the policy to find it: every further
    step trains on a wrong reward. Stop, fix the verifier, resume."""
    file: str = field(default="", metadata=_PATH)
    """JSONL of canaries: ``prompt``, ``completion``, optional ``reference``, ``id`` and
    other columns (given to verifiers as data columns)."""
    builtin: int = field(default=8, metadata=field_range(ge=0))
    """Also re-run the verifiers' own self-test (gold answers must pass, their built-in
    canaries must fail) on this many training prompts; 0 turns it off."""
    every: int = field(default=50, metadata=field_range(ge=1))
    """Re-score every N steps (and at step 1): a verifier that calls a service or loads a
    library can change under a running job."""


@dataclass(frozen=True)
class NondeterminismConfig:
    """[monitors.nondeterminism]: the same completion scored twice must score the same."""

    enabled: bool = True
    """Run this detector."""
    action: Severity = "review"
    """Rewards that change on re-scoring are noise in the advantage and cannot be replayed
    from the ledger; the verifier needs fixing, but the run is not necessarily wrong."""
    sample: int = field(default=8, metadata=field_range(ge=1))
    """Samples re-scored per step (chosen at random, seeded by the run seed and step). A
    verifier that disagrees with itself on a share f of samples is caught within about
    1/(8f) steps; 8 of the demo's 128 samples add 6% to the verify phase."""
    every: int = field(default=1, metadata=field_range(ge=1))
    """Re-score every N steps."""
    max_share: float = field(default=0.01, metadata=field_range(gt=0, le=1))
    """Most of the training time re-scoring may take: a step is skipped while re-scoring has
    used more than this share of the wall time so far. Cheap verifiers are re-scored every
    step; slow ones (a sandbox, an environment re-simulated from its seed) every few steps,
    so that the monitors stay within their 2% budget."""
    ignore_timeouts: bool = True
    """A timeout on one scoring and not the other is wall-clock jitter, not a verifier
    disagreeing with itself (timeout rates are watched by ``verifier_health``)."""


@dataclass(frozen=True)
class VerifierHealthConfig:
    """[monitors.verifier_health]: error, timeout and abstain rates per verifier."""

    enabled: bool = True
    """Run this detector."""
    action: Severity = "review"
    """Failed outcomes are masked, so training goes on; but the masked samples are not random
    (the ones the verifier cannot handle), which biases the advantage."""
    window: int = field(default=20, metadata=field_range(ge=1))
    """Steps per rate; the reference for changes is the first window."""
    max_failure_rate: float = field(default=0.02, metadata=field_range(ge=0, le=1))
    """Share of error + timeout outcomes in the window above which to alert: a failure is
    never a silent zero, and masking more than 2% of samples is a bias worth a look."""
    max_abstain_rise: float = field(default=0.1, metadata=field_range(gt=0, le=1))
    """Rise of the abstain rate since the reference window (abstaining is legitimate, e.g.
    rows without a reference, so only its change alerts)."""
    max_failure_rise: float = field(default=0.01, metadata=field_range(gt=0, le=1))
    """Rise of the error + timeout rate since the reference window (with a one-sided Fisher
    exact test at ``alpha``): a verifier that starts failing mid-run."""
    alpha: float = field(default=0.001, metadata=field_range(gt=0, le=1))
    """Level of the Fisher exact tests on rises."""


@dataclass(frozen=True)
class ProbeDriftConfig:
    """[monitors.probe_drift]: a frozen set of (prompt, completion) pairs must keep its
    scores; a change means the reward function itself drifted."""

    enabled: bool = True
    """Run this detector when ``file`` is set."""
    action: Severity = "review"
    """Rewards before and after a drift are not comparable; a person decides whether the
    new behaviour is a fix or a regression."""
    file: str = field(default="", metadata=_PATH)
    """JSONL of probes: ``prompt``, ``completion``, optional ``reference``, ``id`` and
    ``expected`` (the final reward it must get, to compare across runs and library upgrades;
    without it the first scoring in the run is the baseline)."""
    every: int = field(default=50, metadata=field_range(ge=1))
    """Re-score every N steps (and at step 1)."""
    tolerance: float = field(default=1e-9, metadata=field_range(ge=0))
    """Largest score change that is not a drift (floating-point noise)."""


@dataclass(frozen=True)
class GroupBiasConfig:
    """[monitors.group_bias]: success rates and rewards across prompt categories."""

    enabled: bool = True
    """Run this detector when ``column`` is set."""
    action: Severity = "review"
    """A growing gap may be real difficulty; a person looks at the category."""
    column: str = ""
    """Metadata column of the data holding the category (e.g. ``op``, ``language``); empty:
    off, since categories are specific to a data set."""
    window: int = field(default=50, metadata=field_range(ge=2))
    """Steps per window; the reference is the first window. Prompts (groups) are the units
    of the test, so a window must hold enough groups of each category."""
    min_groups: int = field(default=30, metadata=field_range(ge=2))
    """Groups of a category needed in both windows for it to be tested."""
    min_gap: float = field(default=0.15, metadata=field_range(gt=0))
    """Growth of a category's gap to the rest (success rate, and reward in reward units)
    at which it may alert: 15 points is a disparity that matters."""
    alpha: float = field(default=0.001, metadata=field_range(gt=0, le=1))
    """Family-wise level, Holm-corrected over every category and both measures."""


@dataclass(frozen=True)
class SaturationConfig:
    """[monitors.saturation]: groups whose rewards are all equal carry no learning signal."""

    enabled: bool = True
    """Run this detector."""
    action: Severity = "warn"
    """Nothing is wrong with the rewards; the steps are wasted (the task is solved or too
    hard), which the ledger should show."""
    window: int = field(default=20, metadata=field_range(ge=1))
    """Steps per fraction."""
    threshold: float = field(default=0.9, metadata=field_range(gt=0, le=1))
    """Fraction of zero-variance groups at or above which to alert: DAPO's dynamic sampling
    (arXiv:2503.14476) drops such groups because they give no gradient; at 90% a step trains
    on almost nothing."""


@dataclass(frozen=True)
class TrainingHealthConfig:
    """[monitors.training_health]: entropy collapse, KL spikes, repetitive completions."""

    enabled: bool = True
    """Run this detector."""
    action: Severity = "warn"
    """Symptoms of an unstable update, not of a wrong reward."""
    window: int = field(default=20, metadata=field_range(ge=2))
    """Steps per median; the entropy reference is the first window."""
    entropy_floor: float = field(default=0.1, metadata=field_range(gt=0, lt=1))
    """Alert when the window's median entropy falls below this share of the reference
    median while the task is unsolved (Cui et al. 2025, arXiv:2505.22617: entropy collapse
    caps what RL can still learn). A solved task may legitimately be deterministic."""
    solved: float = field(default=0.95, metadata=field_range(gt=0, le=1))
    """Success rate at or above which a low entropy is convergence, not collapse."""
    kl_spike: float = field(default=10.0, metadata=field_range(gt=1))
    """Alert when a step's KL exceeds this multiple of the previous window's median KL (only
    with ``grpo.beta > 0``): the k3 estimate is noisy, a tenfold jump is a policy jump."""
    kl_min: float = field(default=0.01, metadata=field_range(ge=0))
    """KL values below this are never spikes (a multiple of nearly nothing is nothing)."""
    ngram: int = field(default=3, metadata=field_range(ge=1))
    """n of the n-gram repeat rate (words; characters for text without spaces; language-model
    runs only)."""
    max_repeat: float = field(default=0.5, metadata=field_range(gt=0, le=1))
    """Mean share of repeated n-grams per completion at or above which to alert: half the
    n-grams repeating is a loop, not prose."""
    repeat_rise: float = field(default=0.2, metadata=field_range(gt=0, le=1))
    """...and only if it rose by this since the reference window (some outputs repeat by
    nature: lists, code)."""


DETECTORS: dict[str, type] = {
    "length_bias": LengthBiasConfig,
    "component_dominance": ComponentDominanceConfig,
    "held_out": HeldOutConfig,
    "canaries": CanariesConfig,
    "nondeterminism": NondeterminismConfig,
    "verifier_health": VerifierHealthConfig,
    "probe_drift": ProbeDriftConfig,
    "group_bias": GroupBiasConfig,
    "saturation": SaturationConfig,
    "training_health": TrainingHealthConfig,
}
"""Detector name (its table under ``[monitors]``) → its settings class."""


@dataclass(frozen=True)
class MonitorsConfig:
    """[monitors]: the detectors that watch the reward signal, and what their alerts do."""

    enabled: bool = True
    """Run the monitors; turning them off must be explicit."""
    cooldown_steps: int = field(default=50, metadata=field_range(ge=1))
    """A check that keeps firing alerts again only after this many steps: one alert per
    episode, repeated so that a condition that persists is not forgotten."""
    max_action: Severity = "halt"
    """The strongest action any alert may take (``review`` in CI: nothing pauses or stops)."""
    max_evidence: int = field(default=16, metadata=field_range(ge=1))
    """Evidence items kept per alert (the most telling first)."""
    pause_timeout_s: float = field(default=86400.0, metadata=field_range(ge=0))
    """How long a paused run waits for a decision; 0 waits forever. A day by default: long
    enough for a person, short enough that a forgotten job frees its machine."""
    on_pause_timeout: Literal["halt", "continue"] = "halt"
    """What a pause does when nobody decides in time: an unresolved alert must not be
    trained through silently."""
    pause_poll_s: float = field(default=2.0, metadata=field_range(gt=0))
    """Seconds between looks at the ledger for a decision while paused."""
    length_bias: LengthBiasConfig = field(default_factory=LengthBiasConfig)
    component_dominance: ComponentDominanceConfig = field(default_factory=ComponentDominanceConfig)
    held_out: HeldOutConfig = field(default_factory=HeldOutConfig)
    canaries: CanariesConfig = field(default_factory=CanariesConfig)
    nondeterminism: NondeterminismConfig = field(default_factory=NondeterminismConfig)
    verifier_health: VerifierHealthConfig = field(default_factory=VerifierHealthConfig)
    probe_drift: ProbeDriftConfig = field(default_factory=ProbeDriftConfig)
    group_bias: GroupBiasConfig = field(default_factory=GroupBiasConfig)
    saturation: SaturationConfig = field(default_factory=SaturationConfig)
    training_health: TrainingHealthConfig = field(default_factory=TrainingHealthConfig)

    def detector(self, name: str) -> Any:
        """The settings of detector ``name``."""
        return getattr(self, name)


def reference_markdown() -> str:
    """Every ``[monitors]`` key with its default and reason (for the README)."""
    from trustgrpo.config import field_docs

    out = []
    for name, cls in [("monitors", MonitorsConfig), *DETECTORS.items()]:
        title = "monitors" if name == "monitors" else f"monitors.{name}"
        out.append(f"#### `[{title}]`\n")
        out.append("| key | default | meaning |\n|---|---|---|")
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name in DETECTORS:
                continue
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = repr(f.default_factory())
            else:  # pragma: no cover - every field has a default
                default = "(required)"
            out.append(f"| `{f.name}` | `{default}` | {' '.join(docs.get(f.name, '').split())} |")
        out.append("")
    return "\n".join(out)
