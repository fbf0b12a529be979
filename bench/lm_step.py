"""Speed of one language-model GRPO step: trustgrpo, TRL's ``GRPOTrainer``, a bare PyTorch loop.

    python bench/lm_step.py [--steps 3] [--warmup 1] [--repeats 3] [--threads 1]
                            [--workloads w1,w1-kl,w2,w3] [--arms ours,ours-off,trl,bare]

Arms, each starting from the same saved weights:

* ``ours``: ``trustgrpo.Trainer`` as a user runs it: signed ledger and monitors on;
* ``ours-off``: the same with ``ledger.enabled = false`` and ``monitors.enabled = false``
  (the difference is what recording and monitoring cost);
* ``trl``: ``trl.GRPOTrainer`` (1.16), float32, no gradient checkpointing (its default is on);
* ``bare``: a hand-written loop with no framework: the Hugging Face model's own forward and
  KV cache (each prompt encoded once, its cache repeated for its G samples), the clipped
  surrogate, AdamW. The "limit" a framework is measured against.

Equal work: the same model, prompts of the same token length, the same rewards (an exact
answer plus the share of digits, so that every group has a spread), G samples per prompt,
exactly ``max_new_tokens`` tokens per completion (no arm stops at end-of-sequence: trustgrpo
``stop_at_eos = false``, TRL ``min_new_tokens``, which keeps EOS from being sampled; the bare
loop never stops), one optimiser step per batch (``num_iterations = 1``), token-mean loss
(DAPO; TRL ``loss_type = "dapo"``), group-scaled advantages, AdamW at a constant learning
rate, gradient clipping at 1.0, the same torch threads. The tokens each arm generated per step
are measured and printed.

Workloads: ``w1`` 8 prompts × 8 completions of 6-token prompts, 32 new tokens, a 1.06 M
parameter Llama (hidden 128, 4 layers); ``w1-kl`` the same with β = 0.04 (a reference model);
``w2`` 4 prompts × 16 completions of 256-token prompts; ``w3`` workload 1 on a 33.6 M
parameter Llama (hidden 512, 8 layers). The slow workloads time fewer steps and repeats.

Interleaving, step by step: the arms of a repeat run in one process, each in its own thread,
and a baton lets exactly one of them work at a time, passed at the end of every step
(construction included, in turn). So every arm sees the same machine load to within a step,
which matters on a shared machine. A step's time runs from receiving the baton to the end of
the step (whatever a framework does between steps counts in the next one); the first
``--warmup`` steps of an arm are not counted. The arm order rotates between repeats. The
ledger writes from a background thread, which may keep working after ``ours`` passes the
baton: its CPU time is measured and reported beside the step time.

Figures: median seconds per step over every timed step (min–max), completions and generated
tokens per second from the median, and ratios of completions/s taken per repeat (the median
over repeats and their min–max). Peak memory: the peak RSS of each arm run once more alone,
for one step, in a fresh process (so that no arm inherits another's heap; each counts its
own libraries).

The default run takes about a quarter of an hour on 2 busy cores, most of it the large model
(``--workloads w1`` alone: about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for the hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from trustgrpo.policy.lm import _cache_keyword, _cache_of

ARMS = ("ours", "ours-off", "trl", "bare")
PHASES = ("rollout", "verify", "advantage", "record", "monitor", "update")


def exact_answer(completions: list[str], answer: list[str], **kwargs: Any) -> list[float]:
    """Reward 1: 1.0 when the completion is exactly the answer."""
    return [float(c.strip() == a) for c, a in zip(completions, answer, strict=True)]


def digit_share(completions: list[str], **kwargs: Any) -> list[float]:
    """Reward 2 (shaping): the share of digits in the completion, so that every group has a
    spread and every advantage is non-zero, as in a run that learns."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


