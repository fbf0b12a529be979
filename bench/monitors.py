"""Monitor overhead on the demo, and the false-alarm rate of clean demo runs.

    python bench/monitors.py [--steps 300] [--pairs 2] [--sft-steps 1500] [--work DIR]
    python bench/monitors.py --false-alarms [--seeds 20] [--steps 100]

Overhead: the embedded demo's run file (``trustgrpo/data/demo.toml``: 16 prompts × 8
completions per step, a 2-layer, 128-wide Llama), warm-started (``--sft-steps``, the demo's
own 1,500 by default, cached in ``--work``), trained for ``--steps`` steps with the monitors
on and off, in the same process, alternating (``--pairs`` times), ledger on in both. "On"
is every default detector plus a held-out verifier (``exact``) on the demo's held-out split
and group bias on the ``op`` column, so that every detector that can run on the demo runs.
Two figures:

* **monitor share**: seconds spent inside the monitor callback (its ``on_step_rewards`` and
  ``on_step_end``) divided by the step time with monitors off: what the monitors cost, and
  the figure the < 2% goal is about;
* **step-time ratio**: step time on / off, end to end: the trimmed geometric mean of the
  per-step ratios (a pair's two runs have the same seed, so step ``i`` does the same work in
  both) and the median over pairs of the ratio of mean step times. Both move by a few
  percent with the machine's load; read them next to the load average.

``--steps`` defaults to 300, the demo's own run (its evaluation every 50 steps included, in
both arms).

False alarms: ``--seeds`` GRPO runs of the demo (one shared warm start, seeds 0..N-1) of
``--steps`` steps each, all detectors on; prints alerts per detector per 1,000 steps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _demo import HookTimer, paired_ratio, prepare, run_config, step_times
from trustgrpo.config import Config
from trustgrpo.trainer import Trainer


def config(data: Path, warm: Path, run_dir: Path, steps: int, seed: int, monitors: bool) -> Config:
    overrides = [f"monitors.enabled={'true' if monitors else 'false'}"]
    if monitors:
        overrides += [
            'monitors.held_out.verifier={type = "exact"}',
            'monitors.group_bias.column="op"',
        ]
    return run_config(data, warm, run_dir, steps, seed, overrides)


def _timer(cb: Any) -> HookTimer:
    """Times the monitor callback's per-step hooks (key ``""``) and each detector's (its
    name)."""
    timer = HookTimer()
    timer.wrap(cb, ("on_step_rewards", "on_step_end"))
    for d in cb.monitor.detectors:
        timer.wrap(d, ("on_rewards", "on_metrics"), d.name)
    return timer


def one_run(cfg: Config) -> tuple[list[float], HookTimer | None, Trainer]:
    """Step times (s), the monitors' timings, and the trainer."""
    trainer = Trainer(cfg, progress=False)
    timed = _timer(trainer.monitors[0]) if trainer.monitors else None
    return step_times(trainer), timed, trainer


def overhead(args: argparse.Namespace, work: Path) -> None:
    data, warm = prepare(work, args.sft_steps)
    on_steps: list[list[float]] = []
    off_steps: list[list[float]] = []
    inside = 0.0
    per_detector: Counter[str] = Counter()
    for k in range(args.pairs):
        for monitors in (k % 2 == 0, k % 2 == 1):  # alternate which arm goes first
            run_dir = work / "runs" / f"{'on' if monitors else 'off'}-{k}"
            shutil.rmtree(run_dir, ignore_errors=True)
            steps, timed, _ = one_run(config(data, warm, run_dir, args.steps, k, monitors))
            steps = steps[1:]  # the first step warms caches up
            (on_steps if monitors else off_steps).append(steps)
            if timed is not None:
                inside += timed.seconds.pop("", 0.0)
                per_detector.update(timed.seconds)
            shutil.rmtree(run_dir, ignore_errors=True)
    off = statistics.mean(t for run in off_steps for t in run)
    on = statistics.mean(t for run in on_steps for t in run)
    r = paired_ratio(on_steps, off_steps)
    n = args.pairs * args.steps
    share = inside / n / off
    print(f"demo: 16 prompts x 8 completions, {args.steps} steps x {args.pairs} runs per arm")
    print(f"load average:       {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"step time, off:     {off * 1000:.1f} ms (mean)")
    print(f"step time, on:      {on * 1000:.1f} ms (mean)")
    print(f"inside monitors:    {inside / (args.pairs * args.steps) * 1000:.2f} ms per step")
    print(f"monitor share:      {share:.2%} of the step time (goal < 2%)")
    print(
        f"step-time ratio:    {r['per_step']:.3f} per step, paired; runs: {r['median']:.3f} "
        f"[{r['lo']:.3f}-{r['hi']:.3f}] (median [range] over pairs)"
    )
    for name, secs in per_detector.most_common():
        print(f"  {name:20s} {secs / n * 1000:6.3f} ms per step  {secs / n / off:.2%}")


def false_alarms(args: argparse.Namespace, work: Path) -> None:
    data, warm = prepare(work, args.sft_steps)
    counts: Counter[str] = Counter()
    total = 0
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        run_dir = work / "runs" / f"fa-{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)
        _, _, trainer = one_run(config(data, warm, run_dir, args.steps, seed, True))
        alerts = trainer.monitors[0].alerts
        counts.update(a.detector for a in alerts)
        total += args.steps
        for a in alerts:
            print(f"  seed {seed} step {a.step}: {a.detector}/{a.check} {a.statistic:.3g}")
        shutil.rmtree(run_dir, ignore_errors=True)
    minutes = (time.perf_counter() - t0) / 60
    print(f"{args.seeds} clean demo runs x {args.steps} steps = {total} steps ({minutes:.1f} min)")
    from trustgrpo.monitors import DETECTORS

    for name in DETECTORS:
        rate = 1000 * counts[name] / total
        print(f"  {name:20s} {counts[name]:3d} alerts  {rate:.2f} per 1,000 steps")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=None, help="default: 300, or 100 per seed")
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--sft-steps", type=int, default=1500, help="warm start (the demo's: 1500)")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--false-alarms", action="store_true")
    p.add_argument("--work", type=Path, default=None, help="cache folder (default: a temp dir)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="trustgrpo-bench-monitors-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.false_alarms:
        args.steps = args.steps or 100
        false_alarms(args, work)
    else:
        args.steps = args.steps or 300
        overhead(args, work)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
