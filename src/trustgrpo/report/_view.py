"""What each section of the report shows: rows of tagged figures built from a
:class:`~trustgrpo.report._collect.RunSummary` and the audits' results. This module holds the
:class:`View` and sections 1-4 (the run); :mod:`._oversight` sections 5-9 (its oversight).

The template only lays these out; every figure is made here with :func:`fact`, so its key and
exact value travel with it (see :mod:`trustgrpo.report._format`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from trustgrpo.ledger.audit import VerifyReport
from trustgrpo.ledger.replay import ReplayReport
from trustgrpo.ledger.sign import Checkpoint, VerifierKey
from trustgrpo.report._format import fact, flatten, show_setting
from trustgrpo.report._monitors import MonitorTable
from trustgrpo.report._summary import STATUSES, RunSummary, StepRow

Row = tuple[str, Markup | str]
MAX_STEP_ROWS = 20
"""Steps shown in the per-step table (evenly spaced; the plots show every step)."""
MAX_EVAL_ROWS = 40
MAX_ALERT_ROWS = 500
MAX_REVIEW_ROWS = 200


@dataclass
class Audits:
    """What the report's own audit of the ledger found."""

    verify: VerifyReport
    replay: ReplayReport | None
    replay_sample: int
    replay_seed: int
    checkpoint: Checkpoint | None
    key: VerifierKey | None
    replay_error: str = ""


@dataclass
class View:
    """Everything the template shows."""

    s: RunSummary
    audits: Audits
    monitors: MonitorTable
    plots: dict[str, Markup]
    glance: list[Row] = field(default_factory=list)
    identity: list[Row] = field(default_factory=list)
    data: list[dict[str, Markup]] = field(default_factory=list)
    config: list[Row] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    verifiers: list[dict[str, Any]] = field(default_factory=list)
    policy: list[Row] = field(default_factory=list)
    training: list[Row] = field(default_factory=list)
    phases: list[Row] = field(default_factory=list)
    hardware: list[Row] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    weights: list[dict[str, Markup]] = field(default_factory=list)
    before_after: list[dict[str, Any]] = field(default_factory=list)
    eval_columns: list[str] = field(default_factory=list)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    eval_rows_hidden: int = 0
    step_columns: list[str] = field(default_factory=list)
    step_rows: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_hidden: int = 0
    alert_totals: list[Row] = field(default_factory=list)
    review: dict[str, Any] = field(default_factory=dict)
    integrity: list[Row] = field(default_factory=list)
    checkpoint_rows: list[Row] = field(default_factory=list)
    replay_rows: list[Row] = field(default_factory=list)
    replay_problems: list[dict[str, Any]] = field(default_factory=list)
    kinds: list[Row] = field(default_factory=list)
    sandbox: list[dict[str, Any]] = field(default_factory=list)
    sandbox_limits: list[Row] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    run_name: str = ""