REWARDS = (exact_answer, digit_share)
"""Every arm's reward: their sum (trustgrpo: a reward and a shaping component)."""


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    """One measured setting."""

    name: str
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    prompts: int = 8
    generations: int = 8
    prompt_tokens: int = 6
    new_tokens: int = 32
    beta: float = 0.0
    step_share: float = 1.0
    """Fraction of ``--steps`` this workload times (at least one step): its steps are slow."""
    max_repeats: int = 99
    """At most this many repeats (the large model's steps take tens of seconds)."""
    skip: tuple[str, ...] = ()
    """Arms not run (``ours-off`` on the large model: the ledger's cost does not grow with it)."""

    @property
    def batch(self) -> int:
        return self.prompts * self.generations

    def describe(self, params: int) -> str:
        return (
            f"{self.name}: Llama {params / 1e6:.2f} M params (hidden {self.hidden}, "
            f"{self.layers} layers), {self.prompts} prompts × {self.generations} completions, "
            f"{self.prompt_tokens}-token prompts, {self.new_tokens} new tokens, β = {self.beta}"
        )


WORKLOADS = {
    "w1": Workload("w1"),
    "w1-kl": Workload("w1-kl", beta=0.04),
    "w2": Workload(
        "w2", prompts=4, generations=16, prompt_tokens=256, step_share=0.34, max_repeats=2
    ),
    "w3": Workload(
        "w3", hidden=512, layers=8, heads=8, step_share=0.34, max_repeats=2, skip=("ours-off",)
    ),
}


@dataclass
class Setup:
    """What every arm of a workload shares: weights on disk, prompts, settings."""

    workload: Workload
    model_dir: Path
    data: Path
    rows: list[dict[str, str]]
    work: Path
    threads: int
    params: int


def _arith_rows(length: int) -> list[dict[str, str]]:
    """Arithmetic prompts of exactly ``length`` characters (tokens, with the character
    tokenizer): the shipped ones for 6, few-shot contexts cut to ``length`` otherwise."""
    from trustgrpo.tasks.arithmetic import make_problems

    problems, _ = make_problems(4000, 0, seed=0, max_operand=99)
    six = [p for p in problems if len(p["prompt"]) == 6]
    if length == 6:
        return [
            {"id": f"p{i}", "prompt": p["prompt"], "answer": p["answer"]} for i, p in enumerate(six)
        ]
    rng = random.Random(0)
    rows = []
    for i, p in enumerate(six[:512]):
        context = ""
        while len(context) < length:
            shot = rng.choice(problems)
            context += f"{shot['prompt']}{shot['answer']}\n"
        prompt = (context + p["prompt"])[-length:]
        rows.append({"id": f"p{i}", "prompt": prompt, "answer": p["answer"]})
    return rows


def prepare(work: Path, wl: Workload, threads: int) -> Setup:
    """Save the workload's initial weights and tokenizer, and its prompts."""
    from trustgrpo.config import PolicyConfig
    from trustgrpo.policy.lm import build_char_tokenizer, build_tiny_model

    model_dir = work / f"model-{wl.hidden}x{wl.layers}"
    if not (model_dir / "params.json").exists():
        tok = build_char_tokenizer([string.printable])
        cfg = PolicyConfig(hidden_size=wl.hidden, num_layers=wl.layers, num_heads=wl.heads)
        model: Any = build_tiny_model(cfg, tok, seed=0)
        model.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        (model_dir / "params.json").write_text(str(sum(p.numel() for p in model.parameters())))
    rows = _arith_rows(wl.prompt_tokens)
    data = work / f"prompts-{wl.prompt_tokens}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = int((model_dir / "params.json").read_text())
    return Setup(wl, model_dir, data, rows, work, threads, params)


# --------------------------------------------------------------------------- lockstep


class Baton:
    """Round-robin turns between arm threads: exactly one holds the baton at a time."""

    def __init__(self, arms: int) -> None:
        self.cond = threading.Condition()
        self.turn = 0
        self.done = [False] * arms

    def wait(self, arm: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == arm)

    def pass_on(self, arm: int, finished: bool = False) -> None:
        """Give the baton to the next arm that has not finished."""
        with self.cond:
            self.done[arm] = self.done[arm] or finished
            n = len(self.done)
            nxt = [(arm + k) % n for k in range(1, n + 1) if not self.done[(arm + k) % n]]
            self.turn = nxt[0] if nxt else -1
            self.cond.notify_all()


