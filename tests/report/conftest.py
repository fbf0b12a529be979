"""A real short training run (and a copy with human review events) to build reports from.

The run is the integration tests' tiny model over "01" prompts, with two verifiers (an exact
numeric reward and a shaping regex), held-out evaluations every two steps, and a saturation
monitor tuned to fire at every step, so every section of the report has something real in
it. ``reviewed_run`` adds what the review tool will write: labels, an override and a decision
on an alert, with hostile text in them (the report must escape it).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from trustgrpo import Trainer
from trustgrpo.config import load
from trustgrpo.ledger import Ledger, LedgerReader
from trustgrpo.ledger.events import feedback_body, override_body
from trustgrpo.policy.lm import build_char_tokenizer

RUN_FILE = """
[run]
name = "report-run"
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
max_steps = 6
learning_rate = 0.01
checkpoint_every = 3
eval_every = 2

[[verifiers]]
type = "numeric"
extract = "full"

[[verifiers]]
name = "starts_with_1"
type = "regex"
pattern = "1"
mode = "search"
role = "shaping"
weight = 0.1

[monitors]
cooldown_steps = 1

[monitors.saturation]
window = 1
threshold = 0.1
action = "review"
"""

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # report_oracle is imported by the tests as a top-level module
    sys.path.insert(0, str(HERE))

HOSTILE = '<img src="https://evil.example/x.png"><script>alert(1)</script>'


def make_run(root: Path) -> Path:
    """Train the tiny run; returns its run directory."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / "ones.jsonl"
    rows = [{"prompt": p, "answer": "1"} for p in ["0", "1", "00", "11", "01"]]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_char_tokenizer(["01"]).save_pretrained(root / "tok")
    path = root / "run.toml"
    path.write_text(RUN_FILE.format(out=root / "runs", tok=root / "tok", data=data))
    return Trainer(load(path), progress=False).train().run_dir


def add_review(run_dir: Path) -> None:
    """Append labels, overrides and a decision, as the review tool would."""
    with LedgerReader.open_readonly(run_dir) as reader:
        events = list(reader.events())
    rewards = [e for e in events if e.kind == "reward"]
    alerts = [e for e in events if e.kind == "alert"]
    assert len(rewards) >= 12 and alerts, "the run must have rewards and alerts"
    ledger = Ledger.open(run_dir)
    verdicts = ["correct", "incorrect", "correct", "incorrect", "correct", "unsure"]
    for k, (ev, verdict) in enumerate(zip(rewards[:12], verdicts * 2, strict=True)):
        reviewer = "alice" if k % 2 == 0 else HOSTILE
        ledger.append("feedback", feedback_body(ev.index, reviewer, verdict, f"label {k}"))
    ledger.append("feedback", feedback_body(events[0].index, "alice", "correct", "not a reward"))
    ledger.append("feedback", feedback_body(rewards[0].index, "alice", "incorrect", "relabel"))
    ledger.append("override", override_body(rewards[1].index, "bob", 1.0, HOSTILE))
    ledger.append("override", override_body(rewards[2].index, "alice", 0.0, "wrong digit"))
    ledger.append(
        "decision",
        {"alert": alerts[0].index, "decision": "continue", "reviewer": "carol", "reason": HOSTILE},
    )
    ledger.sign()
    ledger.close()


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"plain": run without review, "reviewed": the same run with review events}``."""
    root = tmp_path_factory.mktemp("report")
    plain = make_run(root / "train")
    reviewed = root / "reviewed"
    shutil.copytree(plain, reviewed)
    add_review(reviewed)
    return {"plain": plain, "reviewed": reviewed}
