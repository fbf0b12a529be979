"""What the review app does, without HTTP: read a run, record labels, decide on alerts.

:class:`ReviewService` holds the run's :class:`~trustgrpo.review.index.RunView` (opened once
the run has a ledger, so the server may start before training does) and, from the first
write on, a :class:`~trustgrpo.ledger.Ledger` opened as a second writer with the run's
signing key: the store's transaction lock serialises its appends with the trainer's, and it
signs a checkpoint after each write, so every human act is in a signed tree head at once.

Bodies written (they extend :mod:`trustgrpo.ledger.events`)::

    feedback   event       leaf index of the reviewed reward event
               reviewer    who (the reviewer's name)
               verdict     the person's answer to "is the completion correct?":
                           correct | incorrect | unsure
               status      submitted (correct/incorrect) | discarded (unsure), as Argilla's
                           response status
               score       the corrected reward the person gave, or null
               reason      why (free text, untrusted)
               agrees      verdict == the verifier's verdict (null when either is neither
                           correct nor incorrect)
               suggestion  what the verifiers said, as Argilla's suggestion: verdict
                           (correct | incorrect | unscored), reward, agents (name@version)
               queue       why the item was in the review queue (flag, disagreement,
                           boundary, random; empty when labelled outside the queue)
    override   event, reviewer, reward (the corrected score), reason; written with a label
               whose score differs from the recorded reward; training applies it to the
               same completion of the same prompt (:mod:`trustgrpo.review.overrides`)

Decisions on alerts are written by the monitors package's ``review resolve`` command
(:func:`trustgrpo.monitors.cli.cmd_resolve`), the same code path as the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trustgrpo.errors import LedgerError, TrustGRPOError, UserError
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.review.index import LABELS_HUMAN, RunView
from trustgrpo.review.queue import QueueConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_REASON = 4000
"""Longest reason accepted, in characters."""
MAX_SCORE = 1e9
"""Largest corrected score accepted, in absolute value."""


class ReviewError(UserError):
    """A request the service refuses; ``status`` is the HTTP status that says why."""

    status = 400


class BadInput(ReviewError):
    status = 400


class NotFound(ReviewError):
    status = 404


class Conflict(ReviewError):
    status = 409


class NotReady(ReviewError):
    status = 503


def ledger_settings(run_dir: Path) -> tuple[str | None, Path | None]:
    """``(ledger url, signing key)`` recorded in ``RUN/run.toml`` (None: the defaults)."""
    toml = Path(run_dir) / "run.toml"
    if not toml.is_file():
        return None, None
    try:
        ledger = tomllib.loads(toml.read_text()).get("ledger") or {}
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise UserError(f"{toml}: {e}") from None
    key = ledger.get("signing_key") or None
    return ledger.get("url") or None, Path(key) if key else None


def check_text(name: str, value: str, limit: int = MAX_REASON) -> str:
    """``value`` if it is at most ``limit`` characters of encodable Unicode."""
    if len(value) > limit:
        raise BadInput(f"{name}: expected at most {limit} characters, found {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{name}: expected text, found a lone surrogate") from None
    return value


def parse_score(raw: str | float | None) -> float | None:
    """A corrected score from a form field or JSON: None when empty, else a finite number."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        x = float(raw)
    except (TypeError, ValueError):
        raise BadInput(f"score: expected a number, found {str(raw)[:40]!r}") from None
    if not math.isfinite(x) or abs(x) > MAX_SCORE:
        raise BadInput(f"score: expected a finite number within ±{MAX_SCORE:g}, found {raw!r}")
    return x