class Gate:
    """One arm's view of the baton: it times the arm's steps and passes the baton after
    each; the arm calls :meth:`begin` before its first step and :meth:`step_end` after each."""

    def __init__(self, baton: Baton, arm: int, warmup: int) -> None:
        self.baton, self.arm, self.warmup = baton, arm, warmup
        self.seconds: list[float] = []
        self.count = 0
        self.t0 = time.perf_counter()

    def begin(self) -> None:
        self.t0 = time.perf_counter()

    def step_end(self) -> bool:
        """Record the step, pass the baton, wait for it again; True if the step was timed."""
        now = time.perf_counter()
        self.count += 1
        timed = self.count > self.warmup
        if timed:
            self.seconds.append(now - self.t0)
        self.baton.pass_on(self.arm)
        self.baton.wait(self.arm)
        self.t0 = time.perf_counter()
        return timed


@dataclass
class Block:
    """One arm's run of consecutive steps."""

    seconds: list[float]
    """Wall time of each timed step."""
    tokens: float
    """Generated tokens per step (measured)."""
    phases: dict[str, list[float]] = field(default_factory=dict)
    """trustgrpo's ``time/<phase>`` of each timed step."""
    background: float = 0.0
    """CPU seconds per timed step of the ledger's writer thread."""


def _thread_cpu(native_id: int | None) -> float:
    """CPU seconds (user + system) a thread of this process has used (0 when unknown)."""
    if native_id is None:
        return 0.0
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(key: str = "VmRSS") -> float:
    m = re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


# --------------------------------------------------------------------------- arms


def run_ours(setup: Setup, gate: Gate, steps: int, record: bool) -> Block:
    """``trustgrpo.Trainer`` for ``warmup + steps`` steps (ledger and monitors on or off)."""
    from trustgrpo import Callback, RunInfo, StepBatch, Trainer
    from trustgrpo.config import from_dict

    wl = setup.workload
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    lengths: list[float] = []
    writer: dict[str, Any] = {"id": None, "cpu": 0.0, "total": 0.0}

    class Timing(Callback):
        def on_train_start(self, run: RunInfo) -> None:
            for t in threading.enumerate():
                if t.name == "trustgrpo-ledger":
                    writer["id"] = t.native_id
            gate.begin()

        def on_step_end(self, run: RunInfo, batch: StepBatch) -> bool | None:
            cpu = _thread_cpu(writer["id"])
            if gate.step_end():
                for p in PHASES:
                    phases[p].append(batch.metrics[f"time/{p}"])
                lengths.append(batch.metrics["completions/mean_length"])
                writer["total"] += cpu - writer["cpu"]
            writer["cpu"] = cpu
            return None

    raw = {
        "run": {
            "name": f"{wl.name}-{'on' if record else 'off'}-{time.time_ns()}",
            "output_dir": str(setup.work / "runs"),
            "seed": 0,
            "threads": setup.threads,
        },
        "policy": {"model": str(setup.model_dir)},
        "data": {"train": str(setup.data), "id_column": "id", "max_prompt_tokens": 1024},
        "generation": {"max_new_tokens": wl.new_tokens, "temperature": 1.0, "stop_at_eos": False},
        "grpo": {
            "num_generations": wl.generations,
            "prompts_per_step": wl.prompts,
            "max_steps": gate.warmup + steps,
            "learning_rate": 1e-4,
            "beta": wl.beta,
            "loss_aggregation": "token_mean",
            "scale_rewards": "group",
            "num_iterations": 1,
        },
        "reward": {"self_test": 0},
        "ledger": {"enabled": record},
        "monitors": {"enabled": record},
        "verifiers": [
            {"type": "lm_step:exact_answer"},
            {"type": "lm_step:digit_share", "role": "shaping"},
        ],
    }
    trainer = Trainer(from_dict(raw), callbacks=[Timing()], progress=False)
    trainer.train()
    shutil.rmtree(trainer.run_dir, ignore_errors=True)
    tokens = statistics.mean(lengths) * wl.batch
    return Block(gate.seconds, tokens, phases, writer["total"] / max(1, len(gate.seconds)))


