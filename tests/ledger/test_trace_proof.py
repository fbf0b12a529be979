"""``audit trace`` (lineage through resumes) and inclusion proofs for third parties."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from trustgrpo.errors import UserError, VerificationError
from trustgrpo.ledger import Ledger
from trustgrpo.ledger.audit import trace
from trustgrpo.ledger.events import feedback_body, override_body
from trustgrpo.ledger.proof import check_proof, make_proof
from trustgrpo.ledger.sign import SigningKey, generate_private_key, load_public_key


def step(ledger: Ledger, s: int, advantages: list[float]) -> list[int]:
    """Append a step's reward events and its step event; sign; return the reward indices."""
    first = ledger.flush()
    for i, adv in enumerate(advantages):
        ledger.append(
            "reward",
            {
                "step": s,
                "prompt_id": f"p{i}",
                "group_id": 0,
                "index": i,
                "completion_blob": ledger.put_blob(f"step {s} sample {i}"),
                "reward": 1.0 if adv > 0 else 0.0,
                "advantage": adv,
                "outcomes": [{"verifier": "v@1", "status": "correct", "score": 1.0}],
            },
        )
    ledger.append("step", {"step": s, "metrics": {"loss": 0.1 * s, "kl": 0.01}})
    ledger.sign()
    return list(range(first, first + len(advantages)))


@pytest.fixture
def history(run_dir: Path, store_url: str | None) -> dict[str, Any]:
    """Steps 1–3, a checkpoint at 2, a crash in 3, resume from 2, steps 3–4, checkpoint at 4."""
    ids: dict[str, Any] = {}
    with Ledger.open(run_dir, url=store_url) as ledger:
        ledger.append("run_started", {"config": {}, "provenance": {}, "start_step": 0})
        ids[1] = step(ledger, 1, [0.5, -0.5, 0.1, -0.1])
        ids[2] = step(ledger, 2, [2.0, -2.0, 0.0, 0.0])
        ledger.append("checkpoint", {"step": 2, "weights_sha256": "aa" * 32})
        ids["lost"] = step(ledger, 3, [9.0, -9.0, 0.0, 0.0])  # its update never happened
        ledger.append("run_resumed", {"config": {}, "provenance": {}, "start_step": 2})
        ids[3] = step(ledger, 3, [1.0, -1.0, 0.2, -0.2])
        ids[4] = step(ledger, 4, [3.0, -0.3, 0.3, 0.0])
        ledger.append("checkpoint", {"step": 4, "weights_sha256": "bb" * 32})
        ledger.append("feedback", feedback_body(ids[4][0], "alice", "wrong", "lucky guess"))
        ledger.append("override", override_body(ids[2][1], "bob", 1.0, "grader bug"))
        ids["tail"] = ledger.flush()  # unsigned: after the last checkpoint
        ledger.append("feedback", feedback_body(ids[3][0], "carol", "ok"))
        ledger.flush()
    ids["run_dir"], ids["url"] = run_dir, store_url
    return ids


def test_trace_follows_the_lineage(history: dict[str, Any]) -> None:
    with Ledger.open_readonly(history["run_dir"], url=history["url"]) as reader:
        report = trace(reader, 4, top=3)
    assert report.weights_sha256 == "bb" * 32
    assert report.reward_events == 16  # steps 1, 2, 3 (resumed), 4: not the lost step 3
    lost = set(history["lost"])
    assert not lost & {r["event"] for r in report.rewards}
    assert [r["event"] for r in report.rewards] == [history[4][0], history[2][0], history[2][1]]
    assert [r["weight"] for r in report.rewards] == [3.0, 2.0, 2.0]
    top = report.rewards[0]
    assert top["step"] == 4 and top["advantage"] == 3.0 and top["prompt_id"] == "p0"
    assert [f["reviewer"] for f in top["feedback"]] == ["alice"]
    assert report.rewards[2]["feedback"][0]["kind"] == "override"
    assert [s["step"] for s in report.steps] == [2, 4, 3]  # by the sum of |advantage|
    assert report.steps[0]["weight"] == 4.0 and report.steps[0]["loss"] == 0.2
    assert report.total_weight == pytest.approx(1.2 + 4.0 + 2.4 + 3.6)