class ReviewService:
    """One run's review state (see the module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        url: str | None = None,
        signing_key: Path | None = None,
        queue: QueueConfig | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        recorded_url, recorded_key = ledger_settings(self.run_dir)
        self.url = url or recorded_url
        self.signing_key = signing_key or recorded_key
        self.queue_config = queue or QueueConfig()
        self._view: RunView | None = None
        self._reader: LedgerReader | None = None
        self._writer: Any = None
        self.lock = threading.RLock()
        """The view's lock: hold it while reading the view's fields (the app does, per
        request). Lock order: ``lock``, then the opening lock, then the write lock."""
        self._open_lock = threading.Lock()
        self._write_lock = threading.Lock()

    # ------------------------------------------------------------------ reading

    def view(self) -> RunView:
        """The run's view, refreshed; :class:`NotReady` while the run has no ledger."""
        with self._open_lock:
            if self._view is None:
                try:
                    self._reader = LedgerReader.open_readonly(self.run_dir, url=self.url)
                except UserError as e:
                    raise NotReady(f"no ledger yet: {e}") from None
                self._view = RunView(self._reader, self.queue_config, lock=self.lock)
            view = self._view
        view.refresh()
        return view

    def reward_event(self, view: RunView, event: int) -> dict[str, Any]:
        """Everything shown about one reward event (texts are untrusted)."""
        with view.lock:
            return self._reward_event(view, event)

    def _reward_event(self, view: RunView, event: int) -> dict[str, Any]:
        row = view.rows.get(event)
        if row is None:
            kind = None
            if 0 <= event < view.size:
                kind = view.event(event).kind
            raise NotFound(
                f"event {event}: expected a reward event, found "
                + (f"a {kind!r} event" if kind else f"none (the ledger holds {view.size})")
            )
        ev = view.event(event)
        b = ev.body
        item = view.queue.get(event)
        outcomes = []
        for o in b.get("outcomes") or []:
            if isinstance(o, dict):
                vid = str(o.get("verifier"))
                outcomes.append({**o, "role": view.roles.get(vid, "reward")})
        return {
            "event": event,
            "step": row.step,
            "prompt_id": b.get("prompt_id"),
            "group_id": b.get("group_id"),
            "index": b.get("index"),
            "prompt": view.text(b.get("prompt_blob")),
            "completion": view.text(b.get("completion_blob")),
            "reference": view.text(b.get("reference_blob")),
            "outcomes": outcomes,
            "reward": row.reward,
            "advantage": b.get("advantage"),
            "num_tokens": row.num_tokens,
            "truncated": row.truncated,
            "verdict": row.verdict,
            "reasons": list(item.reasons) if item else [],
            "pending": item is not None and event in {i.event for i in view.queue.pending()},
            "alerts": [view.alerts[a].to_json() for a in view.alerts_on.get(event, [])],
            "labels": [lab.to_json() for lab in view.labels_on.get(event, [])],
            "overrides": [o.to_json() for o in view.overrides_on.get(event, [])],
        }

    def summary(self, view: RunView) -> dict[str, Any]:
        """The dashboard's numbers."""
        with view.lock:
            steps = view.step_series()
            return {
                "origin": view.origin,
                "events": view.size,
                "kinds": dict(view.kinds),
                "finished": view.finished,
                "steps": steps,
                "components": [
                    {"id": c, "role": view.roles.get(c, "reward")} for c in view.components
                ],
                "alerts": [a.to_json() for a in view.alerts.values()],
                "waiting": [a.index for a in view.waiting_alerts()],
                "queue": view.queue.counts(),
                "labels": len(view.labels),
                "overrides": len(view.overrides),
                "agreement": view.agreement().to_json(),
                "error_rate": view.error_rate().to_json(),
                "checkpoint": view.checkpoint_status(),
                "weights": view.weights,
                "last_ts": view.last_ts,
                "problems": list(view.problems),
            }

    # ------------------------------------------------------------------ writing

    def _ledger(self) -> Any:
        """The writer, opened on first use (refuses to create a ledger or a key)."""
        from trustgrpo.ledger.ledger import Ledger

        if self._writer is None:
            key = self.signing_key or self.run_dir / "ledger.key"
            if not key.is_file():
                raise NotReady(
                    f"signing key not found: {key} (labels are signed with the run's key; "
                    "start the server where the run's ledger.key is readable)"
                )
            try:
                self._writer = Ledger.open(
                    self.run_dir, url=self.url, signing_key=key, background=False
                )
            except LedgerError as e:
                raise NotReady(f"cannot open the ledger for writing: {e}") from None
        return self._writer

    def label(
        self,
        event: int,
        reviewer: str,
        verdict: str,
        *,
        score: float | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """Record a person's label on reward event ``event`` (and an override when the
        corrected ``score`` differs from the recorded reward); returns the new indices."""
        with self.lock:
            return self._label(event, reviewer, verdict, score=score, reason=reason)

    def _label(
        self, event: int, reviewer: str, verdict: str, *, score: float | None, reason: str
    ) -> dict[str, Any]:
        if verdict not in LABELS_HUMAN:
            raise BadInput(f"verdict: expected one of {', '.join(LABELS_HUMAN)}, found {verdict!r}")
        reason = check_text("reason", reason.strip())
        if score is not None:
            score = parse_score(score)
        view = self.view()
        row = view.rows.get(event)
        if row is None:
            self.reward_event(view, event)  # raises NotFound with what it is
            raise NotFound(f"event {event}: not a reward event")  # pragma: no cover
        override = score is not None and (row.reward is None or score != row.reward)
        if override and not reason:
            raise BadInput("reason: a corrected score changes training; say why")
        item = view.queue.get(event)
        ev = view.event(event)
        agents = [
            str(o.get("verifier")) for o in ev.body.get("outcomes") or [] if isinstance(o, dict)
        ]
        binary = ("correct", "incorrect")
        feedback = {
            "event": event,
            "reviewer": reviewer,
            "verdict": verdict,
            "status": "discarded" if verdict == "unsure" else "submitted",
            "score": score,
            "reason": reason,
            "agrees": (verdict == row.verdict)
            if verdict in binary and row.verdict in binary
            else None,
            "suggestion": {"verdict": row.verdict, "reward": row.reward, "agents": agents},
            "queue": list(item.reasons) if item else [],
        }
        bodies: list[tuple[str, dict[str, Any]]] = [("feedback", feedback)]
        if override:
            bodies.append(
                (
                    "override",
                    {"event": event, "reviewer": reviewer, "reward": score, "reason": reason},
                )
            )
        indices = self._write(bodies)
        view.refresh()
        return {"feedback": indices[0], "override": indices[1] if override else None}

    def _write(self, bodies: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """Append, sign, and return the events' leaf indices."""
        with self._write_lock:
            ledger = self._ledger()
            try:
                for kind, body in bodies:
                    ledger.append(kind, body)
                ledger.sign(wait=True)
                size = ledger.flush()
            except LedgerError as e:
                raise BadInput(f"not recorded: {e}") from None
            # our events are the last matching ones: other writers cannot interleave with a
            # single commit, and bodies name this reviewer and event
            found: list[int] = []
            want = list(bodies)
            for i in range(size - 1, -1, -1):
                ev = ledger.get_event(i)
                if want and (ev.kind, ev.body) == want[-1]:
                    found.append(i)
                    want.pop()
                if not want:
                    break
            return found[::-1]

    def decide(self, alert: int, decision: str, reviewer: str, reason: str = "") -> dict[str, Any]:
        """Resolve alert ``alert`` (continue | halt) through the monitors package."""
        with self.lock:
            return self._decide(alert, decision, reviewer, reason)

    def _decide(self, alert: int, decision: str, reviewer: str, reason: str) -> dict[str, Any]:
        from trustgrpo.monitors.cli import cmd_resolve

        if decision not in ("continue", "halt"):
            raise BadInput(f"decision: expected continue or halt, found {decision!r}")
        reason = check_text("reason", reason.strip())
        view = self.view()
        if alert not in view.alerts:
            what = view.event(alert).kind if 0 <= alert < view.size else None
            raise NotFound(
                f"alert {alert}: expected an alert event, found "
                + (f"a {what!r} event" if what else f"none (the ledger holds {view.size})")
            )
        done = view.alerts[alert].decision
        if done is not None:
            raise Conflict(
                f"alert {alert} is already resolved: {done.get('decision')} by "
                f"{done.get('reviewer')} (event {done.get('event')})"
            )
        args = argparse.Namespace(
            run=str(self.run_dir),
            alert=int(alert),
            decision=decision,
            reviewer=reviewer,
            reason=reason,
            key=str(self.signing_key) if self.signing_key else None,
            url=self.url,
            json=False,
        )
        with self._write_lock:
            try:
                cmd_resolve(args)  # prints one line to the server's log
            except UserError as e:
                raise Conflict(str(e)) from None
            except LedgerError as e:
                raise BadInput(f"not recorded: {e}") from None
        view.refresh()
        d = view.alerts[alert].decision
        if d is None:  # pragma: no cover - cmd_resolve returned without writing
            raise ReviewError(f"alert {alert}: the decision was not recorded")
        return {"event": d["event"], "alert": alert, "decision": d.get("decision")}

    # ------------------------------------------------------------------ export

    def cases(self, view: RunView, *, every: bool = False) -> list[dict[str, Any]]:
        """Verifier regression cases: each reward event a person disagreed with (or, with
        ``every``, each labelled one), with its inputs, what the verifiers said and what the
        person said. The latest label per (event, reviewer) counts."""
        with view.lock:
            return list(self._cases(view, every))

    def _cases(self, view: RunView, every: bool) -> Iterator[dict[str, Any]]:
        for lab in view.latest_labels():
            row = view.rows.get(lab.event)
            if row is None or lab.verdict not in ("correct", "incorrect"):
                continue
            disagrees = lab.verdict != row.verdict or (
                lab.score is not None and lab.score != row.reward
            )
            if not (every or disagrees):
                continue
            ev = view.event(lab.event)
            b = ev.body
            metadata = view.text(b.get("metadata_blob"))
            yield {
                "case": f"{view.origin}#{lab.event}/{lab.index}",
                "prompt": view.text(b.get("prompt_blob")),
                "completion": view.text(b.get("completion_blob")),
                "reference": view.text(b.get("reference_blob")),
                "metadata_json": metadata,
                "expected": {"verdict": lab.verdict, "score": lab.score},
                "recorded": {
                    "verdict": row.verdict,
                    "reward": row.reward,
                    "outcomes": b.get("outcomes") or [],
                },
                "reviewer": lab.reviewer,
                "reason": lab.reason,
                "disagrees": disagrees,
                "source": {
                    "origin": view.origin,
                    "reward_event": lab.event,
                    "feedback_event": lab.index,
                    "step": row.step,
                    "prompt_id": b.get("prompt_id"),
                },
            }

    def close(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                with contextlib.suppress(TrustGRPOError):
                    self._writer.close()
                self._writer = None
        with self._open_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
                self._view = None
