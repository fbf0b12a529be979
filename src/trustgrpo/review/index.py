"""A live view of one run's ledger for the review app, updated incrementally.

:class:`RunView` reads the events once, in order, and keeps what the pages need: a compact
row per reward event (the full event is read back on demand), per-step aggregates, alerts and
the decisions on them, labels (``feedback``) and ``override`` events, the review queue, and a
Merkle tree recomputed from the leaves (to check the latest signed checkpoint). Each
:meth:`RunView.refresh` reads only the events appended since the last one, so the view
follows a run that is still training.

The verifier's verdict on a sample (what people are compared with) is ``correct`` when every
judging component (role ``reward`` or ``gate``; not ``shaping``) says correct, ``unscored``
when a judging component abstained, failed or timed out, else ``incorrect``: the same rule as
the trainer's held-out accuracy and the compliance report.

Resumed runs redo the steps after their checkpoint: a step's aggregates are those of the
latest session that recorded it.

Thread safety: one re-entrant lock (:attr:`RunView.lock`) guards the reader (a store
connection is not thread-safe) and the view's fields: every method that touches the ledger
takes it, and code that reads the fields while another thread may refresh holds it.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from trustgrpo.errors import TrustGRPOError
from trustgrpo.ledger.events import Event, parse_event
from trustgrpo.ledger.merkle import MerkleTree, leaf_hash
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.review.queue import QueueConfig, ReviewQueue
from trustgrpo.review.stats import Agreement, ErrorRate, agreement, error_rate

UNSCORED = ("abstain", "error", "timeout")
LABELS_HUMAN = ("correct", "incorrect", "unsure")
"""What a person may answer to "is this completion correct?"."""
PAUSING = ("review", "pause", "halt")
"""Alert severities whose reward evidence goes into the review queue."""


def verdict_of(outcomes: Sequence[Mapping[str, Any]], roles: Mapping[str, str]) -> str:
    """``correct``, ``incorrect`` or ``unscored`` (see the module docstring).

    >>> verdict_of([{"verifier": "a@1", "status": "correct"},
    ...             {"verifier": "fmt@1", "status": "incorrect"}], {"fmt@1": "shaping"})
    'correct'
    """
    judging = [o for o in outcomes if roles.get(str(o.get("verifier")), "reward") != "shaping"]
    if not judging:
        return "unscored"
    statuses = [o.get("status") for o in judging]
    if any(s in UNSCORED for s in statuses):
        return "unscored"
    return "correct" if all(s == "correct" for s in statuses) else "incorrect"


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(slots=True)
class RewardRow:
    """What the view keeps of one reward event."""

    index: int
    step: int
    session: int
    reward: float | None
    verdict: str
    num_tokens: int
    truncated: bool


@dataclass
class StepStats:
    """Aggregates of one step's reward events, plus its step event's metrics."""

    step: int
    session: int = -1
    samples: int = 0
    reward_sum: float = 0.0
    rewarded: int = 0
    correct: int = 0
    tokens: int = 0
    truncated: int = 0
    component_sum: dict[str, float] = field(default_factory=dict)
    component_n: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self, components: Sequence[str]) -> dict[str, Any]:
        n = self.samples
        return {
            "step": self.step,
            "samples": n,
            "reward_mean": self.reward_sum / self.rewarded if self.rewarded else None,
            "success": self.correct / n if n else None,
            "mean_tokens": self.tokens / n if n else None,
            "truncated": self.truncated / n if n else None,
            "components": {
                c: (
                    self.component_sum[c] / self.component_n[c] if self.component_n.get(c) else None
                )
                for c in components
            },
            "eval_accuracy": _num(self.metrics.get("eval/accuracy")),
        }


@dataclass
class Label:
    """A ``feedback`` event: a person's response on a reward event."""

    index: int
    event: int
    reviewer: str
    verdict: str
    status: str
    score: float | None
    reason: str
    ts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event": self.event,
            "reviewer": self.reviewer,
            "verdict": self.verdict,
            "status": self.status,
            "score": self.score,
            "reason": self.reason,
            "ts": self.ts,
        }


