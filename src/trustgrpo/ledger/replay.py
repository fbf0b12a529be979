"""``audit replay``: re-run the recorded verifiers on the stored inputs and compare.

For each selected ``reward`` event the sample is rebuilt from the blob table (prompt,
completion, reference, metadata) and each recorded outcome is checked against the verifier of
the same ``name@version``:

* ``match`` / ``mismatch``: the verifier was replayed; status and score compared (scores
  within 1e-9, relative);
* ``version_mismatch``: a verifier of that name exists but its version differs (its code or
  parameters changed), so it is not replayed: a changed verifier is a different verifier;
* ``unknown_verifier``: no verifier of that name could be built;
* ``redacted``: an input blob was redacted, nothing to replay;
* ``error``: the verifier raised, or returned the wrong number of outcomes.

Verifiers are rebuilt from the ``verifiers`` list of the run file recorded in the latest
``run_started`` / ``run_resumed`` event before each reward, with
``trustgrpo.verifiers.registry.build_verifier(spec)``; tests and tools may pass them in
instead (``verifiers={"name@version": verifier}``).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trustgrpo.errors import LedgerError
from trustgrpo.ledger.events import Event
from trustgrpo.ledger.reader import LedgerReader
from trustgrpo.verifiers.base import Outcome, Sample, Verifier

FAILING = frozenset({"mismatch", "version_mismatch", "unknown_verifier", "error"})


@dataclass(frozen=True)
class ReplayResult:
    """One recorded outcome, replayed (or why not)."""

    event: int
    step: int | None
    verifier: str
    status: str
    recorded: Mapping[str, Any]
    replayed: Mapping[str, Any] | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "step": self.step,
            "verifier": self.verifier,
            "status": self.status,
            "recorded": {k: self.recorded.get(k) for k in ("status", "score")},
            "replayed": (
                None
                if self.replayed is None
                else {k: self.replayed.get(k) for k in ("status", "score")}
            ),
            "message": self.message,
        }


@dataclass
class ReplayReport:
    """All replay results, with counts per status."""

    events: int = 0
    results: list[ReplayResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        """True when every replayed outcome matched and none had to be skipped for a
        version or build problem (redacted inputs are not failures)."""
        return not any(r.status in FAILING for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "counts": self.counts,
            "results": [r.to_json() for r in self.results if r.status != "match"],
        }


def _select(
    reader: LedgerReader, sample: int | None, step: int | None, seed: int
) -> tuple[list[tuple[Event, int]], list[Mapping[str, Any]]]:
    """Reward events to replay (reservoir-sampled when ``sample`` is set), each with the
    index of the run config in force when it was written."""
    configs: list[Mapping[str, Any]] = []
    chosen: list[tuple[Event, int]] = []
    rng = random.Random(seed)
    seen = 0
    for ev in reader.events():
        if ev.kind in ("run_started", "run_resumed"):
            configs.append(ev.body.get("config", {}))
        elif ev.kind == "reward" and (step is None or ev.body.get("step") == step):
            item = (ev, len(configs) - 1)
            seen += 1
            if sample is None or len(chosen) < sample:
                chosen.append(item)
            else:
                j = rng.randrange(seen)
                if j < sample:
                    chosen[j] = item
    chosen.sort(key=lambda t: t[0].index)
    return chosen, configs


def _build_all(config: Mapping[str, Any]) -> tuple[dict[str, Verifier], str]:
    """Verifiers from a recorded run config, keyed by ``name@version``; and an error text.

    The recorded config is rebuilt into a ``Config`` when possible, so that verifiers see the
    same defaults from other sections (sandbox limits, ...) as during training.
    """
    try:
        from trustgrpo.verifiers.registry import build_verifier
    except ImportError as e:
        return {}, f"cannot rebuild verifiers: {e}"
    cfg: Any = None
    try:
        from trustgrpo.config import from_dict

        cfg = from_dict(dict(config), check_files=False)
    except Exception:  # an older or partial config: build from the specs alone
        cfg = None
    out: dict[str, Verifier] = {}
    errors = []
    for spec in config.get("verifiers", []):
        try:
            v = build_verifier(dict(spec), cfg) if cfg is not None else build_verifier(dict(spec))
        except Exception as e:  # report, do not stop the audit
            errors.append(f"{spec.get('name') or spec.get('type')}: {e}")
            continue
        out[f"{v.name}@{v.version}"] = v
    return out, "; ".join(errors)


def _same(recorded: Mapping[str, Any], replayed: Outcome) -> bool:
    if recorded.get("status") != replayed.status:
        return False
    a, b = recorded.get("score"), replayed.score
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def replay(
    reader: LedgerReader,
    *,
    sample: int | None = None,
    step: int | None = None,
    seed: int = 0,
    verifiers: Mapping[str, Verifier] | None = None,
    build: Callable[[Mapping[str, Any]], tuple[dict[str, Verifier], str]] = _build_all,
) -> ReplayReport:
    """Replay reward events (all, those of ``step``, or ``sample`` of them at random)."""
    chosen, configs = _select(reader, sample, step, seed)
    report = ReplayReport(events=len(chosen))
    built: dict[int, tuple[dict[str, Verifier], str]] = {}
    # verifier id -> [(event, step, recorded outcome, sample)]
    work: dict[str, list[tuple[int, int | None, Mapping[str, Any], Sample]]] = {}
    installed: dict[str, Verifier] = {}
    for ev, cfg in chosen:
        if verifiers is not None:
            available, build_error = dict(verifiers), ""
        else:
            if cfg not in built:
                built[cfg] = build(configs[cfg]) if cfg >= 0 else ({}, "no run_started event")
            available, build_error = built[cfg]
        by_name = {vid.rpartition("@")[0]: vid for vid in available}
        body = ev.body
        s = body.get("step")
        rebuilt = _rebuild_sample(reader, body)
        for rec in body.get("outcomes", []):
            vid = str(rec.get("verifier", ""))
            name, _, version = vid.rpartition("@")
            if isinstance(rebuilt, str):
                report.results.append(
                    ReplayResult(ev.index, s, vid, "redacted", rec, None, rebuilt)
                )
            elif vid in available:
                installed[vid] = available[vid]
                work.setdefault(vid, []).append((ev.index, s, rec, rebuilt))
            elif name in by_name:
                now = by_name[name].rpartition("@")[2]
                msg = (
                    f"version expected {version} (recorded), found {now} (installed); not replayed"
                )
                report.results.append(
                    ReplayResult(ev.index, s, vid, "version_mismatch", rec, None, msg)
                )
            else:
                msg = f"no verifier named {name!r} could be built" + (
                    f" ({build_error})" if build_error else ""
                )
                report.results.append(
                    ReplayResult(ev.index, s, vid, "unknown_verifier", rec, None, msg)
                )
    for vid, items in work.items():
        report.results.extend(_run_one(installed[vid], vid, items))
    report.results.sort(key=lambda r: (r.event, r.verifier))
    return report


def _rebuild_sample(reader: LedgerReader, body: Mapping[str, Any]) -> Sample | str:
    """The sample as the verifiers saw it, or a message when an input was redacted."""
    texts: dict[str, str | None] = {}
    for part in ("prompt", "completion", "reference", "metadata"):
        h = body.get(f"{part}_blob")
        try:
            texts[part] = reader.get_text(h)
        except LedgerError as e:
            return str(e)
        if h is not None and texts[part] is None:
            return f"{part} blob {h} was redacted"
    metadata = json.loads(texts["metadata"]) if texts["metadata"] else {}
    return Sample(
        prompt_id=str(body.get("prompt_id", "")),
        group_id=int(body.get("group_id", 0)),
        index=int(body.get("index", 0)),
        prompt=texts["prompt"] or "",
        completion=texts["completion"] or "",
        reference=texts["reference"],
        metadata=metadata,
        num_tokens=int(body.get("num_tokens", 0)),
        truncated=bool(body.get("truncated", False)),
    )


def _run_one(
    verifier: Verifier,
    vid: str,
    items: list[tuple[int, int | None, Mapping[str, Any], Sample]],
) -> list[ReplayResult]:
    try:
        outcomes = verifier.score([it[3] for it in items])
    except Exception as e:
        return [
            ReplayResult(i, s, vid, "error", rec, None, f"{type(e).__name__}: {e}")
            for i, s, rec, _ in items
        ]
    if len(outcomes) != len(items):
        msg = f"expected {len(items)} outcomes, found {len(outcomes)}"
        return [ReplayResult(i, s, vid, "error", rec, None, msg) for i, s, rec, _ in items]
    out = []
    for (i, s, rec, _), o in zip(items, outcomes, strict=True):
        got = o.to_json()
        if _same(rec, o):
            out.append(ReplayResult(i, s, vid, "match", rec, got))
        else:
            msg = (
                f"expected {rec.get('status')} {rec.get('score')} (recorded), found "
                f"{o.status} {o.score} (replayed)"
            )
            out.append(ReplayResult(i, s, vid, "mismatch", rec, got, msg))
    return out
