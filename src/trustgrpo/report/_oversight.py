"""Sections 5-9 of the report (monitors, human oversight, integrity, sandbox, limitations)
and the summary at the top: rows of tagged figures (see :mod:`trustgrpo.report._view`)."""

from __future__ import annotations

from typing import Any

from trustgrpo.report._format import fact, show_setting
from trustgrpo.report._monitors import SEVERITIES
from trustgrpo.report._review import latest_labels
from trustgrpo.report._view import MAX_ALERT_ROWS, MAX_REVIEW_ROWS, View, value_fact


def oversight_sections(v: View) -> None:
    """Sections 5-9 and the summary at the top."""
    _monitoring(v)
    _review(v)
    _integrity(v)
    _sandbox(v)
    _glance(v)
    v.limitations = limitations(v)


def _monitoring(v: View) -> None:
    s = v.s
    for a in s.alerts[:MAX_ALERT_ROWS]:
        i = a.index
        d = a.decision
        v.alerts.append(
            {
                "a": a,
                "index": fact(f"alert.{i}.index", i, "id"),
                "step": fact(f"alert.{i}.step", a.step),
                "detector": fact(f"alert.{i}.detector", a.detector),
                "check": fact(f"alert.{i}.check", a.check),
                "severity": fact(f"alert.{i}.severity", a.severity),
                "statistic": fact(f"alert.{i}.statistic", a.statistic, "float"),
                "threshold": fact(f"alert.{i}.threshold", a.threshold, "float"),
                "action": fact(f"alert.{i}.action", a.action),
                "evidence": fact(
                    f"alert.{i}.evidence",
                    show_setting(a.evidence[:8])
                    + (f" (+{len(a.evidence) - 8} more)" if len(a.evidence) > 8 else ""),
                ),
                "decision": None
                if d is None
                else {
                    "decision": fact(f"alert.{i}.decision", d.decision),
                    "reviewer": fact(f"alert.{i}.reviewer", d.reviewer),
                    "index": fact(f"alert.{i}.decision_index", d.index, "id"),
                    "time": fact(f"alert.{i}.decision_time", d.ts, "time"),
                    "reason": d.reason,
                },
            }
        )
    v.alerts_hidden = max(0, len(s.alerts) - MAX_ALERT_ROWS)
    v.alert_totals = [("Alerts", fact("alerts.total", len(s.alerts)))]
    for sev in SEVERITIES:
        v.alert_totals.append(
            (sev, fact(f"alerts.{sev}", sum(a.severity == sev for a in s.alerts)))
        )