@dataclass
class OverrideRow:
    """An ``override`` event."""

    index: int
    event: int
    reviewer: str
    reward: float | None
    reason: str
    ts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event": self.event,
            "reviewer": self.reviewer,
            "reward": self.reward,
            "reason": self.reason,
            "ts": self.ts,
        }


@dataclass
class AlertRow:
    """An ``alert`` event and the first decision on it."""

    index: int
    step: int | None
    detector: str
    check: str
    severity: str
    action: str
    message: str
    statistic: float | None
    threshold: float | None
    evidence: list[Any]
    ts: int
    decision: dict[str, Any] | None = None

    @property
    def waiting(self) -> bool:
        """A pause the trainer may be waiting on: no decision yet."""
        return self.action == "pause" and self.decision is None

    @property
    def events(self) -> list[int]:
        """Evidence that names ledger events by index."""
        return [r for r in self.evidence if isinstance(r, int) and not isinstance(r, bool)]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "step": self.step,
            "detector": self.detector,
            "check": self.check,
            "severity": self.severity,
            "action": self.action,
            "message": self.message,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "evidence": self.evidence,
            "ts": self.ts,
            "decision": self.decision,
            "waiting": self.waiting,
        }


class RunView:
    """The review app's view of a run (see the module docstring)."""

    def __init__(
        self,
        reader: LedgerReader,
        queue: QueueConfig | None = None,
        *,
        lock: threading.RLock | None = None,
    ) -> None:
        self.reader = reader
        self.lock = lock or threading.RLock()
        """Guards the reader and everything below; readers of the view's fields hold it."""
        self.origin = reader.origin
        # the random slice's seed: unique per ledger (its origin and public key), fixed for life
        seed = f"{self.origin} {reader.meta.get('public_key', '')}"
        self.queue = ReviewQueue(queue or QueueConfig(), seed=seed)
        self.tree = MerkleTree()
        self.kinds: Counter[str] = Counter()
        self.session = -1
        self.components: list[str] = []
        self.roles: dict[str, str] = {}
        self.rows: dict[int, RewardRow] = {}
        self.steps: dict[int, StepStats] = {}
        self.alerts: dict[int, AlertRow] = {}
        self.alerts_on: dict[int, list[int]] = {}  # reward event -> alert indices
        self.labels: list[Label] = []
        self.labels_on: dict[int, list[Label]] = {}
        self.overrides: list[OverrideRow] = []
        self.overrides_on: dict[int, list[OverrideRow]] = {}
        self.weights: dict[str, Any] | None = None  # the last checkpoint event
        self.finished = False
        self.problems: list[str] = []
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self.lock:
            yield

    @property
    def size(self) -> int:
        return self.tree.size

    # ------------------------------------------------------------------ reading

    def refresh(self) -> int:
        """Read the events appended since the last refresh; returns how many."""
        with self.lock:
            start = self.tree.size
            for idx, kind, _, data in self.reader.store.iter_events(start):
                if idx != self.tree.size:  # a gap: audit verify says more; stop here
                    self._problem(f"event {self.tree.size}: index expected, found {idx}")
                    break
                self.tree.append(leaf_hash(bytes(data)))
                try:
                    event = parse_event(idx, kind, leaf_hash(bytes(data)), bytes(data))
                    self._add(event)
                except (TrustGRPOError, ValueError, TypeError, KeyError) as e:
                    self._problem(f"event {idx} ({kind}): {e}")
            return self.tree.size - start

    def _problem(self, message: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(message)

    def _add(self, ev: Event) -> None:
        self.kinds[ev.kind] += 1
        self.first_ts = ev.ts if self.first_ts is None else self.first_ts
        self.last_ts = ev.ts
        body = ev.body
        if ev.kind == "reward":
            self._add_reward(ev.index, body)
        elif ev.kind in ("run_started", "run_resumed"):
            self.session += 1
            self.finished = False
            for entry in (body.get("provenance") or {}).get("verifiers") or []:
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    if entry["id"] not in self.roles:
                        self.components.append(entry["id"])
                    self.roles[entry["id"]] = str(entry.get("role") or "reward")
        elif ev.kind == "step":
            st = self._step(int(body.get("step") or 0))
            st.metrics = dict(body.get("metrics") or {})
        elif ev.kind == "alert":
            self._add_alert(ev, body)
        elif ev.kind == "decision":
            alert = self.alerts.get(body.get("alert"))  # type: ignore[arg-type]
            if alert is not None and alert.decision is None:
                alert.decision = {**body, "event": ev.index, "ts": ev.ts}
        elif ev.kind == "feedback":
            self._add_label(ev, body)
        elif ev.kind == "override":
            row = OverrideRow(
                ev.index,
                int(body.get("event", -1)),
                str(body.get("reviewer", "")),
                _num(body.get("reward")),
                str(body.get("reason", "")),
                ev.ts,
            )
            self.overrides.append(row)
            self.overrides_on.setdefault(row.event, []).append(row)
        elif ev.kind == "checkpoint":
            self.weights = {**body, "event": ev.index, "ts": ev.ts}
        elif ev.kind == "run_finished":
            self.finished = True

    def _step(self, step: int) -> StepStats:
        st = self.steps.get(step)
        if st is None or st.session < self.session:  # new, or redone after a resume
            st = self.steps[step] = StepStats(step, self.session)
        return st

    def _add_reward(self, index: int, body: Mapping[str, Any]) -> None:
        outcomes = [o for o in body.get("outcomes") or [] if isinstance(o, dict)]
        for o in outcomes:
            vid = str(o.get("verifier"))
            if vid not in self.roles:
                self.components.append(vid)
                self.roles[vid] = "reward"
        step = int(body.get("step") or 0)
        verdict = verdict_of(outcomes, self.roles)
        reward = _num(body.get("reward"))
        row = RewardRow(
            index,
            step,
            self.session,
            reward,
            verdict,
            int(body.get("num_tokens") or 0),
            bool(body.get("truncated")),
        )
        self.rows[index] = row
        st = self._step(step)
        st.samples += 1
        if reward is not None:
            st.reward_sum += reward
            st.rewarded += 1
        st.correct += verdict == "correct"
        st.tokens += row.num_tokens
        st.truncated += row.truncated
        judging: list[str] = []
        margin: float | None = None
        for o in outcomes:
            vid = str(o.get("verifier"))
            score = _num(o.get("score"))
            if score is not None:
                st.component_sum[vid] = st.component_sum.get(vid, 0.0) + score
                st.component_n[vid] = st.component_n.get(vid, 0) + 1
            if self.roles.get(vid) == "shaping":
                continue
            if o.get("status") in ("correct", "incorrect"):
                judging.append(str(o.get("status")))
            if score is not None and 0.0 <= score <= 1.0:
                d = abs(score - 0.5)
                margin = d if margin is None else min(margin, d)
        split = len(set(judging)) > 1
        self.queue.add_reward(index, step, margin, split)

    def _add_alert(self, ev: Event, body: Mapping[str, Any]) -> None:
        step = body.get("step")
        row = AlertRow(
            ev.index,
            int(step) if isinstance(step, int) else None,
            str(body.get("detector", "")),
            str(body.get("check", "")),
            str(body.get("severity", "")),
            str(body.get("action", "")),
            str(body.get("message", "")),
            _num(body.get("statistic")),
            _num(body.get("threshold")),
            list(body.get("evidence") or []),
            ev.ts,
        )
        self.alerts[ev.index] = row
        for i in row.events:
            target = self.rows.get(i)
            if target is None:
                continue
            self.alerts_on.setdefault(i, []).append(ev.index)
            if row.severity in PAUSING:
                self.queue.add_flag(i, target.step, ev.index)

    def _add_label(self, ev: Event, body: Mapping[str, Any]) -> None:
        label = Label(
            ev.index,
            int(body.get("event", -1)),
            str(body.get("reviewer", "")),
            str(body.get("verdict", "")),
            str(body.get("status") or "submitted"),
            _num(body.get("score")),
            str(body.get("reason", "")),
            ev.ts,
        )
        self.labels.append(label)
        self.labels_on.setdefault(label.event, []).append(label)
        self.queue.mark_done(label.event)

    # ------------------------------------------------------------------ questions

    def event(self, index: int) -> Event:
        """The full event at ``index`` (read back from the store)."""
        with self.lock:
            return self.reader.get_event(index)

    def text(self, blob: Any) -> str | None:
        """A blob's text; None for no blob; a bracketed note when redacted or missing."""
        if not isinstance(blob, str):
            return None
        with self.lock:
            try:
                data = self.reader.get_blob(blob)
            except TrustGRPOError:
                return "[missing: the ledger has no blob " + blob + "]"
        if data is None:
            return "[redacted]"
        return bytes(data).decode("utf-8", errors="replace")

    def latest_labels(self) -> list[Label]:
        """Each reviewer's latest label per reward event (a relabel replaces the earlier)."""
        latest: dict[tuple[int, str], Label] = {}
        for lab in self.labels:
            latest[(lab.event, lab.reviewer)] = lab
        return list(latest.values())

    def _pairs(self, random_only: bool) -> list[tuple[str, str]]:
        out = []
        for lab in self.latest_labels():
            row = self.rows.get(lab.event)
            if row is None:
                continue
            if random_only:
                item = self.queue.get(lab.event)
                if item is None or "random" not in item.reasons:
                    continue
            out.append((row.verdict, lab.verdict))
        return out

    def agreement(self) -> Agreement:
        """Cohen's κ between verifier verdicts and people's labels (all labelled items)."""
        with self.lock:
            return agreement(self._pairs(random_only=False))

    def error_rate(self) -> ErrorRate:
        """The verifiers' error rate on the labelled random slice."""
        with self.lock:
            return error_rate(self._pairs(random_only=True))

    def waiting_alerts(self) -> list[AlertRow]:
        """Pause alerts without a decision."""
        return [a for a in self.alerts.values() if a.waiting]

    def checkpoint_status(self) -> dict[str, Any]:
        """The latest signed checkpoint and whether it verifies: its Ed25519 signature with
        the run's public key, and its root against the tree recomputed from the leaves."""
        with self.lock:
            try:
                cp = self.reader.latest_checkpoint()
            except TrustGRPOError as e:
                return {"present": True, "ok": False, "message": f"signature check failed: {e}"}
            if cp is None:
                return {"present": False, "ok": False, "message": "no signed checkpoint yet"}
            out: dict[str, Any] = {
                "present": True,
                "size": cp.size,
                "root": cp.root.hex(),
                "time": cp.time,
                "origin": cp.origin,
            }
            if cp.size > self.tree.size:
                self.refresh()
            if cp.size > self.tree.size:
                return {**out, "ok": False, "message": "covers events this view has not read"}
            if self.tree.root(cp.size) != cp.root:
                return {
                    **out,
                    "ok": False,
                    "message": f"root mismatch: the first {cp.size} events hash to "
                    f"{self.tree.root(cp.size).hex()}",
                }
            return {
                **out,
                "ok": True,
                "message": f"signature valid; root matches the {cp.size} recorded events",
            }

    def step_series(self) -> list[dict[str, Any]]:
        """Per step, in order: reward, success, lengths, per-component means, eval."""
        with self.lock:
            return [self.steps[s].to_json(self.components) for s in sorted(self.steps)]