def run_trl(setup: Setup, gate: Gate, steps: int) -> Block:
    """TRL's ``GRPOTrainer`` for ``warmup + steps`` steps, with the same settings."""
    import transformers
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trustgrpo.policy.lm import load_pretrained

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)  # TRL 1.16 on transformers 5
    wl = setup.workload
    lengths: list[float] = []

    class Timing(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            gate.begin()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            gate.step_end()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "completions/mean_length" in logs and state.global_step > gate.warmup:
                lengths.append(float(logs["completions/mean_length"]))

    _, tokenizer = load_pretrained(setup.model_dir)
    out = setup.work / f"trl-{time.time_ns()}"
    args = GRPOConfig(
        output_dir=str(out),
        num_generations=wl.generations,
        per_device_train_batch_size=wl.batch,
        gradient_accumulation_steps=1,
        max_completion_length=wl.new_tokens,
        generation_kwargs={"min_new_tokens": wl.new_tokens},
        max_steps=gate.warmup + steps,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        beta=wl.beta,
        loss_type="dapo",
        scale_rewards="group",
        num_iterations=1,
        temperature=1.0,
        max_grad_norm=1.0,
        gradient_checkpointing=False,
        bf16=False,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=str(setup.model_dir),
        processing_class=tokenizer,
        reward_funcs=list(REWARDS),  # type: ignore[arg-type]
        args=args,
        train_dataset=Dataset.from_list(setup.rows),
        callbacks=[Timing()],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log line
    torch.set_num_threads(setup.threads)  # the HF Trainer may have changed it
    trainer.train()
    shutil.rmtree(out, ignore_errors=True)
    return Block(gate.seconds, statistics.mean(lengths) * wl.batch)


# --------------------------------------------------------------------------- the bare loop


@torch.no_grad()
def _bare_generate(
    model: Any, ids: torch.Tensor, g: int, new: int, gen: torch.Generator
) -> torch.Tensor:
    """Sample ``new`` tokens for each of ``g`` copies of equal-length prompts ``ids``: the
    prompt is encoded once and its cache repeated."""
    kw = _cache_keyword(model)
    out = model(input_ids=ids, use_cache=True)
    cache = _cache_of(out)
    cache.batch_repeat_interleave(g)
    logits = out.logits[:, -1].repeat_interleave(g, 0)
    tokens = []
    for t in range(new):
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
        tokens.append(nxt)
        if t < new - 1:
            out = model(input_ids=nxt, use_cache=True, **{kw: cache})
            cache, logits = _cache_of(out), out.logits[:, -1]
    return torch.cat(tokens, 1)


def _bare_logprobs(model: Any, ids: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
    t = completion.shape[1]
    logits = model(input_ids=torch.cat([ids, completion], 1), logits_to_keep=t + 1).logits[:, :-1]
    return torch.log_softmax(logits.float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)


def _bare_step(
    model: Any,
    ref: Any,
    opt: torch.optim.Optimizer,
    tok: Any,
    rows: list[dict[str, str]],
    wl: Workload,
    gen: torch.Generator,
) -> None:
    """One GRPO step: sample, reward, group-scaled advantage, clipped surrogate, AdamW."""
    g = wl.generations
    ids = torch.tensor([tok.encode(r["prompt"], add_special_tokens=False) for r in rows])
    model.eval()
    completion = _bare_generate(model, ids, g, wl.new_tokens, gen)
    texts = tok.batch_decode(completion, skip_special_tokens=True)
    answers = [r["answer"] for r in rows for _ in range(g)]
    rewards = torch.tensor(
        [sum(v) for v in zip(*(f(completions=texts, answer=answers) for f in REWARDS), strict=True)]
    )
    rewards = rewards.view(-1, g)
    adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).view(
        -1, 1
    )
    full_ids = ids.repeat_interleave(g, 0)
    model.train()
    logp = _bare_logprobs(model, full_ids, completion)
    ratio = torch.exp(logp - logp.detach())
    per_token = -torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    if ref is not None:
        with torch.no_grad():
            ref_logp = _bare_logprobs(ref, full_ids, completion)
        d = ref_logp - logp
        per_token = per_token + wl.beta * (torch.exp(d) - d - 1)
    loss = per_token.mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def run_bare(setup: Setup, gate: Gate, steps: int) -> Block:
    """The hand-written loop for ``warmup + steps`` steps."""
    from trustgrpo.policy.lm import load_pretrained

    wl = setup.workload
    model, tok = load_pretrained(setup.model_dir)
    ref = load_pretrained(setup.model_dir)[0].eval().requires_grad_(False) if wl.beta > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    gate.begin()
    for step in range(gate.warmup + steps):
        rows = setup.rows[step * wl.prompts : (step + 1) * wl.prompts]
        _bare_step(model, ref, opt, tok, rows, wl, gen)
        gate.step_end()
    return Block(gate.seconds, float(wl.batch * wl.new_tokens))


# --------------------------------------------------------------------------- rounds


Runner = Callable[[Gate], Block]


def runners(setup: Setup, steps: int) -> dict[str, Runner]:
    """Each arm, given its gate."""
    return {
        "ours": lambda gate: run_ours(setup, gate, steps, record=True),
        "ours-off": lambda gate: run_ours(setup, gate, steps, record=False),
        "trl": lambda gate: run_trl(setup, gate, steps),
        "bare": lambda gate: run_bare(setup, gate, steps),
    }


def lockstep(arms: dict[str, Runner], warmup: int) -> dict[str, Block]:
    """Run the arms in threads, one step at a time each, in the given order."""
    names = list(arms)
    baton = Baton(len(names))
    results: dict[str, Block] = {}
    errors: list[BaseException] = []

    def work(i: int, name: str) -> None:
        baton.wait(i)
        try:
            torch.set_num_threads(torch.get_num_threads())
            results[name] = arms[name](Gate(baton, i, warmup))
        except BaseException as e:  # re-raised in the main thread
            errors.append(e)
        finally:
            baton.pass_on(i, finished=True)

    threads = [threading.Thread(target=work, args=(i, n), name=n) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def memory(setup: Setup, names: list[str]) -> dict[str, float]:
    """Peak RSS (MiB) of each arm run alone in a fresh process for one step (so that no arm
    inherits another's heap, and each counts its own libraries)."""
    out = {}
    for arm in names:
        cmd = [sys.executable, __file__, "--memory-of", arm, "--workloads", setup.workload.name]
        cmd += ["--work", str(setup.work), "--threads", str(setup.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"memory of {arm}: {done.stderr[-2000:]}")
        out[arm] = float(lines[-1])
    return out


def measure(
    setup: Setup, names: list[str], steps: int, warmup: int, repeats: int
) -> tuple[dict[str, list[Block]], dict[str, float]]:
    """Every arm ``repeats`` times, interleaved step by step, the order rotated each repeat;
    then the memory of each arm alone."""
    arms = runners(setup, steps)
    blocks: dict[str, list[Block]] = {a: [] for a in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        t0 = time.perf_counter()
        done = lockstep({a: arms[a] for a in order}, warmup)
        for a in names:
            blocks[a].append(done[a])
        medians = ", ".join(f"{a} {statistics.median(done[a].seconds):.3f}" for a in names)
        took = time.perf_counter() - t0
        print(
            f"   [{setup.workload.name} repeat {r + 1}/{repeats}, {took:.0f} s] s/step: {medians}"
        )
    return blocks, memory(setup, names)


# --------------------------------------------------------------------------- reporting


def _spread(xs: list[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(statistics.median(xs))} [{fmt.format(min(xs))}–{fmt.format(max(xs))}]"


def report(setup: Setup, blocks: dict[str, list[Block]], mem: dict[str, float]) -> None:
    """Print one workload's table."""
    wl = setup.workload
    print(f"\n== {wl.describe(setup.params)}")
    print(
        f"   equal work: {wl.batch} completions × {wl.new_tokens} tokens = "
        f"{wl.batch * wl.new_tokens} generated tokens per step in every arm (measured: tok/step), "
        f"num_iterations = 1, token-mean loss, {setup.threads} torch thread(s)"
    )
    head = f"{'s/step median [min–max]':<26} {'compl/s':>8} {'tok/s':>8} {'tok/step':>9}"
    print(f"   {'arm':<9} {head} {'peak RSS MiB':>13}")
    for arm, bs in blocks.items():
        secs = [s for b in bs for s in b.seconds]
        med = statistics.median(secs)
        tokens = statistics.mean(b.tokens for b in bs)
        print(
            f"   {arm:<9} {_spread(secs):<26} {wl.batch / med:>8.1f} {tokens / med:>8.0f} "
            f"{tokens:>9.0f} {mem[arm]:>13.0f}"
        )
    pairs = [("ours", "trl"), ("ours", "bare"), ("ours-off", "trl"), ("ours-off", "bare")]
    for a, b in [*pairs, ("trl", "bare")]:
        if a in blocks and b in blocks:
            ratios = [
                statistics.median(y.seconds) / statistics.median(x.seconds)
                for x, y in zip(blocks[a], blocks[b], strict=True)
            ]
            print(f"   completions/s {a} / {b}: {_spread(ratios, '{:.2f}')}×  (per repeat)")
    if "ours" in blocks and "ours-off" in blocks:
        cost = [
            100 * (statistics.median(x.seconds) / statistics.median(y.seconds) - 1)
            for x, y in zip(blocks["ours"], blocks["ours-off"], strict=True)
        ]
        step = statistics.median(s for b in blocks["ours"] for s in b.seconds)
        writer = 100 * statistics.mean(b.background for b in blocks["ours"]) / step
        print(
            f"   ledger + monitors: {_spread(cost, '{:+.1f}')} % of step time (per repeat), "
            f"plus the ledger writer thread's CPU beside the step: {writer:.1f} %"
        )
    for arm in ("ours", "ours-off"):
        if arm in blocks:
            _phase_shares(arm, blocks[arm])


def _phase_shares(arm: str, bs: list[Block]) -> None:
    total = sum(s for b in bs for s in b.seconds)
    shares = {p: sum(sum(b.phases[p]) for b in bs) / total for p in PHASES}
    shares["other"] = 1 - sum(shares.values())
    print(f"   phases of {arm}: " + ", ".join(f"{p} {100 * v:.1f}%" for p, v in shares.items()))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument(
        "--steps", type=int, default=3, help="timed steps per arm and repeat (w2, w3: a third)"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of an arm")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (w2, w3: at most 2)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads, every arm")
    p.add_argument("--workloads", default="w1,w1-kl,w2,w3", help=f"of {','.join(WORKLOADS)}")
    p.add_argument("--arms", default=",".join(ARMS), help=f"of {','.join(ARMS)}")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--memory-of", default="", help=argparse.SUPPRESS)  # see memory()
    args = p.parse_args(argv)
    names = [a for a in args.arms.split(",") if a]
    for flag, given, known in (
        ("--arms", names, ARMS),
        ("--workloads", args.workloads.split(","), tuple(WORKLOADS)),
    ):
        unknown = [x for x in given if x not in known]
        if unknown or not given:
            found = ",".join(unknown) or "none"
            p.error(f"{flag}: expected names from {','.join(known)}, found {found}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # "lm_step:digit_share"
    work = args.work or Path(tempfile.mkdtemp(prefix="lm_step-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    if args.memory_of:  # the child of memory()
        setup = prepare(work, WORKLOADS[args.workloads], args.threads)
        lockstep({args.memory_of: runners(setup, 1)[args.memory_of]}, warmup=0)
        print(_rss_mib("VmHWM"))
        return
    print(
        f"lm_step: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"torch {torch.__version__}, {args.threads} thread(s)"
    )
    try:
        for name in args.workloads.split(","):
            wl = WORKLOADS[name]
            setup = prepare(work, wl, args.threads)
            steps = max(1, round(args.steps * wl.step_share))
            repeats = min(args.repeats, wl.max_repeats)
            arms = [a for a in names if a not in wl.skip]
            report(setup, *measure(setup, arms, steps, args.warmup, repeats))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
