"""The embedded demo (``make demo`` / ``trustgrpo demo``).

1. Generate an arithmetic task with a fixed seed (train and held-out splits).
2. Warm-start a tiny Llama on it supervisedly (``trustgrpo sft``), deliberately briefly.
3. Measure held-out exact-match accuracy (greedy).
4. Train with GRPO and the exact numeric verifier; every reward is ledgered and signed.
5. Measure again, print before/after and where the run is.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from trustgrpo.config import Config, apply_overrides, from_dict
from trustgrpo.tasks.arithmetic import write_dataset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def demo_config(data_dir: Path, run_dir: Path, overrides: list[str] | None = None) -> Config:
    """The embedded demo run file, pointed at generated data and a run directory."""
    raw = tomllib.loads(resources.files("trustgrpo").joinpath("data/demo.toml").read_text())
    raw["data"]["train"] = str(data_dir / "train.jsonl")
    raw["data"]["eval"] = str(data_dir / "heldout.jsonl")
    raw["run"]["output_dir"] = str(run_dir.parent)
    raw["run"]["name"] = run_dir.name
    apply_overrides(raw, overrides or [])
    return from_dict(raw, source="trustgrpo/data/demo.toml")


def _free_dir(path: Path) -> Path:
    """``path`` if unused, else ``path-2``, ``path-3``...: an earlier demo is never overwritten."""
    if not path.exists():
        return path
    k = 2
    while path.with_name(f"{path.name}-{k}").exists():
        k += 1
    return path.with_name(f"{path.name}-{k}")


def run_demo(out: Path, *, progress: bool = True, steps: int | None = None) -> dict[str, Any]:
    """Run the whole demo; return the figures it printed."""
    from trustgrpo.evaluation import evaluate_model
    from trustgrpo.sft import warm_start
    from trustgrpo.trainer import Trainer

    t0 = time.perf_counter()
    run_dir = _free_dir(out)
    work = run_dir.with_name(run_dir.name + "-assets")
    data_dir = work / "data"
    write_dataset(data_dir, seed=0)
    overrides = [f"grpo.max_steps={steps}"] if steps else []
    cfg = demo_config(data_dir, run_dir, overrides)

    warm_dir = work / "warmstart"
    if not (warm_dir / "config.json").exists():
        print(f"[1/3] supervised warm start ({cfg.sft.steps} steps) -> {warm_dir}")
        warm_start(cfg, warm_dir, progress=progress)
    before = evaluate_model(cfg, warm_dir)["eval/accuracy"]
    print(f"      held-out accuracy after warm start: {before:.1%}")

    grpo_cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, model=str(warm_dir)))
    print(
        f"[2/3] GRPO, {cfg.grpo.max_steps} steps x {cfg.grpo.prompts_per_step} prompts x "
        f"{cfg.grpo.num_generations} completions -> {run_dir}"
    )
    result = Trainer(grpo_cfg, progress=progress).train()
    after = result.eval_accuracy if result.eval_accuracy is not None else float("nan")
    minutes = (time.perf_counter() - t0) / 60
    print("[3/3] result")
    print(
        f"      held-out exact-match accuracy: {before:.1%} -> {after:.1%} "
        f"({(after - before) * 100:+.1f} points)"
    )
    print(f"      run directory: {run_dir}  (ledger.db, ledger.pub, metrics.jsonl, checkpoints/)")
    print(f"      check it:      trustgrpo audit verify {run_dir}")
    print(f"      total time:    {minutes:.1f} min")
    figures = {"before": before, "after": after, "run_dir": str(run_dir), "minutes": minutes}
    (run_dir / "demo.json").write_text(json.dumps(figures, indent=1))
    return figures