def _f(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _window(s: RunSummary, rows: Sequence[StepRow]) -> tuple[float | None, float | None]:
    """Mean reward over the unmasked samples, and success rate, of the steps ``rows``."""
    wanted = {r.step for r in rows}
    sel = [i for i, st in enumerate(s.sample_steps.tolist()) if st in wanted]
    rewards = [float(s.rewards[i]) for i in sel if not math.isnan(s.rewards[i])]
    succ = [r.success * r.samples for r in rows if r.success is not None]
    n = sum(r.samples for r in rows if r.success is not None)
    return (sum(rewards) / len(rewards) if rewards else None, sum(succ) / n if n else None)


def run_sections(v: View) -> None:
    """Sections 1-4: identity, objective, training, results."""
    _identity(v)
    _objective(v)
    _training(v)
    _results(v)


# --------------------------------------------------------------------------- sections


def _identity(v: View) -> None:
    s, prov = v.s, v.s.provenance
    code = prov.get("code") or {}
    model = prov.get("model") or {}
    final = s.checkpoints[-1] if s.checkpoints else {}
    v.identity = [
        ("Run name", fact("run.name", v.run_name)),
        ("Ledger origin (log name)", fact("ledger.origin", s.origin)),
        ("First event", fact("run.first_event", s.first_ts, "time")),
        ("Last event", fact("run.last_event", s.last_ts, "time")),
        ("trustgrpo version", fact("code.trustgrpo", code.get("trustgrpo"))),
        ("Code commit (git)", fact("code.git", code.get("git") or "not recorded")),
        ("Initial model", fact("model.source", model.get("source"))),
        ("Initial weights SHA-256", fact("model.initial_sha256", model.get("initial_sha256"))),
        (
            "Final weights SHA-256",
            fact("model.final_sha256", final.get("weights_sha256") or "no checkpoint recorded"),
        ),
        ("Final checkpoint step", fact("model.final_step", final.get("step"))),
        ("Seed", fact("config.run.seed", (s.config.get("run") or {}).get("seed"))),
    ]
    for name, ver in sorted((prov.get("packages") or {}).items()):
        v.identity.append((f"Package {name}", fact(f"packages.{name}", ver)))
    for split, d in sorted((prov.get("data") or {}).items()):
        if isinstance(d, dict):
            v.data.append(
                {
                    "split": fact(f"data.{split}.split", split),
                    "path": fact(f"data.{split}.path", d.get("path")),
                    "rows": fact(f"data.{split}.rows", d.get("rows")),
                    "sha256": fact(f"data.{split}.sha256", d.get("sha256")),
                }
            )
    for key, value in flatten(prov.get("env") or {}):
        v.identity.append((f"Environment {key}", fact(f"env.{key}", show_setting(value))))
    v.config = [
        (k, fact(f"config.{k}", value_fact(val), text=show_setting(val)))
        for k, val in flatten(s.config)
    ]
    for n, (index, kind, start, ts) in enumerate(s.sessions):
        v.sessions.append(
            {
                "n": n + 1,
                "kind": fact(f"session.{n}.kind", kind),
                "index": fact(f"session.{n}.index", index, "id"),
                "start": fact(f"session.{n}.start_step", start),
                "time": fact(f"session.{n}.time", ts, "time"),
            }
        )
    v.changes = s.changes


def value_fact(value: Any) -> Any:
    """A configuration value as a figure: numbers and booleans as they are, the rest as text
    (lists and tables as JSON)."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return show_setting(value) if not isinstance(value, str) else value


def _objective(v: View) -> None:
    s = v.s
    for i, c in enumerate(s.components):
        v.verifiers.append(
            {
                "n": i + 1,
                "name": fact(f"verifier.{i}.name", c.name),
                "type": fact(f"verifier.{i}.type", c.type or "unknown"),
                "role": fact(f"verifier.{i}.role", c.role),
                "weight": fact(f"verifier.{i}.weight", c.weight),
                "id": fact(f"verifier.{i}.id", c.id),
                "source_hash": fact(f"verifier.{i}.source_hash", c.source_hash or "not recorded"),
                "params": fact(f"verifier.{i}.params", show_setting(c.params)),
                "recorded": c.recorded_in >= 0,
            }
        )
    reward = s.config.get("reward") or {}
    grpo = s.config.get("grpo") or {}
    v.policy = [
        (f"[reward] {k}", fact(f"config.reward.{k}", value_fact(val), text=show_setting(val)))
        for k, val in sorted(reward.items())
    ]
    v.policy += [
        (f"[grpo] {k}", fact(f"config.grpo.{k}", value_fact(val), text=show_setting(val)))
        for k, val in sorted(grpo.items())
    ]


def _training(v: View) -> None:
    s = v.s
    fin = s.finished
    elapsed = (s.last_ts - s.first_ts) / 1000 if s.first_ts is not None and s.last_ts else None
    stopped = (
        fact("train.stopped_early", bool(fin.get("stopped_early")))
        if fin is not None
        else Markup(
            '<span class="warn">no run_finished event: the run did not end cleanly, or '
            "is still running</span>"
        )
    )
    v.training = [
        ("Steps recorded", fact("train.steps", len(s.steps))),
        ("Last step", fact("train.last_step", s.steps[-1].step if s.steps else None)),
        (
            "Steps configured (grpo.max_steps)",
            fact("config.grpo.max_steps", (s.config.get("grpo") or {}).get("max_steps")),
        ),
        ("Stopped early", stopped),
        ("Samples scored (reward events counted)", fact("train.samples", s.samples)),
        ("Groups (prompts × steps)", fact("train.groups", s.groups)),
        ("Reward events in the ledger", fact("train.reward_events", s.reward_events)),
        ("…of steps redone after a resume (not counted)", fact("train.superseded", s.superseded)),
        ("Generated tokens", fact("train.tokens", s.tokens)),
        (
            "Mean completion length (tokens)",
            fact("train.mean_tokens", s.tokens / s.samples if s.samples else None),
        ),
        ("Truncated completions", fact("train.truncated", s.truncated)),
        ("Masked samples (no reward: verifier failed)", fact("train.masked", s.masked)),
        ("Elapsed, first to last event", fact("train.elapsed_s", elapsed, "dur")),
        (
            "Sum of the recorded step phases",
            fact(
                "train.phase_s", sum(s.phase_seconds.values()) if s.phase_seconds else None, "dur"
            ),
        ),
        ("Weights checkpoints", fact("train.checkpoints", len(s.checkpoints))),
    ]
    v.phases = [
        (name, fact(f"time.{name}", sec, "float")) for name, sec in sorted(s.phase_seconds.items())
    ]
    hw = s.provenance.get("hardware") or {}
    v.hardware = [(k, fact(f"hardware.{k}", value_fact(val))) for k, val in flatten(hw)]
    for i, c in enumerate(s.components):
        counts = s.outcome_counts[i] if i < len(s.outcome_counts) else {}
        v.outcomes.append(
            {
                "name": c.name,
                "counts": [fact(f"outcomes.{i}.{st}", counts.get(st, 0)) for st in STATUSES],
                "other": counts.get("other", 0),
            }
        )
    for n, ck in enumerate(s.checkpoints):
        v.weights.append(
            {
                "step": fact(f"ckpt.{n}.step", ck.get("step")),
                "index": fact(f"ckpt.{n}.index", ck.get("index"), "id"),
                "sha256": fact(f"ckpt.{n}.sha256", ck.get("weights_sha256")),
                "path": fact(f"ckpt.{n}.path", ck.get("path")),
            }
        )


def _sample_rows(rows: Sequence[StepRow], most: int) -> list[StepRow]:
    if len(rows) <= most:
        return list(rows)
    picks = sorted({round(i * (len(rows) - 1) / (most - 1)) for i in range(most)})
    return [rows[i] for i in picks]


def _results(v: View) -> None:
    s = v.s
    rows = s.steps
    w = max(1, min(10, math.ceil(len(rows) / 10))) if rows else 0
    if rows:
        first, last = rows[:w], rows[-w:]
        r0, s0 = _window(s, first)
        r1, s1 = _window(s, last)
        span = f"steps {first[0].step}–{first[-1].step}" if w > 1 else f"step {first[0].step}"
        span1 = f"steps {last[0].step}–{last[-1].step}" if w > 1 else f"step {last[-1].step}"
        v.before_after = [
            {
                "what": "Mean final reward (training samples)",
                "first": fact("result.reward_first", r0),
                "last": fact("result.reward_last", r1),
                "span": (span, span1),
            },
            {
                "what": "Success rate (every judging verifier correct)",
                "first": fact("result.success_first", s0, "pct"),
                "last": fact("result.success_last", s1, "pct"),
                "span": (span, span1),
            },
        ]
    evals = s.eval_rows
    for key in s.eval_keys:
        pts = [
            (r.step, _f(r.metrics.get(key))) for r in evals if _f(r.metrics.get(key)) is not None
        ]
        if pts:
            kind = "pct" if key == "eval/accuracy" else "float"
            v.before_after.append(
                {
                    "what": f"Held-out {key}",
                    "first": fact(f"result.{key}.first", pts[0][1], kind),
                    "last": fact(f"result.{key}.last", pts[-1][1], kind),
                    "span": (f"step {pts[0][0]}", f"step {pts[-1][0]}"),
                }
            )
    v.eval_columns = list(s.eval_keys)
    shown = _sample_rows(evals, MAX_EVAL_ROWS)
    v.eval_rows_hidden = len(evals) - len(shown)
    for r in shown:
        acc = _f(r.metrics.get("eval/accuracy"))
        v.eval_rows.append(
            {
                "step": fact(f"eval.{r.step}.step", r.step),
                "values": [
                    fact(
                        f"eval.{r.step}.{k}",
                        _f(r.metrics.get(k)),
                        "pct" if k == "eval/accuracy" else "float",
                    )
                    for k in s.eval_keys
                ],
                "success": fact(f"eval.{r.step}.success", r.success, "pct"),
                "gap": fact(
                    f"eval.{r.step}.gap",
                    None if acc is None or r.success is None else r.success - acc,
                    "pp",
                ),
            }
        )
    v.step_columns = [c.name for c in s.components]
    for r in _sample_rows(rows, MAX_STEP_ROWS):
        v.step_rows.append(
            {
                "step": fact(f"step.{r.step}.step", r.step),
                "samples": fact(f"step.{r.step}.samples", r.samples),
                "reward": fact(f"step.{r.step}.reward_mean", r.reward_mean, "float"),
                "success": fact(f"step.{r.step}.success", r.success, "pct"),
                "length": fact(f"step.{r.step}.mean_tokens", r.mean_tokens, "float"),
                "scores": [
                    fact(f"step.{r.step}.score.{i}", sc, "float") for i, sc in enumerate(r.scores)
                ],
                "loss": fact(f"step.{r.step}.loss", _f(r.metrics.get("loss")), "float"),
                "kl": fact(f"step.{r.step}.kl", _f(r.metrics.get("kl")), "float"),
            }
        )
