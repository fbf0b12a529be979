"""What the report must say, recomputed from the ledger with plain loops (no report code).

:func:`expected_facts` maps every figure key the report may show to its value; tests parse
the HTML's ``data-fact`` spans and compare. Monitor defaults (values the run file did not
set) come from the monitors' settings classes, which is what the report says they are.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from trustgrpo.ledger import LedgerReader
from trustgrpo.ledger.audit import verify
from trustgrpo.ledger.replay import replay

STATUSES = ("correct", "incorrect", "abstain", "error", "timeout")


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
    else:
        out[prefix] = data
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def expected_facts(run_dir: Path, replay_sample: int = 32) -> dict[str, Any]:
    with LedgerReader.open_readonly(run_dir) as reader:
        events = list(reader.events())
        checked = verify(reader)
        replayed = replay(reader, sample=replay_sample, seed=0)
        cp = reader.latest_checkpoint()
        key = reader.public_key
        origin = reader.origin
    started = events[0].body
    cfg, prov = started["config"], started["provenance"]
    inventory = prov["verifiers"]
    judging = [i for i, v in enumerate(inventory) if v["role"] != "shaping"]
    f: dict[str, Any] = {}

    # 1 identity
    ckpts = [e for e in events if e.kind == "checkpoint"]
    f.update(
        {
            "run.name": cfg["run"]["name"],
            "ledger.origin": origin,
            "run.first_event": events[0].ts,
            "run.last_event": events[-1].ts,
            "code.trustgrpo": prov["code"]["trustgrpo"],
            "code.git": prov["code"]["git"],
            "model.source": prov["model"]["source"],
            "model.initial_sha256": prov["model"]["initial_sha256"],
            "model.final_sha256": ckpts[-1].body["weights_sha256"],
            "model.final_step": ckpts[-1].body["step"],
        }
    )
    f.update({f"packages.{k}": v for k, v in prov["packages"].items()})
    for split, d in prov["data"].items():
        f.update(
            {
                f"data.{split}.split": split,
                f"data.{split}.path": d["path"],
                f"data.{split}.rows": d["rows"],
                f"data.{split}.sha256": d["sha256"],
            }
        )
    f.update({f"config.{k}": v for k, v in _flat(cfg).items()})
    sessions = [e for e in events if e.kind in ("run_started", "run_resumed")]
    for n, e in enumerate(sessions):
        f.update(
            {
                f"session.{n}.kind": e.kind,
                f"session.{n}.index": e.index,
                f"session.{n}.start_step": e.body["start_step"],
                f"session.{n}.time": e.ts,
            }
        )

    # 2 objective
    for i, v in enumerate(inventory):
        f.update(
            {
                f"verifier.{i}.name": v["name"],
                f"verifier.{i}.type": v["type"],
                f"verifier.{i}.role": v["role"],
                f"verifier.{i}.weight": v["weight"],
                f"verifier.{i}.id": v["id"],
                f"verifier.{i}.source_hash": v["source_hash"],
                f"verifier.{i}.params": v["params"],
            }
        )

    # 3 training (this run is never resumed: every reward event counts)
    rewards = [e.body for e in events if e.kind == "reward"]
    steps = {e.body["step"]: e.body["metrics"] for e in events if e.kind == "step"}
    finished = [e.body for e in events if e.kind == "run_finished"][-1]["result"]
    phases: dict[str, float] = {}
    for m in steps.values():
        for k, val in m.items():
            if k.startswith("time/"):
                phases[k[5:]] = phases.get(k[5:], 0.0) + val
    f.update(
        {
            "train.steps": len(steps),
            "train.last_step": max(steps),
            "train.stopped_early": finished["stopped_early"],
            "train.samples": len(rewards),
            "train.groups": len({(b["step"], b["group_id"]) for b in rewards}),
            "train.reward_events": len(rewards),
            "train.superseded": 0,
            "train.tokens": sum(b["num_tokens"] for b in rewards),
            "train.mean_tokens": sum(b["num_tokens"] for b in rewards) / len(rewards),
            "train.truncated": sum(b["truncated"] for b in rewards),
            "train.masked": sum(b["reward"] is None for b in rewards),
            "train.elapsed_s": (events[-1].ts - events[0].ts) / 1000,
            "train.phase_s": sum(phases.values()),
            "train.checkpoints": len(ckpts),
        }
    )
    f.update({f"time.{k}": v for k, v in phases.items()})
    f.update({f"hardware.{k}": v for k, v in _flat(prov["hardware"]).items()})
    for i in range(len(inventory)):
        counts = Counter(b["outcomes"][i]["status"] for b in rewards)
        f.update({f"outcomes.{i}.{s}": counts[s] for s in STATUSES})
    for n, e in enumerate(ckpts):
        f.update(
            {
                f"ckpt.{n}.step": e.body["step"],
                f"ckpt.{n}.index": e.index,
                f"ckpt.{n}.sha256": e.body["weights_sha256"],
                f"ckpt.{n}.path": e.body["path"],
            }
        )

    # 4 results
    def success(b: dict[str, Any]) -> bool:
        return all(b["outcomes"][i]["status"] == "correct" for i in judging)

    by_step: dict[int, list[dict[str, Any]]] = {}
    for b in rewards:
        by_step.setdefault(b["step"], []).append(b)
    for s, bs in by_step.items():
        scored = [b["reward"] for b in bs if b["reward"] is not None]
        f.update(
            {
                f"step.{s}.step": s,
                f"step.{s}.samples": len(bs),
                f"step.{s}.reward_mean": _mean(scored),
                f"step.{s}.success": sum(map(success, bs)) / len(bs),
                f"step.{s}.mean_tokens": sum(b["num_tokens"] for b in bs) / len(bs),
                f"step.{s}.loss": steps[s].get("loss"),
                f"step.{s}.kl": steps[s].get("kl"),
            }
        )
        for i in range(len(inventory)):
            sc = [b["outcomes"][i]["score"] for b in bs if b["outcomes"][i]["score"] is not None]
            f[f"step.{s}.score.{i}"] = _mean(sc)
    ordered = sorted(by_step)
    w = max(1, min(10, math.ceil(len(ordered) / 10)))
    for name, part in (("first", ordered[:w]), ("last", ordered[-w:])):
        bs = [b for s in part for b in by_step[s]]
        f[f"result.reward_{name}"] = _mean([b["reward"] for b in bs if b["reward"] is not None])
        f[f"result.success_{name}"] = sum(map(success, bs)) / len(bs)
    evals = {s: m for s, m in sorted(steps.items()) if any(k.startswith("eval/") for k in m)}
    eval_keys = sorted({k for m in evals.values() for k in m if k.startswith("eval/")})
    for k in eval_keys:
        pts = [(s, m[k]) for s, m in evals.items() if k in m]
        f[f"result.{k}.first"], f[f"result.{k}.last"] = pts[0][1], pts[-1][1]
    for s, m in evals.items():
        f[f"eval.{s}.step"] = s
        f.update({f"eval.{s}.{k}": m.get(k) for k in eval_keys})
        f[f"eval.{s}.success"] = f[f"step.{s}.success"]
        f[f"eval.{s}.gap"] = f[f"step.{s}.success"] - m["eval/accuracy"]

    # 5 monitors
    alerts = [e for e in events if e.kind == "alert"]
    decisions = [e for e in events if e.kind == "decision"]
    first_decision: dict[int, Any] = {}
    for d in decisions:
        first_decision.setdefault(d.body["alert"], d)
    f["alerts.total"] = len(alerts)
    for sev in ("warn", "review", "pause", "halt"):
        f[f"alerts.{sev}"] = sum(a.body["severity"] == sev for a in alerts)
    for a in alerts:
        b, i = a.body, a.index
        f.update(
            {
                f"alert.{i}.index": i,
                f"alert.{i}.step": b["step"],
                f"alert.{i}.detector": b["detector"],
                f"alert.{i}.check": b["check"],
                f"alert.{i}.severity": b["severity"],
                f"alert.{i}.statistic": b["statistic"],
                f"alert.{i}.threshold": b["threshold"],
                f"alert.{i}.action": b["action"],
                f"alert.{i}.evidence": b["evidence"],
            }
        )
        if i in first_decision:
            d = first_decision[i]
            f.update(
                {
                    f"alert.{i}.decision": d.body["decision"],
                    f"alert.{i}.reviewer": d.body["reviewer"],
                    f"alert.{i}.decision_index": d.index,
                    f"alert.{i}.decision_time": d.ts,
                }
            )
    f.update(_monitor_facts(cfg.get("monitors") or {}, alerts))

    # 6 human oversight
    f.update(_review_facts(events, judging))

    # 7 integrity
    kinds = Counter(e.kind for e in events)
    f.update({f"ledger.kind.{k}": n for k, n in kinds.items()})
    f.update(
        {
            "verify.ok": checked.ok,
            "verify.events": checked.events,
            "verify.root": checked.root,
            "verify.checkpoints": checked.checkpoints,
            "verify.signed_size": checked.signed_size,
            "verify.blobs": checked.blobs,
            "verify.redacted": checked.redacted_blobs,
            "verify.problems": len(checked.problems) + checked.more_problems,
            "checkpoint.origin": cp.origin,
            "checkpoint.size": cp.size,
            "checkpoint.root": cp.root.hex(),
            "checkpoint.time": cp.time,
            "ledger.public_key": key.to_vkey(),
            "ledger.key_sha256": key.fingerprint,
            "replay.events": replayed.events,
            "replay.seed": 0,
            "replay.ok": replayed.ok,
        }
    )
    for status in (
        "match",
        "mismatch",
        "version_mismatch",
        "unknown_verifier",
        "redacted",
        "error",
    ):
        f[f"replay.{status}"] = replayed.counts.get(status, 0)
    return f


# What this run's monitors do, by hand: no held-out verifier, probe file or category column.
INACTIVE = {"held_out", "probe_drift", "group_bias"}


def _monitor_facts(raw: dict[str, Any], alerts: list[Any]) -> dict[str, Any]:
    from trustgrpo.monitors import DETECTORS, MonitorsConfig

    f: dict[str, Any] = {}
    for fld in dataclasses.fields(MonitorsConfig):
        if fld.name not in DETECTORS:
            f[f"monitors.{fld.name}"] = raw.get(fld.name, _default(fld))
    for name, cls in DETECTORS.items():
        given = raw.get(name, {})
        f[f"detector.{name}.active"] = name not in INACTIVE
        f[f"detector.{name}.action"] = given.get("action", _default(_field(cls, "action")))
        for fld in dataclasses.fields(cls):
            if fld.name not in ("enabled", "action"):
                f[f"detector.{name}.{fld.name}"] = given.get(fld.name, _default(fld))
        for sev in ("warn", "review", "pause", "halt"):
            f[f"detector.{name}.alerts.{sev}"] = sum(
                a.body["detector"] == name and a.body["severity"] == sev for a in alerts
            )
    return f


def _field(cls: type, name: str) -> Any:
    return next(x for x in dataclasses.fields(cls) if x.name == name)


def _default(fld: Any) -> Any:
    value = fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()
    return list(value) if isinstance(value, tuple) else value


def _review_facts(events: list[Any], judging: list[int]) -> dict[str, Any]:
    rewards = {e.index: e.body for e in events if e.kind == "reward"}
    labels = [e for e in events if e.kind == "feedback"]
    overrides = [e for e in events if e.kind == "override"]
    decisions = [e for e in events if e.kind == "decision"]

    def verdict(event: int) -> str:
        if event not in rewards:
            return "not a reward event"
        statuses = [rewards[event]["outcomes"][i]["status"] for i in judging]
        if any(s not in ("correct", "incorrect") for s in statuses):
            return "unscored"
        return "correct" if all(s == "correct" for s in statuses) else "incorrect"

    f: dict[str, Any] = {
        "review.labels": len(labels),
        "review.items": len({e.body["event"] for e in labels + overrides} & set(rewards)),
        "review.overrides": len(overrides),
        "review.decisions": len(decisions),
    }
    people: dict[str, Counter[str]] = {}
    for what, evs in (("labels", labels), ("overrides", overrides), ("decisions", decisions)):
        for e in evs:
            people.setdefault(e.body["reviewer"], Counter())[what] += 1
    f["review.reviewers"] = len(people)
    for name, c in people.items():
        f.update({f"reviewer.{name}.{k}": c[k] for k in ("labels", "overrides", "decisions")})
    two = ("correct", "incorrect")
    latest: dict[tuple[int, str], Any] = {}
    for e in labels:
        latest[(e.body["event"], e.body["reviewer"])] = e
    pairs, other_human, other_verifier, not_reward, disagreements = [], 0, 0, 0, 0
    for e in labels:
        f.update(
            {
                f"label.{e.index}.index": e.index,
                f"label.{e.index}.event": e.body["event"],
                f"label.{e.index}.verdict": e.body["verdict"],
                f"label.{e.index}.verifier": verdict(e.body["event"]),
                f"label.{e.index}.reviewer": e.body["reviewer"],
            }
        )
    for e in latest.values():
        human, machine = e.body["verdict"], verdict(e.body["event"])
        if e.body["event"] not in rewards:
            not_reward += 1
        elif human not in two:
            other_human += 1
        elif machine not in two:
            other_verifier += 1
        else:
            pairs.append((machine, human))
            disagreements += machine != human
    f["review.relabelled"] = len(labels) - len(latest)
    f["review.not_reward"] = not_reward
    n = len(pairs)
    f["review.pairs"] = n
    f["review.excluded_human"] = other_human
    f["review.excluded_verifier"] = other_verifier
    f["review.disagreements"] = disagreements
    for a in two:
        for b in two:
            f[f"review.cm.{a}.{b}"] = pairs.count((a, b))
    if n:
        p_o = sum(a == b for a, b in pairs) / n
        p_e = sum(
            (sum(a == x for a, _ in pairs) / n) * (sum(b == x for _, b in pairs) / n) for x in two
        )
        f["review.observed"], f["review.expected"] = p_o, p_e
        f["review.kappa"] = (p_o - p_e) / (1 - p_e) if p_e < 1 else None
    else:
        f["review.observed"] = f["review.expected"] = f["review.kappa"] = None
    for e in overrides:
        i = e.index
        recorded = rewards[e.body["event"]]["reward"] if e.body["event"] in rewards else None
        f.update(
            {
                f"override.{i}.index": i,
                f"override.{i}.event": e.body["event"],
                f"override.{i}.recorded": recorded,
                f"override.{i}.reward": e.body["reward"],
                f"override.{i}.reviewer": e.body["reviewer"],
                f"override.{i}.time": e.ts,
            }
        )
    for e in decisions:
        i = e.index
        f.update(
            {
                f"decision.{i}.index": i,
                f"decision.{i}.alert": e.body["alert"],
                f"decision.{i}.decision": e.body["decision"],
                f"decision.{i}.reviewer": e.body["reviewer"],
                f"decision.{i}.time": e.ts,
            }
        )
    return f


def as_value(text: str) -> Any:
    """A ``data-value`` attribute, decoded."""
    return json.loads(text)
