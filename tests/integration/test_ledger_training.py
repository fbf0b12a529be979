"""A real training run writes a ledger that verifies, replays, traces, detects tampering,
survives SIGKILL at random moments and resumes into the same log."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trustgrpo import Trainer
from trustgrpo.checkpoint import sha256_file
from trustgrpo.cli import main
from trustgrpo.config import load
from trustgrpo.ledger import LedgerReader
from trustgrpo.policy.lm import build_char_tokenizer

RUN_FILE = """
[run]
name = "{name}"
output_dir = "{out}"
seed = 5
threads = 1

[policy]
model = "tiny"
tokenizer = "{tok}"
hidden_size = 16
num_layers = 1
num_heads = 2

[data]
train = "{data}"
eval = "{data}"

[generation]
max_new_tokens = 2

[grpo]
num_generations = 4
prompts_per_step = 4
max_steps = {steps}
learning_rate = 0.01
checkpoint_every = {every}

[[verifiers]]
type = "numeric"
extract = "full"
"""


def _run_file(tmp_path: Path, name: str = "run", steps: int = 4, every: int = 2) -> Path:
    data = tmp_path / "ones.jsonl"
    if not data.exists():
        rows = [{"prompt": p, "answer": "1", "kind": p[0]} for p in ["0", "1", "00", "11", "01"]]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        build_char_tokenizer(["01"]).save_pretrained(tmp_path / "tok")
    path = tmp_path / f"{name}.toml"
    path.write_text(
        RUN_FILE.format(
            name=name,
            out=tmp_path / "runs",
            tok=tmp_path / "tok",
            data=data,
            steps=steps,
            every=every,
        )
    )
    return path


def _events(run_dir: Path) -> list:
    with LedgerReader.open_readonly(run_dir) as reader:
        return list(reader.events())


def test_training_run_ledger_verifies_replays_and_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = Trainer(load(_run_file(tmp_path)), progress=False).train()
    run = result.run_dir
    events = _events(run)
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("reward") == 4 * 16 and kinds.count("step") == 4
    started = events[0].body
    assert started["provenance"]["verifiers"][0]["type"] == "numeric"
    assert started["provenance"]["data"]["train"]["sha256"]
    # each reward event carries its outcome, reward and advantage, as the metrics say
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    step1 = [e.body for e in events if e.kind == "reward" and e.body["step"] == 1]
    assert sum(b["reward"] for b in step1) / 16 == pytest.approx(metrics[0]["reward/mean"])
    assert all(b["outcomes"][0]["verifier"].startswith("numeric@") for b in step1)
    # checkpoint events name the weights that are on disk
    ckpts = [e.body for e in events if e.kind == "checkpoint"]
    assert [c["step"] for c in ckpts] == [2, 4]
    for c in ckpts:
        assert c["weights_sha256"] == sha256_file(run / c["path"] / "model.safetensors")

    assert main(["audit", "verify", str(run)]) == 0
    capsys.readouterr()
    assert main(["audit", "replay", str(run), "--json"]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert replay["counts"]["match"] == 64
    assert main(["audit", "trace", str(run), "--checkpoint", "4", "--top", "3"]) == 0
    assert "reward events" in capsys.readouterr().out


def test_tampering_with_a_stored_reward_is_detected(tmp_path: Path) -> None:
    """Rewrite one reward (and its leaf hash, as a careful forger would): verify fails."""
    import hashlib

    run = Trainer(load(_run_file(tmp_path)), progress=False).train().run_dir
    db = sqlite3.connect(run / "ledger.db")
    rows = db.execute("SELECT idx, data FROM events WHERE kind = 'reward' ORDER BY idx").fetchall()
    idx, leaf = next((i, bytes(d)) for i, d in rows if b'"reward":0' in bytes(d))
    forged = leaf.replace(b'"reward":0', b'"reward":1', 1)
    db.execute(
        "UPDATE events SET data = ?, leaf_hash = ? WHERE idx = ?",
        (forged, hashlib.sha256(b"\x00" + forged).digest(), idx),
    )
    db.commit()
    db.close()
    assert main(["audit", "verify", str(run)]) == 1


def _train_cmd(run_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trustgrpo.cli", "train", str(run_file), "--quiet", *extra]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_random_moments_then_verify_and_resume(tmp_path: Path, seed: int) -> None:
    import random

    run_file = _run_file(tmp_path, steps=40, every=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _train_cmd(run_file),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    run = tmp_path / "runs" / "run"
    # wait until training has started (the ledger exists), then kill at a random moment
    deadline = time.monotonic() + 120
    while not (run / "ledger.db").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.2, 2.5))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    assert main(["audit", "verify", str(run)]) == 0
    events = _events(run)
    # every checkpoint on disk has all reward and step events up to its step in the ledger
    steps_logged = {e.body["step"] for e in events if e.kind == "step"}
    for ckpt in (run / "checkpoints").glob("step-*"):
        if ckpt.name.split("-")[1].isdigit() and (ckpt / "trainer_state.json").exists():
            assert set(range(1, int(ckpt.name.split("-")[1]) + 1)) <= steps_logged

    out = subprocess.run(_train_cmd(run_file, "--resume"), env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert main(["audit", "verify", str(run)]) == 0
    events = _events(run)
    kinds = [e.kind for e in events]
    assert kinds[-1] == "run_finished"
    assert kinds.count("run_started") == 1
    assert max(e.body["step"] for e in events if e.kind == "step") == 40
