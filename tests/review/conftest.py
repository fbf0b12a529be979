"""Runs to review: a real tiny training run, and a synthetic ledger with hostile texts.

``review_flaws`` (a flaky verifier, for a run that pauses) is importable as a top-level
module, also from a training subprocess (``PYTHONPATH``).
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

XSS_SCRIPT = '<script>document.title="pwned";alert(1)</script>'
XSS_IMG = "<img src=x onerror=\"document.title='pwned'\">"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiny_raw(tmp: Path, name: str = "run", steps: int = 4, **sections: Any) -> dict[str, Any]:
    """A raw run file (dict) for a tiny run: answer "1" to prompts over "01"."""
    from trustgrpo.policy.lm import build_char_tokenizer

    tok = tmp / "tok"
    if not tok.exists():
        build_char_tokenizer(["01"]).save_pretrained(tok)
    data = tmp / "ones.jsonl"
    if not data.exists():
        rows = [{"prompt": p, "answer": "1"} for p in ["0", "1", "00", "11", "01", "10"]]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw: dict[str, Any] = {
        "run": {"name": name, "output_dir": str(tmp / "runs"), "seed": 3, "threads": 1},
        "policy": {
            "model": "tiny",
            "tokenizer": str(tok),
            "hidden_size": 16,
            "num_layers": 1,
            "num_heads": 2,
        },
        "data": {"train": str(data), "eval": str(data)},
        "generation": {"max_new_tokens": 2},
        "grpo": {
            "num_generations": 4,
            "prompts_per_step": 4,
            "max_steps": steps,
            "learning_rate": 0.01,
            "eval_every": 2,
        },
        "verifiers": [{"type": "numeric", "extract": "full"}],
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return raw


def train_tiny(tmp: Path, **kw: Any) -> Path:
    from trustgrpo.config import from_dict
    from trustgrpo.trainer import Trainer

    return Trainer(from_dict(tiny_raw(tmp, **kw)), progress=False).train().run_dir


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny training run (real trainer, verifier and ledger)."""
    return train_tiny(tmp_path_factory.mktemp("real"))


