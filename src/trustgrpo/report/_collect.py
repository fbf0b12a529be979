"""One pass over a run's ledger: every figure the compliance report shows.

:func:`collect` reads the events once, in order, and returns a :class:`RunSummary`. Nothing
comes from ``metrics.jsonl``, ``run.toml`` or any other file beside the ledger: the run's
configuration and provenance are those recorded in its ``run_started`` event.

Resumed runs: a resumed run redoes the steps after its checkpoint, so the ledger may hold a
step twice. For every step, the reward and step events of the *latest* session (the
``run_started`` / ``run_resumed`` segment) that wrote it count, since that is the one the
final weights descend from; the others are counted as superseded.

A sample is *successful* when every judging component (role ``reward`` or ``gate``, not
``shaping``) says ``correct``, as in the trainer's held-out accuracy. The verifier's verdict
on a sample, compared with human labels, is ``correct`` (successful), ``unscored`` (some
judging component abstained, failed or timed out) or ``incorrect``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from trustgrpo.errors import UserError
from trustgrpo.ledger.events import Event
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.report._format import flatten, show_setting
from trustgrpo.report._review import (
    Decision,
    Label,
    Override,
    Review,
    agreement,
    attach_review,
    excerpt,
)
from trustgrpo.report._summary import STATUSES, AlertRow, Component, RunSummary, StepRow

_STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}
_OTHER_STATUS = len(STATUSES)  # a status this version does not know


# --------------------------------------------------------------------------- the pass


class _Pass:
    """Accumulators filled event by event (the hot path is the reward branch)."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.config: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        self.sessions: list[tuple[int, str, int, int]] = []
        self.components: list[Component] = []
        self.comp_index: dict[str, int] = {}
        # per reward event
        self.r_index: list[int] = []
        self.r_step: list[int] = []
        self.r_session: list[int] = []
        self.r_reward: list[float] = []
        self.r_tokens: list[int] = []
        self.r_trunc: list[bool] = []
        self.r_group: list[int] = []
        # per outcome
        self.o_row: list[int] = []
        self.o_comp: list[int] = []
        self.o_status: list[int] = []
        self.o_score: list[float] = []
        # step events: step -> (session, metrics)
        self.step_events: dict[int, tuple[int, dict[str, Any]]] = {}
        self.checkpoints: list[dict[str, Any]] = []
        self.finished: dict[str, Any] | None = None
        self.alerts: list[AlertRow] = []
        self.review = Review()
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.changes: list[str] = []

    def component(self, vid: str, session_event: int = -1) -> int:
        i = self.comp_index.get(vid)
        if i is None:
            i = len(self.components)
            self.comp_index[vid] = i
            name, _, version = vid.rpartition("@")
            self.components.append(
                Component(id=vid, name=name or vid, version=version, recorded_in=session_event)
            )
        return i

    def inventory(self, index: int, inventory: Any) -> None:
        for v in inventory if isinstance(inventory, list) else []:
            if not isinstance(v, Mapping):
                continue
            vid = str(v.get("id") or f"{v.get('name', '')}@{v.get('version', '')}")
            if vid in self.comp_index:
                continue
            i = self.component(vid, index)
            weight = v.get("weight")
            self.components[i] = Component(
                id=vid,
                name=str(v.get("name", "")),
                type=str(v.get("type", "")),
                version=str(v.get("version", "")),
                role=str(v.get("role", "reward")),
                weight=float(weight) if isinstance(weight, (int, float)) else None,
                source_hash=str(v.get("source_hash", "")),
                params=dict(v.get("params") or {}),
                info=dict(v.get("info") or {}),
                recorded_in=index,
            )


