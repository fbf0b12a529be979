"""Compliance report speed: ``trustgrpo report`` on a ledger of 100,000 reward events.

    python bench/report.py [--events 100000] [--repeat 3] [--keep DIR]

The ledger is synthetic but real: it is written by the trainer's own
:class:`~trustgrpo.ledger.callback.LedgerCallback` (so every event has exactly the layout a
training run writes), from the embedded demo's run file (two-digit arithmetic, 16 prompts x 8
completions per step, the ``numeric`` verifier plus an overlong penalty as shaping), with
outcomes scored by the real verifiers, group-relative advantages, step metrics with held-out
evaluations every 50 steps, weights checkpoints every 100 steps, a signed checkpoint per step,
monitor alerts (``Alert.to_body()``), and human labels, overrides and a pause decision.
Only the policy is simulated: its completions are drawn so that accuracy rises over the run.

Rows, each the median of ``--repeat`` runs, measured in this run:

* **read events**: iterate and parse every event (``LedgerReader.events()``): the floor for
  anything that reads the whole ledger;
* **audit verify**: :func:`trustgrpo.ledger.audit.verify` alone (the report includes it);
* **report (HTML)**: :func:`trustgrpo.report.build_report`: one pass over the events,
  ``audit verify``, a replay sample of 32 reward events, four matplotlib plots, the HTML.

Goal: the HTML report in under 10 seconds for 100,000 reward events.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROMPTS_PER_STEP = 16
GROUP = 8


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_ledger(run_dir: Path, n_events: int = 100_000, seed: int = 0) -> dict[str, Any]:
    """Write a demo-shaped run's ledger with ``n_events`` reward events into ``run_dir``."""
    from trustgrpo.advantage import group_advantages
    from trustgrpo.callbacks import CheckpointInfo, RunInfo, StepBatch
    from trustgrpo.config import from_dict
    from trustgrpo.ledger import Ledger
    from trustgrpo.ledger.callback import LedgerCallback
    from trustgrpo.ledger.events import feedback_body, override_body
    from trustgrpo.monitors import Alert
    from trustgrpo.tasks.arithmetic import write_dataset
    from trustgrpo.verifiers import Sample, build_reward

    data_dir = run_dir.with_name(run_dir.name + "-data")
    train_path, eval_path = write_dataset(data_dir, seed=seed)
    raw = tomllib.loads(resources.files("trustgrpo").joinpath("data/demo.toml").read_text())
    raw["run"].update(name=run_dir.name, output_dir=str(run_dir.parent))
    raw["data"].update(train=str(train_path), eval=str(eval_path))
    raw["grpo"].update(max_steps=-(-n_events // (PROMPTS_PER_STEP * GROUP)), checkpoint_every=100)
    raw["verifiers"].append(
        {"type": "overlong", "role": "shaping", "weight": 0.1, "max_length": 6, "buffer": 2}
    )
    raw["monitors"] = {"saturation": {"threshold": 0.5}}
    cfg = from_dict(raw, source="bench/report.py")
    reward = build_reward(cfg)
    rows = [json.loads(line) for line in train_path.read_text().splitlines()]
    run = RunInfo(
        run_dir=run_dir,
        config=cfg.to_dict(),
        start_step=0,
        resumed=False,
        provenance={
            "code": {"trustgrpo": "0.1.0", "git": "0" * 40},
            "packages": {"python": platform.python_version(), "numpy": np.__version__},
            "hardware": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": 1},
            "model": {"source": "synthetic", "initial_sha256": "ab" * 32},
            "data": {
                name: {"path": str(p), "sha256": _sha256(p), "rows": n}
                for name, p, n in (("train", train_path, len(rows)), ("eval", eval_path, 300))
            },
            "verifiers": reward.inventory(),
        },
    )
    rng = np.random.default_rng(seed)
    ledger = Ledger.open(run_dir, origin="trustgrpo/bench")
    cb = LedgerCallback(ledger)
    cb.on_train_start(run)
    written = 0
    step = 0
    while written < n_events:
        step += 1
        n = min(PROMPTS_PER_STEP * GROUP, n_events - written)
        p_correct = 0.3 + 0.6 * min(1.0, written / n_events)
        samples = []
        for i in range(n):
            row = rows[(step * PROMPTS_PER_STEP + i // GROUP) % len(rows)]
            ok = rng.random() < p_correct
            text = row["answer"] if ok else row["answer"] + "0"
            samples.append(
                Sample(
                    prompt_id=row["id"],
                    group_id=i // GROUP,
                    index=i % GROUP,
                    prompt=row["prompt"],
                    completion=text,
                    reference=row["answer"],
                    metadata={"op": row["op"]},
                    num_tokens=len(text) + 1,
                    truncated=False,
                )
            )
        scored = reward.score(samples)
        rewards = scored.rewards
        adv = group_advantages(rewards, GROUP) if n % GROUP == 0 else np.zeros(n)
        metrics: dict[str, float] = {
            "reward/mean": float(np.nanmean(rewards)),
            "reward/std": float(np.nanstd(rewards)),
            "loss": float(rng.normal(0, 0.05)),
            "kl": 0.0,
            "entropy": float(1.5 - step / 1000),
            **{f"time/{p}": 0.01 for p in ("rollout", "verify", "advantage", "record", "update")},
            **{f"verifier/{k}": float(v) for k, v in scored.counts.items()},
        }
        if step % 50 == 0 or written + n >= n_events:
            metrics["eval/accuracy"] = round(p_correct * 0.9, 4)
            metrics["eval/reward_mean"] = round(p_correct * 0.9, 4)
        batch = StepBatch(step, samples, scored.outcomes, rewards, adv, GROUP, metrics)
        cb.on_step_rewards(run, batch)
        if step % 97 == 0:  # an alert, as the monitors write it
            alert = Alert(
                step=step,
                detector="saturation",
                check="fraction",
                severity="review",
                statistic=0.55,
                threshold=0.5,
                evidence=(1, 2, 3),
                action="review",
                message="55% of groups had no reward variance",
            )
            ledger.append("alert", alert.to_body())
            if step == 97:  # a person looked at the first one
                index = ledger.flush() - 1
                decision = {
                    "alert": index,
                    "decision": "continue",
                    "reviewer": "carol",
                    "reason": "the task is easy early on",
                }
                ledger.append("decision", decision)
        cb.on_step_end(run, batch)
        if step % 100 == 0:
            sha = hashlib.sha256(str(step).encode()).hexdigest()
            ckpt = CheckpointInfo(step, run_dir / "checkpoints" / f"step-{step}", sha)
            cb.on_checkpoint(run, ckpt)
        written += n
    for k in range(200):  # human labels on the first step's reward events, two overrides
        ledger.append(
            "feedback", feedback_body(1 + k, "alice", "correct" if k % 3 else "incorrect")
        )
    ledger.append("override", override_body(5, "bob", 0.0, "answer has a stray digit"))
    ledger.append("override", override_body(9, "bob", 1.0, "verifier too strict"))
    cb.on_train_end(run, {"steps": step, "stopped_early": False, "metrics": metrics})
    ledger.close()
    return {"steps": step, "reward_events": written}


def _median_time(fn: Any, repeat: int) -> tuple[float, Any]:
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000, help="reward events (default 100000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--keep", metavar="DIR", help="build the ledger here and keep it")
    args = ap.parse_args(argv)

    from trustgrpo.ledger import LedgerReader
    from trustgrpo.ledger.audit import verify
    from trustgrpo.report import build_report

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.keep or tmp) / "bench-run"
        if run_dir.exists():
            ap.error(f"{run_dir} exists: remove it, or --keep another folder")
        t0 = time.perf_counter()
        info = build_ledger(run_dir, args.events)
        build_s = time.perf_counter() - t0

        def read() -> int:
            with LedgerReader.open_readonly(run_dir) as reader:
                return sum(1 for _ in reader.events())

        def audit() -> bool:
            with LedgerReader.open_readonly(run_dir) as reader:
                return verify(reader).ok

        out = run_dir / "report.html"
        read_s, n = _median_time(read, args.repeat)
        verify_s, ok = _median_time(audit, args.repeat)
        report_s, result = _median_time(lambda: build_report(run_dir, out=out), args.repeat)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"ledger: {info['reward_events']:,} reward events, {n:,} events, {info['steps']} steps "
            f"(written in {build_s:.1f} s); python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, load average {load:.2f}"
        )
        print(f"{'':24}{'seconds':>10}{'events/s':>14}{'x read':>9}")
        for name, s in (
            ("read events", read_s),
            ("audit verify", verify_s),
            ("report (HTML)", report_s),
        ):
            print(f"{name:24}{s:10.2f}{n / s:14,.0f}{s / read_s:9.2f}")
        size = out.stat().st_size
        print(f"report: {size / 1e6:.2f} MB, verify ok: {ok and result.verified}")
        goal = report_s < 10.0
        print(f"goal (< 10 s for 100,000 reward events): {'met' if goal else 'MISSED'}")
        return 0 if goal or args.events != 100_000 else 1


if __name__ == "__main__":
    sys.exit(main())