def make_synthetic_run(run_dir: Path, steps: int = 6, group: int = 4) -> dict[str, Any]:
    """A ledger written the way the trainer writes one, with hostile texts: completions with
    ``<script>`` and ``<img onerror>``, HTML in verifier details, ids and alert messages.

    Three components: ``exact`` (reward), ``judge`` (reward, scores in [0, 1], so some
    samples sit near the boundary and disagree with ``exact``) and ``fmt`` (shaping). Alerts:
    a ``review`` alert pointing at the hostile samples, a ``warn`` and a ``pause`` alert
    without a decision. Returns indices of interest.
    """
    from trustgrpo.ledger import Ledger

    comps = [
        {"id": "exact@1a2b3c", "name": "exact", "role": "reward", "type": "exact"},
        {"id": "judge@<b>j</b>", "name": "judge", "role": "reward", "type": "function"},
        {"id": "fmt@9f8e", "name": "fmt", "role": "shaping", "type": "regex"},
    ]
    out: dict[str, Any] = {"hostile": [], "rewards": []}
    with Ledger.open(run_dir) as ledger:
        ledger.append(
            "run_started",
            {
                "config": {"run": {"name": run_dir.name}},
                "provenance": {"verifiers": comps},
                "start_step": 0,
                "ledger": {
                    "origin": ledger.verifier_key.name,
                    "key": ledger.verifier_key.to_vkey(),
                },
            },
        )
        n = 1
        for step in range(1, steps + 1):
            for g in range(2):
                prompt = f"What is {step} + {g}? <i>answer in digits</i>"
                ph = ledger.put_blob(prompt)
                rh = ledger.put_blob(str(step + g))
                for i in range(group):
                    hostile = step == 2 and g == 0 and i < 2
                    completion = (
                        (XSS_SCRIPT if i == 0 else XSS_IMG) + f" {step + g}"
                        if hostile
                        else str(step + g + (i % 2)) + " " * i
                    )
                    exact = completion.strip().endswith(str(step + g))
                    judge = [0.9, 0.55, 0.2, 0.45][(i + step) % 4]
                    body = {
                        "step": step,
                        "prompt_id": f"p{g}<u>",
                        "group_id": g,
                        "index": i,
                        "prompt_blob": ph,
                        "completion_blob": ledger.put_blob(completion),
                        "reference_blob": rh,
                        "metadata_blob": None,
                        "num_tokens": 2 + i + step,
                        "truncated": i == 3,
                        "outcomes": [
                            {
                                "verifier": "exact@1a2b3c",
                                "status": "correct" if exact else "incorrect",
                                "score": 1.0 if exact else 0.0,
                                "details": {"extracted": completion[-8:], "note": "<b>bold?</b>"},
                                "duration_ms": 0.1,
                            },
                            {
                                "verifier": "judge@<b>j</b>",
                                "status": "correct" if judge >= 0.5 else "incorrect",
                                "score": judge,
                                "details": {"why": XSS_IMG if hostile else "ok"},
                                "duration_ms": 3.0,
                            },
                            {
                                "verifier": "fmt@9f8e",
                                "status": "correct",
                                "score": 0.1,
                                "details": {},
                                "duration_ms": 0.0,
                            },
                        ],
                        "reward": (1.0 if exact else 0.0) + 0.5 * judge + 0.1,
                        "advantage": 0.0,
                    }
                    ledger.append("reward", body)
                    out["rewards"].append(n)
                    if hostile:
                        out["hostile"].append(n)
                    n += 1
            metrics = {"reward/mean": 0.5 + step / 20, "step": step}
            if step % 2 == 0:
                metrics["eval/accuracy"] = 0.3 + step / 20
            ledger.append(
                "step",
                {"step": step, "num_samples": 2 * group, "group_size": group, "metrics": metrics},
            )
            n += 1
            if step == 2:
                ledger.append(
                    "alert",
                    {
                        "step": 2,
                        "detector": "canaries",
                        "check": "exploit<script>",
                        "severity": "review",
                        "statistic": 1.0,
                        "threshold": 0.0,
                        "evidence": list(out["hostile"]),
                        "action": "review",
                        "message": f"known exploit scored correct: {XSS_SCRIPT}",
                        "details": {},
                    },
                )
                out["review_alert"] = n
                n += 1
            if step == 3:
                ledger.append(
                    "alert",
                    {
                        "step": 3,
                        "detector": "length_bias",
                        "check": "rho",
                        "severity": "warn",
                        "statistic": 0.41,
                        "threshold": 0.3,
                        "evidence": [],
                        "action": "warn",
                        "message": "reward tracks completion length (rho 0.41)",
                        "details": {},
                    },
                )
                n += 1
            ledger.sign(wait=False)
        ledger.append(
            "checkpoint", {"step": steps, "weights_sha256": "ab" * 32, "path": "checkpoints/x"}
        )
        n += 1
        ledger.append(
            "alert",
            {
                "step": steps,
                "detector": "nondeterminism",
                "check": "rescore",
                "severity": "pause",
                "statistic": 0.25,
                "threshold": 0.0,
                "evidence": out["rewards"][-2:],
                "action": "pause",
                "message": "re-scored samples changed score: training waits for a decision",
                "details": {},
            },
        )
        out["pause_alert"] = n
        n += 1
        ledger.sign(wait=True)
    return out


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    run = tmp_path_factory.mktemp("synthetic") / "hostile-run"
    return run, make_synthetic_run(run)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module (Debian's, never a downloaded one)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def add_reviewer() -> Callable[..., str]:
    from trustgrpo.review.auth import Reviewers

    def add(run: Path, name: str, role: str = "reviewer") -> str:
        return Reviewers(run).add(name, role)

    return add