def _review(v: View) -> None:
    r, ag = v.s.review, v.s.agreement
    out: dict[str, Any] = {"recorded": r.recorded}
    out["summary"] = [
        ("Labels (feedback events)", fact("review.labels", len(r.labels))),
        (
            "Items reviewed (distinct reward events labelled or overridden)",
            fact("review.items", r.items),
        ),
        ("Reviewers", fact("review.reviewers", len(r.reviewers()))),
        ("Overrides", fact("review.overrides", len(r.overrides))),
        ("Decisions on alerts", fact("review.decisions", len(r.decisions))),
    ]
    out["kappa"] = [
        ("Pairs compared (verifier vs human)", fact("review.pairs", ag.pairs)),
        ("Observed agreement", fact("review.observed", ag.observed, "pct")),
        ("Agreement expected by chance", fact("review.expected", ag.expected, "pct")),
        ("Cohen's κ", fact("review.kappa", ag.kappa, "float")),
        (
            "Labels other than correct / incorrect (not compared)",
            fact("review.excluded_human", ag.excluded_human),
        ),
        (
            "Labels on samples the verifier did not score (not compared)",
            fact("review.excluded_verifier", ag.excluded_verifier),
        ),
        (
            "Labels replaced by the same reviewer's later label (not compared)",
            fact("review.relabelled", ag.relabelled),
        ),
        (
            "Labels on events that are not rewards (not compared)",
            fact("review.not_reward", ag.not_reward),
        ),
    ]
    out["table"] = {(a, b): fact(f"review.cm.{a}.{b}", n) for (a, b), n in ag.table.items()}
    out["reviewers"] = [
        {"name": name, "counts": [fact(f"reviewer.{name}.{k}", n) for k, n in c.items()]}
        for name, c in r.reviewers().items()
    ]
    out["overrides"] = [
        {
            "o": o,
            "index": fact(f"override.{o.index}.index", o.index, "id"),
            "event": fact(f"override.{o.index}.event", o.event, "id"),
            "recorded": fact(f"override.{o.index}.recorded", o.recorded, "float"),
            "reward": fact(f"override.{o.index}.reward", o.reward, "float"),
            "reviewer": fact(f"override.{o.index}.reviewer", o.reviewer),
            "time": fact(f"override.{o.index}.time", o.ts, "time"),
        }
        for o in r.overrides[:MAX_REVIEW_ROWS]
    ]
    out["decisions"] = [
        {
            "d": d,
            "index": fact(f"decision.{d.index}.index", d.index, "id"),
            "alert": fact(f"decision.{d.index}.alert", d.alert, "id"),
            "decision": fact(f"decision.{d.index}.decision", d.decision),
            "reviewer": fact(f"decision.{d.index}.reviewer", d.reviewer),
            "time": fact(f"decision.{d.index}.time", d.ts, "time"),
        }
        for d in r.decisions[:MAX_REVIEW_ROWS]
    ]
    two = ("correct", "incorrect")
    disagree = [
        lab
        for lab in latest_labels(r.labels)
        if lab.verdict.strip().lower() in two
        and lab.verifier in two
        and lab.verdict.strip().lower() != lab.verifier
    ]
    out["disagreements"] = [
        {
            "lab": lab,
            "index": fact(f"label.{lab.index}.index", lab.index, "id"),
            "event": fact(f"label.{lab.index}.event", lab.event, "id"),
            "verdict": fact(f"label.{lab.index}.verdict", lab.verdict),
            "verifier": fact(f"label.{lab.index}.verifier", lab.verifier),
            "reviewer": fact(f"label.{lab.index}.reviewer", lab.reviewer),
        }
        for lab in disagree[:50]
    ]
    out["disagreements_total"] = fact("review.disagreements", len(disagree))
    v.review = out


def _integrity(v: View) -> None:
    a, s = v.audits, v.s
    rep = a.verify
    v.integrity = [
        (
            "audit verify",
            fact("verify.ok", rep.ok, "bool", "OK: everything verifies" if rep.ok else "FAILED"),
        ),
        ("Events", fact("verify.events", rep.events)),
        ("Merkle root of all events (RFC 9162)", fact("verify.root", rep.root)),
        ("Signed checkpoints that verify", fact("verify.checkpoints", rep.checkpoints)),
        (
            "Events covered by the last valid checkpoint",
            fact("verify.signed_size", rep.signed_size),
        ),
        ("Blobs (prompts, completions...)", fact("verify.blobs", rep.blobs)),
        ("Redacted blobs", fact("verify.redacted", rep.redacted_blobs)),
        ("Problems found", fact("verify.problems", len(rep.problems) + rep.more_problems)),
    ]
    cp = a.checkpoint
    key = a.key
    v.checkpoint_rows = [
        ("Log (origin)", fact("checkpoint.origin", cp.origin if cp else None)),
        ("Tree size", fact("checkpoint.size", cp.size if cp else None)),
        ("Root hash (hex)", fact("checkpoint.root", cp.root.hex() if cp else None)),
        ("Signed at", fact("checkpoint.time", cp.time if cp else None)),
        (
            "Public key (note verifier key)",
            fact("ledger.public_key", key.to_vkey() if key else None),
        ),
        (
            "Public key fingerprint (SHA-256)",
            fact("ledger.key_sha256", key.fingerprint if key else None),
        ),
    ]
    if a.replay is not None:
        counts = a.replay.counts
        v.replay_rows = [
            ("Reward events replayed (random sample)", fact("replay.events", a.replay.events)),
            ("Sample seed", fact("replay.seed", a.replay_seed)),
            (
                "Result",
                fact(
                    "replay.ok",
                    a.replay.ok,
                    "bool",
                    "OK: every replayed outcome matches" if a.replay.ok else "FAILED",
                ),
            ),
        ]
        for status in (
            "match",
            "mismatch",
            "version_mismatch",
            "unknown_verifier",
            "redacted",
            "error",
        ):
            v.replay_rows.append((status, fact(f"replay.{status}", counts.get(status, 0))))
        v.replay_problems = [r.to_json() for r in a.replay.results if r.status != "match"][:20]
    v.kinds = [(k, fact(f"ledger.kind.{k}", n)) for k, n in s.kinds.items()]