def collect(reader: LedgerReader, *, replay_sample: int = 0, replay_seed: int = 0) -> RunSummary:
    """Read every event of ``reader`` once; :class:`UserError` for an empty ledger.

    ``replay_sample``: also draw that many reward events at random, exactly as
    ``trustgrpo audit replay --sample N --seed S`` does (the same reservoir and generator), so
    the report's replay needs no second pass and a third party's command replays the same
    events (:attr:`RunSummary.replay_pick`).
    """
    p = _Pass()
    pick: list[int] = []
    randrange = random.Random(replay_seed).randrange
    session = -1
    r_index, r_step, r_session = p.r_index, p.r_step, p.r_session
    r_reward, r_tokens, r_trunc, r_group = p.r_reward, p.r_tokens, p.r_trunc, p.r_group
    o_row, o_comp, o_status, o_score = p.o_row, p.o_comp, p.o_status, p.o_score
    comp_index, status_code = p.comp_index, _STATUS_CODE
    nan = math.nan
    ts = None
    count = 0
    for ev in reader.events():
        count += 1
        kind, body, ts = ev.kind, ev.body, ev.ts
        if p.first_ts is None:
            p.first_ts = ts
        if kind == "reward":
            row = len(r_index)
            r_index.append(ev.index)
            if replay_sample:
                if row < replay_sample:
                    pick.append(ev.index)
                else:
                    j = randrange(row + 1)
                    if j < replay_sample:
                        pick[j] = ev.index
            r_step.append(int(body.get("step") or 0))
            r_session.append(session)
            reward = body.get("reward")
            r_reward.append(nan if reward is None else float(reward))
            r_tokens.append(int(body.get("num_tokens") or 0))
            r_trunc.append(bool(body.get("truncated")))
            r_group.append(int(body.get("group_id") or 0))
            for o in body.get("outcomes") or ():
                vid = o.get("verifier", "")
                c = comp_index.get(vid)
                if c is None:
                    c = p.component(str(vid))
                o_row.append(row)
                o_comp.append(c)
                o_status.append(status_code.get(o.get("status"), _OTHER_STATUS))
                score = o.get("score")
                o_score.append(nan if score is None else float(score))
            continue
        p.kinds[kind] += 1
        _other_event(p, ev.index, kind, body, ts)
        if kind in ("run_started", "run_resumed"):
            session += 1
    p.kinds["reward"] += len(r_index)
    p.last_ts = ts
    if count == 0:
        raise UserError(f"{reader.location}: the ledger is empty")
    summary = _summarise(reader, p, count)
    summary.replay_pick = sorted(pick)
    return summary


def _other_event(p: _Pass, index: int, kind: str, body: dict[str, Any], ts: int) -> None:
    if kind in ("run_started", "run_resumed"):
        start = int(body.get("start_step") or 0)
        p.sessions.append((index, kind, start, ts))
        config = dict(body.get("config") or {})
        inventory = (body.get("provenance") or {}).get("verifiers")
        if not p.config:
            p.config = config
            p.provenance = dict(body.get("provenance") or {})
        else:
            p.changes.extend(_changes(p, index, start, config, inventory))
        p.inventory(index, inventory)
    elif kind == "step":
        session = len(p.sessions) - 1
        p.step_events[int(body.get("step") or 0)] = (session, dict(body.get("metrics") or {}))
    elif kind == "checkpoint":
        p.checkpoints.append({"index": index, **body})
    elif kind == "run_finished":
        p.finished = dict(body.get("result") or {})
    elif kind == "alert":
        p.alerts.append(
            AlertRow(
                index=index,
                step=_int(body.get("step")),
                detector=str(body.get("detector", "")),
                check=str(body.get("check", "")),
                severity=str(body.get("severity", "")),
                statistic=_float(body.get("statistic")),
                threshold=_float(body.get("threshold")),
                action=str(body.get("action", "")),
                message=str(body.get("message", "")),
                evidence=list(body.get("evidence") or []),
                ts=ts,
            )
        )
    elif kind == "decision":
        p.review.decisions.append(
            Decision(
                index=index,
                alert=_int(body.get("alert")),
                decision=str(body.get("decision", "")),
                reviewer=str(body.get("reviewer", "")),
                reason=str(body.get("reason", "")),
                ts=ts,
            )
        )
    elif kind == "feedback":
        p.review.labels.append(
            Label(
                index=index,
                event=_int(body.get("event")),
                reviewer=str(body.get("reviewer", "")),
                verdict=str(body.get("verdict", "")),
                verifier="",
                reason=str(body.get("reason", "")),
            )
        )
    elif kind == "override":
        p.review.overrides.append(
            Override(
                index=index,
                event=_int(body.get("event")),
                reviewer=str(body.get("reviewer", "")),
                recorded=None,
                reward=_float(body.get("reward")),
                reason=str(body.get("reason", "")),
                ts=ts,
            )
        )


