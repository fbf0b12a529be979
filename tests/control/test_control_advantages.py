"""Exact advantages on the hand-built Corridor environment (conftest): a scripted policy plays
four known episodes from one seeded start state; outcome and process supervision are checked
against values computed by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from trustgrpo.advantage import EPS, group_advantages, process_advantages_padded
from trustgrpo.rollout.gym import EpisodeCollector

# Episode i plays SCRIPTS[i] (1 walks +1, 0 stops and terminates; the time limit is 3).
SCRIPTS = [[1, 1, 1], [1, 0], [0], [1, 1, 1]]
# rewards [1,1,1] truncated | [1,0] terminated | [0] terminated | [1,1,1] truncated


class Scripted:
    """Plays SCRIPTS[i][t] for episode i, t read from the observation. The collector passes
    the rows of the running episodes in slot order, and slot i runs episode i (4 slots)."""

    def eval(self) -> None:
        pass

    def act(self, obs: torch.Tensor, generator: Any, deterministic: bool) -> Any:
        t = int(obs[0, 0])
        running = [i for i, script in enumerate(SCRIPTS) if len(script) > t]
        assert len(running) == len(obs) and all(int(o[0]) == t for o in obs)
        raw = torch.tensor([SCRIPTS[i][t] for i in running])
        return raw, raw.numpy().astype(np.int64)


@pytest.fixture(scope="module", params=["sync", "async"])
def episodes(request: pytest.FixtureRequest) -> Any:
    collector = EpisodeCollector("trustgrpo_test/Corridor-v0", {}, 0, 4, request.param)
    eps = collector.collect(Scripted(), [7, 7, 7, 7], None)
    collector.close()
    return eps


def test_the_episodes_are_what_the_script_says(episodes: Any) -> None:
    assert episodes.lengths.tolist() == [3, 2, 1, 3]
    assert episodes.terminated.tolist() == [False, True, True, False]
    assert episodes.truncated.tolist() == [True, False, False, True]
    assert episodes.padded_rewards().tolist() == [
        [1.0, 1.0, 1.0],
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
        [1.0, 1.0, 1.0],
    ]
    assert episodes.env_actions.tolist() == [1, 1, 1, 1, 0, 0, 1, 1, 1]


def test_outcome_supervision(episodes: Any) -> None:
    returns = [float(episodes.episode_rewards(i).sum()) for i in range(4)]
    assert returns == [3.0, 1.0, 0.0, 3.0]
    # mean 1.75; sample variance (1.25² + 0.75² + 1.75² + 1.25²) / 3 = 2.25
    s = 1.5 + EPS
    expected = [1.25 / s, -0.75 / s, -1.75 / s, 1.25 / s]
    np.testing.assert_allclose(group_advantages(returns, 4, "group"), expected, rtol=1e-12)


def _process(episodes: Any, **kw: Any) -> np.ndarray:
    return process_advantages_padded(
        episodes.padded_rewards(), episodes.lengths, 4, episodes.terminated, **kw
    )


def test_process_supervision_terminated_episodes_count_as_zero(episodes: Any) -> None:
    # reward-to-go: [3,2,1] [1,0] [0] [3,2,1]
    # t=0: 3,1,0,3 (mean 1.75); t=1: 2,0,(0 terminated),2 (mean 1); t=2: 1,(0),(0),1 (mean 0.5)
    expected = [
        [1.25, 1.0, 0.5],
        [-0.75, -1.0, 0.0],
        [-1.75, 0.0, 0.0],
        [1.25, 1.0, 0.5],
    ]
    np.testing.assert_allclose(_process(episodes, scale="none"), expected, rtol=1e-12)


def test_process_supervision_group_scale_and_discount(episodes: Any) -> None:
    # gamma 0.5: reward-to-go [1.75, 1.5, 1] [1, 0] [0] [1.75, 1.5, 1]
    # t=0: values 1.75, 1, 0, 1.75: mean 1.125, centred .625 -.125 -1.125 .625
    c0 = np.array([0.625, -0.125, -1.125, 0.625])
    s0 = np.sqrt((c0**2).sum() / 3) + EPS
    # t=1: values 1.5, 0, 0, 1.5: mean .75, centred .75 -.75 (-.75) .75
    c1 = np.array([0.75, -0.75, -0.75, 0.75])
    s1 = np.sqrt((c1**2).sum() / 3) + EPS
    # t=2: values 1, 0, 0, 1: mean .5
    c2 = np.array([0.5, -0.5, -0.5, 0.5])
    s2 = np.sqrt((c2**2).sum() / 3) + EPS
    expected = np.array(
        [
            [c0[0] / s0, c1[0] / s1, c2[0] / s2],
            [c0[1] / s0, c1[1] / s1, 0.0],
            [c0[2] / s0, 0.0, 0.0],
            [c0[3] / s0, c1[3] / s1, c2[3] / s2],
        ]
    )
    got = _process(episodes, scale="group", gamma=0.5)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_without_termination_flags_ended_episodes_leave_the_comparison(episodes: Any) -> None:
    got = process_advantages_padded(
        episodes.padded_rewards(), episodes.lengths, 4, None, scale="none"
    )
    # t=1: only the running episodes 2, 0, 2 (mean 4/3); t=2: 1, 1 (mean 1)
    np.testing.assert_allclose(got[:, 1], [2 / 3, -4 / 3, 0.0, 2 / 3], rtol=1e-12)
    np.testing.assert_allclose(got[:, 2], [0.0, 0.0, 0.0, 0.0], atol=1e-12)
