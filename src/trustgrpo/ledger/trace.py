"""``audit trace``: the steps and reward events that shaped a saved checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trustgrpo.errors import UserError
from trustgrpo.ledger.reader import LedgerReader


@dataclass
class TraceReport:
    """What shaped the weights saved at one step (see :func:`trace`)."""

    step: int
    checkpoint_event: int
    weights_sha256: str
    steps: list[dict[str, Any]]
    rewards: list[dict[str, Any]]
    reward_events: int
    total_weight: float

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "checkpoint_event": self.checkpoint_event,
            "weights_sha256": self.weights_sha256,
            "reward_events": self.reward_events,
            "total_weight": self.total_weight,
            "steps": self.steps,
            "rewards": self.rewards,
        }


def trace(reader: LedgerReader, step: int, top: int = 10) -> TraceReport:
    """The steps and reward events that shaped the checkpoint saved at ``step``.

    The lineage is followed through resumes: a ``run_resumed`` event at start step ``r``
    discards the steps after ``r`` recorded before it (their updates were lost with the
    process). Reward events are ranked by their weight ``|advantage|`` (a sample's share of
    the policy-gradient signal: GRPO scales each sample's log-probability gradient by its
    advantage), steps by the sum of their rewards' weights; each listed reward carries the
    ``feedback`` and ``override`` events that refer to it, wherever they are in the log.
    """
    lineage: dict[int, dict[str, Any]] = {}
    snapshot: dict[int, dict[str, Any]] | None = None
    found: tuple[int, str] | None = None
    steps_saved: list[int] = []
    reviews: dict[int, list[dict[str, Any]]] = {}
    for ev in reader.events():
        body, kind = ev.body, ev.kind
        if kind == "reward":
            rec = lineage.setdefault(body["step"], {"step": body["step"], "rewards": []})
            rec["rewards"].append((ev.index, float(body.get("advantage") or 0.0)))
        elif kind == "step":
            rec = lineage.setdefault(body["step"], {"step": body["step"], "rewards": []})
            rec["event"], rec["metrics"] = ev.index, body.get("metrics", {})
        elif kind == "run_resumed":
            start = int(body.get("start_step", 0))
            lineage = {s: r for s, r in lineage.items() if s <= start}
        elif kind == "checkpoint":
            steps_saved.append(int(body["step"]))
            if body["step"] == step:
                snapshot = {s: dict(r) for s, r in lineage.items() if s <= step}
                found = (ev.index, str(body.get("weights_sha256", "")))
        elif kind in ("feedback", "override") and isinstance(body.get("event"), int):
            reviews.setdefault(body["event"], []).append({"event": ev.index, "kind": kind, **body})
    if snapshot is None or found is None:
        raise UserError(
            f"no checkpoint event for step {step}; checkpoints were saved at steps "
            f"{sorted(set(steps_saved)) or 'none'}"
        )
    all_rewards = [(i, adv, s) for s, r in snapshot.items() for i, adv in r["rewards"]]
    total = sum(abs(a) for _, a, _ in all_rewards)
    ranked = sorted(all_rewards, key=lambda t: (-abs(t[1]), t[0]))[: max(top, 0)]
    rewards = []
    for i, adv, s in ranked:
        body = reader.get_event(i).body
        rewards.append(
            {
                "event": i,
                "step": s,
                "prompt_id": body.get("prompt_id"),
                "group_id": body.get("group_id"),
                "index": body.get("index"),
                "reward": body.get("reward"),
                "advantage": adv,
                "weight": abs(adv),
                "outcomes": [
                    {k: o.get(k) for k in ("verifier", "status", "score")}
                    for o in body.get("outcomes", [])
                ],
                "feedback": reviews.get(i, []),
            }
        )
    step_rows = []
    for s, r in snapshot.items():
        w = sum(abs(a) for _, a in r["rewards"])
        metrics = r.get("metrics", {})
        step_rows.append(
            {
                "step": s,
                "event": r.get("event"),
                "reward_events": len(r["rewards"]),
                "weight": w,
                "loss": metrics.get("loss"),
                "kl": metrics.get("kl"),
                "reward_mean": metrics.get("reward/mean"),
            }
        )
    step_rows.sort(key=lambda d: (-d["weight"], d["step"]))
    return TraceReport(
        step=step,
        checkpoint_event=found[0],
        weights_sha256=found[1],
        steps=step_rows[: max(top, 0)],
        rewards=rewards,
        reward_events=len(all_rewards),
        total_weight=total,
    )
