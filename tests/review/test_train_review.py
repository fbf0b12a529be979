"""``trustgrpo train RUN.toml --review``: the review page answers while the run trains, and the
server stops with the run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from trustgrpo.cli import main
from trustgrpo.policy.lm import build_char_tokenizer

pytest.importorskip("fastapi")


def _run_file(tmp_path: Path, steps: int) -> Path:
    data = tmp_path / "ones.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "answer": "1"}) + "\n" for p in "0101"))
    tok = tmp_path / "tok"
    build_char_tokenizer(["01"]).save_pretrained(tok)
    run = tmp_path / "run.toml"
    run.write_text(
        f"""
[run]
name = "r"
output_dir = "{tmp_path / "runs"}"
threads = 1
[policy]
model = "tiny"
tokenizer = "{tok}"
hidden_size = 16
num_layers = 1
num_heads = 2
[data]
train = "{data}"
[generation]
max_new_tokens = 1
[grpo]
num_generations = 4
prompts_per_step = 2
max_steps = {steps}
[[verifiers]]
type = "numeric"
extract = "full"
"""
    )
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_review_page_answers_while_training(tmp_path: Path) -> None:
    run = _run_file(tmp_path, steps=60)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "trustgrpo.cli", "train", str(run), "--quiet"]
    proc = subprocess.Popen(
        [*cmd, "--review", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        seen = []
        found = None
        while found is None and len(seen) < 50:
            seen.append(proc.stdout.readline())
            found = re.search(r"review page: (http://127\.0\.0\.1:\d+)", seen[-1])
        assert found, "".join(seen)
        with urllib.request.urlopen(found[1] + "/login", timeout=10) as r:
            assert r.status == 200 and "review" in r.read().decode().lower()
        assert proc.poll() is None, "the review page must answer while training runs"
        rest, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, rest
    finally:
        proc.kill()
    time.sleep(0.2)
    with pytest.raises(OSError):  # the server went with the run
        urllib.request.urlopen(found[1] + "/login", timeout=2)


def test_review_flag_checks_its_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(_run_file(tmp_path, 1)), "--review", "nowhere"]) == 2
    assert "--review: expected HOST:PORT" in capsys.readouterr().err