def test_trace_an_earlier_checkpoint(history: dict[str, Any]) -> None:
    with Ledger.open_readonly(history["run_dir"], url=history["url"]) as reader:
        report = trace(reader, 2, top=100)
        assert report.reward_events == 8
        assert {r["step"] for r in report.rewards} == {1, 2}
        with pytest.raises(UserError, match=r"saved at steps \[2, 4\]"):
            trace(reader, 3)


def test_inclusion_proof_round_trip(history: dict[str, Any]) -> None:
    run_dir = history["run_dir"]
    key = load_public_key(run_dir / "ledger.pub")
    event = history[3][1]
    with Ledger.open_readonly(run_dir, url=history["url"]) as reader:
        proof = make_proof(reader, event)
        latest = reader.latest_checkpoint()
    assert latest is not None and proof["tree_size"] == latest.size
    proof = json.loads(json.dumps(proof))  # as a file would carry it
    summary = check_proof(proof, key)
    assert summary["leaf_index"] == event and summary["kind"] == "reward"
    assert summary["body"]["advantage"] == -1.0
    (h,) = summary["blobs_checked"]
    assert base64.b64decode(proof["blobs"][h]) == b"step 3 sample 1"


def test_proof_against_a_step_checkpoint(history: dict[str, Any]) -> None:
    with Ledger.open_readonly(history["run_dir"], url=history["url"]) as reader:
        proof = make_proof(reader, history[1][0], step=2)
        step2_event = history[2][-1] + 1
        assert proof["tree_size"] == step2_event + 1  # signed right after step 2's step event
        with pytest.raises(UserError, match="not covered"):
            make_proof(reader, history[4][0], step=2)
        with pytest.raises(UserError, match="not covered"):
            make_proof(reader, history["tail"])  # the unsigned tail
        with pytest.raises(UserError, match="no step event"):
            make_proof(reader, 0, step=9)
    check_proof(proof, load_public_key(history["run_dir"] / "ledger.pub"))


def _mutations(proof: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []

    def mutate(desc: str, fn: Any) -> None:
        p = copy.deepcopy(proof)
        fn(p)
        out.append((desc, p))

    mutate(
        "event body",
        lambda p: p.update(event=p["event"].replace('"advantage":-1', '"advantage":1')),
    )
    mutate("leaf index + 1", lambda p: p.update(leaf_index=p["leaf_index"] + 1))
    mutate("leaf index - 1", lambda p: p.update(leaf_index=p["leaf_index"] - 1))
    mutate("tree size - 1", lambda p: p.update(tree_size=p["tree_size"] - 1))
    mutate(
        "path bit", lambda p: p["inclusion_path"].__setitem__(0, "ff" + p["inclusion_path"][0][2:])
    )
    mutate("path removed", lambda p: p["inclusion_path"].pop())
    mutate("path extra", lambda p: p["inclusion_path"].append("00" * 32))
    mutate("leaf hash", lambda p: p.update(leaf_hash="00" * 32))
    mutate(
        "checkpoint size",
        lambda p: p.update(
            checkpoint=p["checkpoint"].replace(
                f"\n{p['tree_size']}\n", f"\n{p['tree_size'] + 1}\n", 1
            )
        ),
    )
    mutate(
        "blob content",
        lambda p: p["blobs"].update({k: base64.b64encode(b"forged").decode() for k in p["blobs"]}),
    )
    mutate("foreign blob", lambda p: p["blobs"].update({"sha256:" + "0" * 64: ""}))
    mutate("format", lambda p: p.update(format="other"))
    return out


def test_broken_proofs_fail(history: dict[str, Any], tmp_path: Path) -> None:
    run_dir = history["run_dir"]
    key = load_public_key(run_dir / "ledger.pub")
    with Ledger.open_readonly(run_dir, url=history["url"]) as reader:
        proof = make_proof(reader, history[3][1])
    check_proof(proof, key)
    for desc, bad in _mutations(proof):
        with pytest.raises(VerificationError):
            check_proof(bad, key)
            pytest.fail(f"a proof with a changed {desc} verified")
    stranger = SigningKey(key.name, generate_private_key(tmp_path / "other.key")).verifier
    with pytest.raises(VerificationError, match="expected a signature by"):
        check_proof(proof, stranger)
