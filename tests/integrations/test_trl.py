"""A real TRL ``GRPOTrainer`` run, with audited rewards and TrustCallback, writes a ledger that
the audit tools read like a native run's: it verifies and replays, its reward events are what
TRL logged, a failing reward function is an ``error`` outcome (never a 0 in TRL's values), and
a ``halt`` alert stops TRL."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never reach for the hub

pytest.importorskip("trl", reason="needs the [trl] extra")
import pandas as pd  # a TRL dependency (its completion tables)
from datasets import Dataset
from packaging.specifiers import SpecifierSet
from trl import GRPOConfig, GRPOTrainer

from trustgrpo.callbacks import Callback, RunInfo, StepBatch
from trustgrpo.checkpoint import sha256_file
from trustgrpo.cli import main
from trustgrpo.config import PolicyConfig
from trustgrpo.errors import UserError
from trustgrpo.integrations.trl import TrustCallback, audited
from trustgrpo.ledger import Ledger, LedgerReader
from trustgrpo.policy.lm import (
    build_char_tokenizer,
    build_tiny_model,
    load_pretrained,
    state_digest,
)
from trustgrpo.verifiers import NumericVerifier

TESTED_TRL = SpecifierSet(">=1.16,<1.17")
"""The TRL versions this integration is tested with (the ``[trl]`` extra's pin)."""

pytestmark = [
    # TRL 1.16 calls transformers' gradient-checkpointing names that transformers 5 deprecates
    pytest.mark.filterwarnings(
        "ignore:`(is_)?gradient_checkpointing\\w*` is deprecated:FutureWarning"
    ),
]


# --------------------------------------------------------------------------- reward functions
# Module-level, so that `trustgrpo audit replay` can import them by path.


def digit_share(completions: list[str], **kwargs: Any) -> list[float]:
    """Share of digits in the completion."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


def length_bonus(completions: list[str], **kwargs: Any) -> list[float]:
    """Not audited: TRL still adds it to the reward it trains on."""
    return [len(c) / 10 for c in completions]


async def digit_share_async(completions: list[str], **kwargs: Any) -> list[float]:
    """The same reward from an ``async def`` (TRL awaits it in its own event loop)."""
    await asyncio.sleep(0)
    return digit_share(completions)


def unreachable(completions: list[str], **kwargs: Any) -> list[float]:
    raise ConnectionError("grader service unreachable")


# --------------------------------------------------------------------------- set-up


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama and a character tokenizer, saved where TRL loads them from."""
    path = tmp_path_factory.mktemp("tiny")
    tok = build_char_tokenizer(["0123456789+= "])
    model = build_tiny_model(PolicyConfig(hidden_size=16, num_layers=1, num_heads=2), tok, seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def dataset(n: int = 32) -> Dataset:
    rows = [(a, b) for a in range(1, 9) for b in range(1, 9)][:n]
    return Dataset.from_list(
        [{"prompt": f"{a}+{b}=", "answer": str(a + b), "op": "+"} for a, b in rows]
    )


def trl_args(run: Path, **overrides: Any) -> GRPOConfig:
    settings: dict[str, Any] = dict(
        output_dir=str(run),
        num_generations=4,
        max_completion_length=6,
        per_device_train_batch_size=8,
        max_steps=3,
        learning_rate=1e-2,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_steps=2,
        log_completions=True,
        num_completions_to_print=1,
        seed=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    return GRPOConfig(**settings)


def events(run: Path) -> list[Any]:
    with LedgerReader.open_readonly(run) as reader:
        return list(reader.events())


def texts(run: Path, body: dict[str, Any]) -> tuple[str | None, str | None]:
    with LedgerReader.open_readonly(run) as reader:
        return reader.get_text(body["prompt_blob"]), reader.get_text(body["completion_blob"])


def trl_table(run: Path, step: int) -> Any:
    """The completions TRL logged at ``step`` (prompt, completion, one column per reward
    function, advantage)."""
    return pd.read_parquet(run / "completions" / f"completions_{step:05d}.parquet")


# --------------------------------------------------------------------------- tests


def test_installed_trl_is_the_tested_version() -> None:
    import trl

    assert trl.__version__ in TESTED_TRL, f"tested with TRL {TESTED_TRL}, found {trl.__version__}"


def test_trl_run_writes_a_ledger_that_matches_trl_and_audits_like_a_native_run(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    ledger = Ledger.open(run)
    numeric = {"type": "numeric", "name": "sum", "extract": "first_number"}
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=[audited(digit_share, ledger), audited(numeric, ledger), length_bonus],
        args=trl_args(run, reward_weights=[1.0, 0.5, 0.25]),
        train_dataset=dataset(),
        callbacks=[TrustCallback(ledger)],
    )
    trainer.train()
    ledger.close()

    evs = events(run)
    kinds = [e.kind for e in evs]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("step") == 3 and kinds.count("reward") == 3 * 8
    started = evs[0].body
    specs = started["config"]["verifiers"]
    assert [(s["type"], s["name"], s["weight"]) for s in specs] == [
        (f"{digit_share.__module__}:digit_share", "digit_share", 1.0),
        ("numeric", "sum", 0.5),
    ]
    assert started["config"]["trl"]["args"]["num_generations"] == 4
    assert [f["audited"] for f in started["config"]["trl"]["reward_funcs"]] == [True, True, False]
    prov = started["provenance"]
    assert prov["model"]["initial_sha256"] == state_digest(load_pretrained(model_dir)[0])
    assert prov["data"]["train"]["rows"] == 32 and len(prov["data"]["train"]["sha256"]) == 64
    assert [v["id"].split("@")[0] for v in prov["verifiers"]] == ["digit_share", "sum"]

    # every reward event is the row TRL logged: texts, each function's value, reward, advantage
    for step in (1, 2, 3):
        table = trl_table(run, step)
        bodies = sorted(
            (e.body for e in evs if e.kind == "reward" and e.body["step"] == step),
            key=lambda b: (b["group_id"], b["index"]),
        )
        assert len(bodies) == len(table) == 8
        for body, row in zip(bodies, table.itertuples(), strict=True):
            assert texts(run, body) == (row.prompt, row.completion)
            ours = [o["score"] for o in body["outcomes"]]
            assert ours == pytest.approx([row.digit_share, row.sum], rel=1e-6)
            expected = row.digit_share + 0.5 * row.sum + 0.25 * row.length_bonus
            assert body["reward"] == pytest.approx(expected, rel=1e-5)
            assert body["advantage"] == pytest.approx(row.advantage, rel=1e-5, abs=1e-6)
        assert {b["group_id"] for b in bodies} == {0, 1}
        assert {b["prompt_id"] for b in bodies if b["group_id"] == 0} != {
            b["prompt_id"] for b in bodies if b["group_id"] == 1
        }
    steps = [e.body for e in evs if e.kind == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all(s["metrics"]["trl/unmatched"] == 0 for s in steps)
    assert "entropy" in steps[0]["metrics"]  # TRL's own step scalars come along

    # checkpoint events name the weights TRL saved
    ckpts = [e.body for e in evs if e.kind == "checkpoint"]
    assert [c["step"] for c in ckpts] == [2, 3]
    for c in ckpts:
        assert c["path"] == f"checkpoint-{c['step']}"
        assert c["weights_sha256"] == sha256_file(run / c["path"] / "model.safetensors")
    assert evs[-1].body["result"]["stopped_early"] is False

    # the audit tools work on the run directory as on a native run
    assert main(["audit", "verify", str(run)]) == 0
    capsys.readouterr()
    assert main(["audit", "replay", str(run), "--json"]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert replay["counts"] == {"match": 2 * 24}
    assert main(["audit", "trace", str(run), "--checkpoint", "3", "--top", "2"]) == 0
    assert main(["monitor", str(run)]) == 0
    from trustgrpo.report._collect import collect

    with LedgerReader.open_readonly(run) as reader:
        summary = collect(reader)
    assert len(summary.steps) == 3 and summary.samples == 24
    assert [c.name for c in summary.components] == ["digit_share", "sum"]


def test_a_failing_reward_is_an_error_not_a_zero_and_a_halt_alert_stops_trl(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    ledger = Ledger.open(run)
    # verifier health judges a component after 100 outcomes: 56 per step → the alert at step 2
    halt = {"verifier_health": {"action": "halt"}}
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=[audited(digit_share, ledger), audited(unreachable, ledger)],
        args=trl_args(run, per_device_train_batch_size=56, max_steps=6, save_steps=100),
        train_dataset=dataset(56),
        callbacks=[TrustCallback(ledger, monitors=halt)],
    )
    trainer.train()
    ledger.close()

    assert trainer.state.global_step == 2  # not 6: the halt stopped TRL
    evs = events(run)
    rewards = [e.body for e in evs if e.kind == "reward"]
    assert len(rewards) == 2 * 56
    failed = [b["outcomes"][1] for b in rewards]
    assert all(o["status"] == "error" and o["score"] is None for o in failed)
    assert "ConnectionError: grader service unreachable" in failed[0]["details"]["error"]
    for step in (1, 2):  # TRL received None (NaN), never 0, from the failing function
        assert all(math.isnan(x) for x in trl_table(run, step)["unreachable"])
    assert all(b["reward"] == pytest.approx(b["outcomes"][0]["score"], rel=1e-6) for b in rewards)

    alerts = [e for e in evs if e.kind == "alert"]
    assert [(a.body["detector"], a.body["severity"], a.body["step"]) for a in alerts] == [
        ("verifier_health", "halt", 2)
    ]
    assert alerts[0].body["check"] == "failures:unreachable"
    assert all(isinstance(i, int) and evs[i].kind == "reward" for i in alerts[0].body["evidence"])
    finished = evs[-1].body["result"]
    assert finished["stopped_early"] is True and "verifier_health" in finished["stopped_by"]
    ckpts = [e.body for e in evs if e.kind == "checkpoint"]
    assert [c["step"] for c in ckpts] == [2]  # the halted step was saved
    assert ckpts[0]["weights_sha256"] == sha256_file(run / "checkpoint-2" / "model.safetensors")

    assert main(["audit", "verify", str(run)]) == 0
    capsys.readouterr()
    assert main(["monitor", str(run), "--json"]) == 1  # recomputed offline: the same alert
    offline = json.loads(capsys.readouterr().out)["alerts"]
    assert [(a["detector"], a["check"], a["step"]) for a in offline] == [
        ("verifier_health", "failures:unreachable", 2)
    ]


class StopAfter(Callback):
    """A monitor of this test's own: sees each step's samples, stops after step ``last``."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.seen: list[tuple[int, int, int]] = []

    def on_step_rewards(self, run: RunInfo, batch: StepBatch) -> None:
        self.seen.append((batch.step, len(batch.samples), len(batch.outcomes[0])))

    def on_step_end(self, run: RunInfo, batch: StepBatch) -> bool | None:
        return batch.step < self.last


def test_a_trustgrpo_callback_as_monitor_sees_each_step_and_can_stop_trl(
    tmp_path: Path, model_dir: Path
) -> None:
    run = tmp_path / "run"
    ledger = Ledger.open(run)
    stopper = StopAfter(last=1)
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=[audited(digit_share, ledger)],
        args=trl_args(run, log_completions=False, save_strategy="no"),
        train_dataset=dataset(),
        callbacks=[TrustCallback(ledger, monitors=[stopper])],
    )
    trainer.train()
    ledger.close()
    assert trainer.state.global_step == 1
    assert stopper.seen == [(1, 8, 1)]
    evs = events(run)
    assert [e.kind for e in evs].count("step") == 1
    assert evs[-1].body["result"]["stopped_early"] is True
    assert evs[0].body["config"]["monitors"] == {"enabled": False}
    assert main(["audit", "verify", str(run)]) == 0


def test_async_functions_and_verifier_objects_are_recorded_and_replay(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    ledger = Ledger.open(run)
    reward_funcs = [
        audited(digit_share_async, ledger),
        audited(NumericVerifier(name="sum", extract="first_number"), ledger),
    ]
    assert [asyncio.iscoroutinefunction(f.__call__) for f in reward_funcs] == [True, False]
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=reward_funcs,
        args=trl_args(run, max_steps=1, save_strategy="no"),
        train_dataset=dataset(),
        callbacks=[TrustCallback(ledger)],
    )
    trainer.train()
    ledger.close()
    table = trl_table(run, 1)
    bodies = [e.body for e in events(run) if e.kind == "reward"]
    assert [b["outcomes"][0]["score"] for b in bodies] == pytest.approx(
        list(table.digit_share_async), rel=1e-6
    )
    capsys.readouterr()  # TRL's printed logs
    assert main(["audit", "replay", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"match": 2 * 8}


def test_a_resumed_trl_run_continues_the_same_ledger(tmp_path: Path, model_dir: Path) -> None:
    run = tmp_path / "run"
    for steps, resume in ((2, False), (3, True)):
        ledger = Ledger.open(run)
        trainer = GRPOTrainer(
            model=str(model_dir),
            reward_funcs=[audited(digit_share, ledger)],
            args=trl_args(run, max_steps=steps, log_completions=False),
            train_dataset=dataset(),
            callbacks=[TrustCallback(ledger)],
        )
        trainer.train(resume_from_checkpoint=resume)
        ledger.close()
    evs = events(run)
    sessions = [(e.kind, e.body["start_step"]) for e in evs if "start_step" in e.body]
    assert sessions == [("run_started", 0), ("run_resumed", 2)]
    assert [e.body["step"] for e in evs if e.kind == "step"] == [1, 2, 3]
    assert sorted({e.body["step"] for e in evs if e.kind == "reward"}) == [1, 2, 3]
    assert main(["audit", "verify", str(run)]) == 0
    assert main(["audit", "replay", str(run)]) == 0


def test_the_example_writes_a_run_that_verifies_and_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    run = tmp_path / "trl-grpo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-W", "ignore::FutureWarning", str(examples / "trl_grpo.py"), str(run)]
    subprocess.run(cmd, check=True, env=env, timeout=300, capture_output=True)
    assert main(["audit", "verify", str(run)]) == 0
    monkeypatch.syspath_prepend(str(examples))  # its reward function: "trl_grpo:bare_number"
    assert main(["audit", "replay", str(run)]) == 0
    started = events(run)[0].body
    assert [v["type"] for v in started["config"]["verifiers"]] == [
        "numeric",
        "trl_grpo:bare_number",
    ]


def test_an_audited_function_without_trustcallback_refuses_to_run_unrecorded(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "run") as ledger:
        reward = audited(digit_share, ledger)
        assert reward.__name__ == "digit_share"
        with pytest.raises(UserError, match="TrustCallback"):
            reward(prompts=["1+1="], completions=["2"])


def test_importing_trustgrpo_and_the_integration_does_not_import_trl() -> None:
    code = (
        "import sys, trustgrpo, trustgrpo.integrations.trl; "
        "assert 'trl' not in sys.modules, sorted(m for m in sys.modules if m.startswith('trl'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