def _changes(p: _Pass, index: int, start: int, config: dict[str, Any], inventory: Any) -> list[str]:
    """What a resumed session changed: configuration values and verifier ids."""
    where = f"event {index} (resumed at step {start})"
    before, after = dict(flatten(p.config)), dict(flatten(config))
    out = [
        f"{where}: {k} {show_setting(before.get(k))} → {show_setting(after.get(k))}"
        for k in sorted(set(before) | set(after))
        if before.get(k) != after.get(k) and not k.startswith("run.output_dir")
    ]
    known = {c.id for c in p.components}
    ids = [str(v.get("id", "")) for v in inventory or [] if isinstance(v, Mapping)]
    out += [
        f"{where}: verifier {vid} is new (a changed verifier is a new verifier)"
        for vid in ids
        if vid not in known
    ]
    return out


def _int(x: Any) -> int | None:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) else None


def _float(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _mean_or_none(total: float, n: float) -> float | None:
    return float(total / n) if n else None


def _latest_session(step: np.ndarray, session: np.ndarray) -> np.ndarray:
    """Mask of the reward events that count: for each step, those of the latest session that
    wrote rewards for it (earlier ones were redone after a resume)."""
    if not len(step):
        return np.zeros(0, dtype=bool)
    lo = int(step.min())
    latest = np.full(int(step.max()) - lo + 1, -2, dtype=np.int64)
    np.maximum.at(latest, step - lo, session)
    return np.asarray(session == latest[step - lo])


def _verdicts(
    p: _Pass, n: int, o_row: np.ndarray, o_comp: np.ndarray, o_status: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: success (every judging component correct), and the verdict code
    (0 correct, 1 incorrect, 2 unscored)."""
    judging = np.asarray([c.judges for c in p.components], dtype=bool)[o_comp]
    n_judging = np.bincount(o_row[judging], minlength=n)
    n_correct = np.bincount(o_row[judging & (o_status == 0)], minlength=n)
    n_unscored = np.bincount(o_row[judging & (o_status >= 2)], minlength=n)
    success = (n_judging > 0) & (n_correct == n_judging)
    return success, np.where(n_unscored > 0, 2, np.where(success, 0, 1))


def _step_rows(
    p: _Pass, keep: np.ndarray, success: np.ndarray, o: dict[str, np.ndarray]
) -> tuple[list[StepRow], list[str], dict[str, float]]:
    """One row per counted step; the eval metrics seen; seconds per phase."""
    step, reward = o["step"], o["reward"]
    k = max(len(p.components), 1)
    counted = sorted(set(step[keep].tolist()) | set(p.step_events))
    ns = len(counted)
    srow = np.searchsorted(np.asarray(counted, dtype=np.int64), step)
    samples = np.bincount(srow[keep], minlength=ns)
    unmasked = keep & ~np.isnan(reward)
    r_sum = np.bincount(srow[unmasked], weights=reward[unmasked], minlength=ns)
    r_n = np.bincount(srow[unmasked], minlength=ns)
    succ = np.bincount(srow[keep], weights=success[keep].astype(float), minlength=ns)
    tok = np.bincount(srow[keep], weights=o["tokens"][keep].astype(float), minlength=ns)
    scored = keep[o["o_row"]] & ~np.isnan(o["o_score"])
    cell = srow[o["o_row"][scored]] * k + o["o_comp"][scored]
    c_sum = np.bincount(cell, weights=o["o_score"][scored], minlength=ns * k).reshape(ns, k)
    c_n = np.bincount(cell, minlength=ns * k).reshape(ns, k)
    rows = []
    eval_keys: set[str] = set()
    phase: dict[str, float] = {}
    for i, s in enumerate(counted):
        metrics = p.step_events.get(s, (0, {}))[1]
        eval_keys.update(m for m in metrics if m.startswith("eval/"))
        for m, v in metrics.items():
            if m.startswith("time/") and isinstance(v, (int, float)):
                phase[m[5:]] = phase.get(m[5:], 0.0) + float(v)
        rows.append(
            StepRow(
                step=s,
                samples=int(samples[i]),
                reward_mean=_mean_or_none(r_sum[i], r_n[i]),
                success=_mean_or_none(succ[i], samples[i]),
                mean_tokens=_mean_or_none(tok[i], samples[i]),
                scores=[_mean_or_none(c_sum[i, c], c_n[i, c]) for c in range(len(p.components))],
                metrics=metrics,
            )
        )
    return rows, sorted(eval_keys), phase


def _outcome_counts(p: _Pass, keep: np.ndarray, o: dict[str, np.ndarray]) -> list[dict[str, int]]:
    """Per component, counted outcomes per status."""
    kept = keep[o["o_row"]]
    status, comp = o["o_status"][kept], o["o_comp"][kept]
    out = []
    for c in range(len(p.components)):
        codes = np.bincount(status[comp == c], minlength=len(STATUSES) + 1)
        counts = {s: int(codes[i]) for i, s in enumerate(STATUSES)}
        if codes[_OTHER_STATUS]:
            counts["other"] = int(codes[_OTHER_STATUS])
        out.append(counts)
    return out


def _summarise(reader: LedgerReader, p: _Pass, count: int) -> RunSummary:
    """Vectorised aggregation of what the pass collected."""
    o = {
        "index": np.asarray(p.r_index, dtype=np.int64),
        "step": np.asarray(p.r_step, dtype=np.int64),
        "reward": np.asarray(p.r_reward, dtype=np.float64),
        "tokens": np.asarray(p.r_tokens, dtype=np.int64),
        "o_row": np.asarray(p.o_row, dtype=np.int64),
        "o_comp": np.asarray(p.o_comp, dtype=np.int64),
        "o_status": np.asarray(p.o_status, dtype=np.int64),
        "o_score": np.asarray(p.o_score, dtype=np.float64),
    }
    step, reward, tokens = o["step"], o["reward"], o["tokens"]
    keep = _latest_session(step, np.asarray(p.r_session, dtype=np.int64))
    success, verdict = _verdicts(p, len(step), o["o_row"], o["o_comp"], o["o_status"])
    rows, eval_keys, phase = _step_rows(p, keep, success, o)
    group = np.asarray(p.r_group, dtype=np.int64)
    review = p.review
    attach_review(reader, review, o["index"], reward, verdict)
    _attach_alerts(reader, p.alerts, review.decisions)
    return RunSummary(
        location=reader.location,
        origin=reader.origin,
        events=count,
        kinds=dict(sorted(p.kinds.items())),
        first_ts=p.first_ts,
        last_ts=p.last_ts,
        config=p.config,
        provenance=p.provenance,
        sessions=p.sessions,
        components=p.components,
        steps=rows,
        reward_events=len(step),
        samples=int(keep.sum()),
        masked=int((keep & np.isnan(reward)).sum()),
        truncated=int((keep & np.asarray(p.r_trunc, dtype=bool)).sum()),
        tokens=int(tokens[keep].sum()),
        groups=len(set(zip(step[keep].tolist(), group[keep].tolist(), strict=True))),
        outcome_counts=_outcome_counts(p, keep, o),
        lengths=tokens[keep],
        rewards=reward[keep],
        sample_steps=step[keep],
        checkpoints=p.checkpoints,
        finished=p.finished,
        alerts=p.alerts,
        review=review,
        agreement=agreement(review.labels),
        changes=p.changes,
        superseded=int((~keep).sum()),
        eval_keys=eval_keys,
        phase_seconds=phase,
    )


def _attach_alerts(reader: LedgerReader, alerts: list[AlertRow], decisions: list[Decision]) -> None:
    first: dict[int, Decision] = {}
    for d in decisions:
        if d.alert is not None:
            first.setdefault(d.alert, d)
    for a in alerts:
        a.decision = first.get(a.index)
    for a in alerts[:MAX_ALERT_EXCERPTS]:
        for ref in a.evidence:
            if isinstance(ref, int) and not isinstance(ref, bool):
                text = excerpt(reader, ref)
                if text is not None:
                    a.excerpt, a.excerpt_event = text, ref
                    break


MAX_ALERT_EXCERPTS = 200
"""Alerts (the first ones) shown with a completion from their evidence."""


class Subset(LedgerReader):
    """A view of a ledger holding only some of its events (sharing its store, which it does
    not close): what ``replay`` reads to re-score a sample drawn in the same pass."""

    def __init__(self, base: LedgerReader, indices: list[int]) -> None:
        super().__init__(base.run_dir, base.store)
        self._indices = sorted(indices)

    def events(self, start: int = 0) -> Iterator[Event]:
        for i in self._indices:
            if i >= start:
                yield self.get_event(i)

    def close(self) -> None:
        """The base reader owns the store."""
