"""Exact numbers on hand-built cases: κ and its counts, the Wilson interval, the queue's
random slice and reasons, the verifier verdict."""

from __future__ import annotations

import math

import pytest

from trustgrpo.review.index import verdict_of
from trustgrpo.review.queue import QueueConfig, ReviewQueue, content_reasons, in_random_slice
from trustgrpo.review.stats import agreement, cohen_kappa, error_rate, wilson_interval


def test_kappa_matches_a_hand_computed_table() -> None:
    # 20 pairs: verifier/person = c/c 9, c/i 3, i/c 1, i/i 7
    pairs = (
        [("correct", "correct")] * 9
        + [("correct", "incorrect")] * 3
        + [("incorrect", "correct")] * 1
        + [("incorrect", "incorrect")] * 7
    )
    p_o, p_e, kappa = cohen_kappa(pairs)
    assert p_o == pytest.approx(16 / 20)
    # marginals: verifier correct 12/20, person correct 10/20
    assert p_e == pytest.approx(12 / 20 * 10 / 20 + 8 / 20 * 10 / 20)
    assert kappa == pytest.approx((0.8 - 0.5) / (1 - 0.5))
    a = agreement(pairs)
    assert a.table == {
        "correct/correct": 9,
        "correct/incorrect": 3,
        "incorrect/correct": 1,
        "incorrect/incorrect": 7,
    }
    assert (a.pairs, a.disagreements) == (20, 4)


def test_kappa_edge_cases() -> None:
    assert cohen_kappa([]) == (None, None, None)
    same = [("correct", "correct")] * 5
    assert cohen_kappa(same) == (1.0, 1.0, None)  # chance agreement 1: undefined
    opposite = [("correct", "incorrect"), ("incorrect", "correct")]
    assert cohen_kappa(opposite)[2] == pytest.approx(-1.0)
    a = agreement([("unscored", "correct"), ("correct", "unsure"), ("correct", "correct")])
    assert (a.pairs, a.excluded_verifier, a.excluded_human) == (1, 1, 1)


def test_wilson_interval_and_error_rate() -> None:
    assert wilson_interval(0, 0) is None
    lo, hi = wilson_interval(5, 10)  # type: ignore[misc]
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    er = error_rate([("correct", "incorrect")] + [("correct", "correct")] * 3)
    assert (er.errors, er.labelled, er.rate) == (1, 4, 0.25)
    assert er.interval is not None and er.interval[0] < 0.25 < er.interval[1]
    assert error_rate([]).to_json() == {"errors": 0, "labelled": 0, "rate": None, "interval": None}


def test_random_slice_is_a_stable_bernoulli_sample() -> None:
    n, rate = 20_000, 0.05
    hits = [i for i in range(n) if in_random_slice("origin key", i, rate)]
    sd = math.sqrt(n * rate * (1 - rate))
    assert abs(len(hits) - n * rate) < 4 * sd
    assert hits == [i for i in range(n) if in_random_slice("origin key", i, rate)]  # stable
    other = {i for i in range(n) if in_random_slice("another ledger", i, rate)}
    assert len(other & set(hits)) < len(hits) / 2  # another ledger draws another slice
    assert not any(in_random_slice("x", i, 0.0) for i in range(1000))
    assert all(in_random_slice("x", i, 1.0) for i in range(1000))


def test_reasons_and_order() -> None:
    cfg = QueueConfig(random_rate=0.0, boundary_band=0.25)
    assert content_reasons(None, False, seed="s", index=1, cfg=cfg) == []
    assert content_reasons(0.3, False, seed="s", index=1, cfg=cfg) == []
    assert content_reasons(0.05, True, seed="s", index=1, cfg=cfg) == ["disagreement", "boundary"]
    q = ReviewQueue(cfg, "s")
    q.add_reward(10, 1, 0.1, False)  # boundary, step 1
    q.add_reward(11, 2, 0.1, False)  # boundary, step 2
    q.add_reward(12, 2, None, False)  # not queued
    q.add_reward(13, 1, None, True)  # disagreement
    q.add_flag(10, 1, alert=20)
    assert [(it.event, it.reasons) for it in q.pending()] == [
        (10, ["flag", "boundary"]),
        (13, ["disagreement"]),
        (11, ["boundary"]),
    ]
    assert q.get(10).alerts == [20]  # type: ignore[union-attr]
    q.mark_done(10)
    assert [it.event for it in q.pending()] == [13, 11]
    assert [it.event for it in q.pending("boundary")] == [11]
    assert q.counts() == {"flag": 0, "disagreement": 1, "boundary": 1, "random": 0, "total": 2}
    with pytest.raises(ValueError, match="random_rate"):
        QueueConfig(random_rate=1.5)


def test_verdict_ignores_shaping_and_never_hides_failures() -> None:
    roles = {"fmt@1": "shaping"}
    out = [{"verifier": "a@1", "status": "correct"}, {"verifier": "fmt@1", "status": "error"}]
    assert verdict_of(out, roles) == "correct"
    out = [{"verifier": "a@1", "status": "correct"}, {"verifier": "b@1", "status": "timeout"}]
    assert verdict_of(out, roles) == "unscored"
    out = [{"verifier": "a@1", "status": "correct"}, {"verifier": "b@1", "status": "incorrect"}]
    assert verdict_of(out, roles) == "incorrect"
    assert verdict_of([{"verifier": "fmt@1", "status": "correct"}], roles) == "unscored"


@pytest.mark.parametrize("module", ["stats", "queue", "overrides", "index", "cli"])
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module(f"trustgrpo.review.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