def _sandbox(v: View) -> None:
    for i, c in enumerate(v.s.components):
        info = c.info
        if c.type != "code" and not {"level", "isolation"} & set(info):
            continue
        counts = v.s.outcome_counts[i] if i < len(v.s.outcome_counts) else {}
        v.sandbox.append(
            {
                "name": c.name,
                "level": fact(f"sandbox.{i}.level", info.get("level") or "not recorded"),
                "backend": fact(f"sandbox.{i}.backend", info.get("backend") or "not recorded"),
                "layers": fact(f"sandbox.{i}.isolation", show_setting(info.get("isolation") or [])),
                "python": fact(f"sandbox.{i}.python_version", info.get("python_version")),
                "errors": fact(f"outcomes.{i}.error", counts.get("error", 0)),
                "timeouts": fact(f"outcomes.{i}.timeout", counts.get("timeout", 0)),
            }
        )
    if v.sandbox:
        box = v.s.config.get("sandbox") or {}
        v.sandbox_limits = [
            (f"[sandbox] {k}", fact(f"config.sandbox.{k}", value_fact(val), text=show_setting(val)))
            for k, val in sorted(box.items())
        ]


def _glance(v: View) -> None:
    s, a = v.s, v.audits
    levels = sorted({str(c.info.get("level")) for c in s.components if c.info.get("level")})
    v.glance = [
        (
            "Ledger",
            fact(
                "verify.ok", a.verify.ok, "bool", "verifies" if a.verify.ok else "DOES NOT VERIFY"
            ),
        ),
        ("Steps", fact("train.steps", len(s.steps))),
        ("Samples scored", fact("train.samples", s.samples)),
        ("Alerts", fact("alerts.total", len(s.alerts))),
        ("Human labels", fact("review.labels", len(s.review.labels))),
        ("Sandbox", ", ".join(levels) or "no code verifiers"),
    ]


def limitations(v: View) -> list[str]:
    """What this report cannot show, for this run."""
    s, a = v.s, v.audits
    out = [
        "Compute is reported as wall-clock time and step-phase timings only: floating-point "
        "operations (Annex XI 1.2(d)) and energy use (1.2(e)) are not recorded in the ledger.",
        "Whoever holds the run directory holds the signing key: the ledger proves that events "
        "were not changed after a checkpoint was signed, and an outside party detects a "
        "rewritten and re-signed log only by comparing with a checkpoint it kept earlier "
        "(trustgrpo audit verify --checkpoint FILE).",
        "A verifier scores what it was written to check. A high reward means the verifiers "
        "were satisfied, not that the behaviour is correct in general; the monitors look for "
        "known failure patterns (length bias, component dominance, held-out gap...), not all.",
        "Defaults of monitor settings that the run file did not set are those of the trustgrpo "
        "that built this report; compare with the version the run recorded.",
    ]
    if not s.eval_keys:
        out.append("No held-out evaluation was recorded: results are on training prompts only.")
    elif s.eval_rows and s.steps and s.eval_rows[0].step > s.steps[0].step:
        out.append(
            f"The first held-out evaluation in the ledger is at step {s.eval_rows[0].step}, "
            "after training began: the 'before' figure is not of the initial model."
        )
    if not s.review.recorded:
        out.append(
            "No human review was recorded in the ledger (no labels, overrides or decisions)."
        )
    if a.verify.warnings:
        out.extend(f"audit verify: {w}." for w in a.verify.warnings)
    if a.replay is None:
        out.append(
            "No replay sample was run for this report"
            + (f" ({a.replay_error})." if a.replay_error else ".")
        )
    elif a.replay.counts.get("redacted"):
        out.append("Some replayed events had redacted inputs and could not be re-scored.")
    if a.verify.redacted_blobs:
        out.append(
            f"{a.verify.redacted_blobs} blobs were redacted: their hashes remain, their "
            "contents cannot be shown or replayed."
        )
    if s.finished is None:
        out.append(
            "The ledger has no run_finished event: the run ended abnormally or is "
            "still running; figures cover what was recorded."
        )
    if s.superseded:
        out.append(
            f"{s.superseded} reward events belong to steps redone after a resume; "
            "they are in the ledger but not counted."
        )
    if any(d.active is None for d in v.monitors.detectors):
        out.append(
            "Whether some detectors were active could not be determined: " + v.monitors.source + "."
        )
    return out
