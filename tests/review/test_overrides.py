"""Corrected rewards on a real training run's ledger: written by the review service,
read back by :class:`Overrides`, applied to the identical completion of the same prompt."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from trustgrpo.cli import main
from trustgrpo.ledger import Ledger, LedgerReader
from trustgrpo.review.overrides import Overrides, blob_hash
from trustgrpo.review.service import BadInput, NotFound, ReviewService
from trustgrpo.verifiers.base import Sample


def _reward(reader: LedgerReader, index: int) -> tuple[str, str, float]:
    ev = reader.get_event(index)
    prompt = reader.get_text(ev.body["prompt_blob"])
    completion = reader.get_text(ev.body["completion_blob"])
    assert prompt is not None and completion is not None
    return prompt, completion, ev.body["reward"]


def _sample(prompt: str, completion: str, i: int = 0) -> Sample:
    return Sample(prompt_id="p", group_id=0, index=i, prompt=prompt, completion=completion)


def test_blob_hash_is_the_ledgers_key(real_run: Path) -> None:
    with LedgerReader.open_readonly(real_run) as reader:
        ev = next(e for e in reader.events() if e.kind == "reward")
        assert blob_hash(reader.get_text(ev.body["prompt_blob"]) or "") == ev.body["prompt_blob"]


def test_override_applies_to_the_same_completion_of_the_same_prompt(
    real_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    early = LedgerReader.open_readonly(real_run)  # stays open while the service writes
    rewards = [e.index for e in early.events() if e.kind == "reward"]
    prompt, completion, recorded = _reward(early, rewards[0])
    other = next(p for i in rewards[1:] if (p := _reward(early, i)[0]) != prompt)
    before = Overrides.from_ledger(early)
    assert before.lookup(prompt, completion) is None

    service = ReviewService(real_run)
    try:
        corrected = 0.25 if recorded != 0.25 else 0.75
        out = service.label(
            rewards[0], "alice", "incorrect", score=corrected, reason="lucky format"
        )
        assert out["override"] == out["feedback"] + 1
        with pytest.raises(BadInput, match="say why"):  # a correction needs a reason
            service.label(rewards[1], "alice", "incorrect", score=corrected)
        with pytest.raises(NotFound, match="'run_started' event"):
            service.label(0, "alice", "correct")
        assert service.label(rewards[1], "bob", "correct")["override"] is None
    finally:
        service.close()

    assert before.refresh() == 1  # the earlier instance picks up what was written since
    assert before.lookup(prompt, completion) is not None
    early.close()
    with LedgerReader.open_readonly(real_run) as reader:
        overrides = Overrides.from_ledger(reader)
        ov = reader.get_event(out["override"])
        assert ov.kind == "override"
        assert ov.body == {
            "event": rewards[0],
            "reviewer": "alice",
            "reward": corrected,
            "reason": "lucky format",
        }
        fb = reader.get_event(out["feedback"]).body
        assert fb["verdict"] == "incorrect" and fb["status"] == "submitted"
        assert fb["suggestion"]["reward"] == recorded and fb["score"] == corrected
    c = overrides.lookup(prompt, completion)
    assert c is not None and (c.reward, c.event, c.override) == (corrected, rewards[0], ov.index)
    assert overrides.lookup(other, completion) is None  # another prompt: not overridden
    assert overrides.lookup(prompt, completion + " ") is None  # another completion

    samples = [
        _sample(other, completion),
        _sample(prompt, completion, 1),
        _sample(prompt, completion + "x", 2),
        _sample(prompt, completion, 3),
    ]
    given = np.array([0.0, 1.0, 1.0, float("nan")])
    new, applied = overrides.apply(samples, given)
    assert applied == [1, 3]
    assert new.tolist()[:3] == [0.0, corrected, 1.0] and new[3] == corrected
    assert math.isnan(given[3])  # the input is not changed
    with pytest.raises(ValueError, match="expected 4 values"):
        overrides.apply(samples, [0.0])

    assert main(["audit", "verify", str(real_run)]) == 0  # labels are signed, consistent
    capsys.readouterr()


def test_latest_override_wins_null_masks_and_bad_ones_are_skipped(real_run: Path) -> None:
    with LedgerReader.open_readonly(real_run) as reader:
        rewards = [e.index for e in reader.events() if e.kind == "reward"]
        prompt, completion, _ = _reward(reader, rewards[2])
    with Ledger.open(real_run) as ledger:
        ledger.append(
            "override", {"event": rewards[2], "reviewer": "a", "reward": 0.5, "reason": "x"}
        )
        ledger.append(
            "override", {"event": rewards[2], "reviewer": "b", "reward": None, "reason": "y"}
        )
        ledger.append("override", {"event": 0, "reviewer": "c", "reward": 1.0, "reason": "z"})
        ledger.append("override", {"event": 10**9, "reviewer": "d", "reward": 1.0, "reason": ""})
        ledger.append(
            "override", {"event": rewards[2], "reviewer": "e", "reward": "1", "reason": ""}
        )
        ledger.sign()
    with LedgerReader.open_readonly(real_run) as reader:
        overrides = Overrides.from_ledger(reader)
    c = overrides.lookup(prompt, completion)
    assert c is not None and c.reward is None and c.reviewer == "b"
    new, applied = overrides.apply([_sample(prompt, completion)], [1.0])
    assert applied == [0] and math.isnan(new[0])
    why = [w for _, w in overrides.skipped]
    assert len(why) == 3
    assert "'run_started' event" in why[0] and "no event" in why[1] and "reward:" in why[2]
