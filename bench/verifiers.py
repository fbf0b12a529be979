"""Verifier throughput: the ``math`` verifier against calling math-verify directly, and the pool.

    python bench/verifiers.py [--pairs 1000] [--repeats 3]

Every figure is measured in this run, next to its baseline, on the same 1,000
(completion, reference) pairs mixed like competition answers (integers, fractions against
decimals, roots, expressions, sets, intervals, in ``\\boxed{}``; a third of them wrong; every
reference distinct).

Each measurement runs in a fresh process that first warms up on 100 other pairs (imports,
math-verify's parser construction, SymPy's first-use costs, pool start-up), then times the
1,000 pairs once; the figure is the median over ``--repeats`` processes. A fresh process per
measurement keeps SymPy's and math-verify's caches from carrying one side's work to the other.

* **direct**: ``verify(parse("$" + ref + "$"), parse(completion))`` per pair, math-verify's
  timers off (its fastest way), and with its default timers (as most callers use it).
* **trustgrpo, 1 process**: ``MathVerifier(workers=1).score(samples)``: extraction, a
  per-sample timer, typed outcomes with details. Goal: at most 10% slower than direct.
* **trustgrpo, pool**: ``MathVerifier(workers=N)`` with a warm pool, as in training (the pool
  lives for the run); its start-up is reported apart. Also by batch size, which sets
  ``pool_min_batch``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from trustgrpo.verifiers import MathVerifier, Sample
from trustgrpo.verifiers import pool as vpool


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``(completion, reference)`` pairs, mixed like competition maths answers: 40% integers,
    20% fractions against decimals, 10% roots, 10% expressions, 10% sets, 10% intervals;
    about a third are wrong. Every reference is distinct."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        kind = i % 10
        wrong = rng.random() < 0.33
        a, b = rng.randint(1, 500), rng.randint(501, 1000)
        uniq = seed * n + i
        if kind < 4:  # integer
            ref = str(a * b + uniq)
            ans = str(a * b + uniq + (1 if wrong else 0))
        elif kind < 6:  # fraction vs decimal
            ref = f"\\frac{{{a}}}{{{b + uniq}}}"
            ans = f"{a / (b + uniq) + (0.1 if wrong else 0):.8f}"
        elif kind == 6:  # root
            ref = f"{a}\\sqrt{{{b}}}"
            ans = f"\\sqrt{{{a * a * b if not wrong else a * b}}}"
        elif kind == 7:  # expression
            ref = f"{a}x + {b + uniq}"
            ans = f"{b + uniq} + {a + wrong}x"
        elif kind == 8:  # set
            ref = f"\\{{{a}, {b}, {uniq}\\}}"
            ans = f"\\{{{uniq}, {b}, {a + wrong}\\}}"
        else:  # interval
            ref = f"[{a}, {b + uniq})"
            ans = f"[{a}, {b + uniq})" if not wrong else f"({a}, {b + uniq}]"
        completion = (
            f"We compute step by step. First {a} and {b}, then simplify. "
            f"The answer is $\\boxed{{{ans}}}$."
        )
        pairs.append((completion, ref))
    return pairs


def direct(pairs: list[tuple[str, str]], timers: bool) -> list[bool]:
    from math_verify import parse, verify

    kw: dict[str, Any] = {} if timers else {"parsing_timeout": None}
    vkw: dict[str, Any] = {} if timers else {"timeout_seconds": None}
    return [verify(parse(f"${r}$", **kw), parse(c, **kw), **vkw) for c, r in pairs]


def samples_of(pairs: list[tuple[str, str]]) -> list[Sample]:
    return [Sample(f"p{i}", i, 0, "", c, r) for i, (c, r) in enumerate(pairs)]


def measure(mode: str, n: int, seed: int, sizes: list[int]) -> dict[str, Any]:
    """One measurement in this (fresh) process: warm up, then time ``n`` pairs of ``seed``."""
    workers = vpool.machine_workers()
    verifier = MathVerifier(workers=1 if mode == "local" else workers, pool_min_batch=1)
    verifier.prepare()  # imports math-verify and silences its "timers off" warning
    warm = make_pairs(100, seed=10_000 + seed)
    t0 = time.perf_counter()
    if mode.startswith("direct"):
        direct(warm, timers=mode == "direct_timers")
        run: Callable[[list[tuple[str, str]]], list[Any]] = lambda p: direct(  # noqa: E731
            p, timers=mode == "direct_timers"
        )
    else:
        verifier.score(samples_of(warm))
        run = lambda p: [(o.status, o.score) for o in verifier.score(samples_of(p))]  # noqa: E731
    warm_s = time.perf_counter() - t0
    pairs = make_pairs(n, seed=seed)
    t0 = time.perf_counter()
    result = run(pairs)
    seconds = time.perf_counter() - t0
    by_size = {}
    for size in sizes:
        part = make_pairs(size, seed=50_000 + 100 * size + seed)
        t0 = time.perf_counter()
        run(part)
        by_size[size] = time.perf_counter() - t0
    vpool.shutdown()
    return {"seconds": seconds, "warm_s": warm_s, "result": result, "by_size": by_size}


def spawn(mode: str, n: int, seed: int, sizes: list[int]) -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter and return what it printed."""
    cmd = [sys.executable, __file__, "--measure", mode, "--pairs", str(n), "--seed", str(seed)]
    cmd += ["--sizes", ",".join(map(str, sizes))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def pool_startup() -> float:
    """Seconds to start the pool and load the verifier into every worker, in this process."""
    workers = vpool.machine_workers()
    v = MathVerifier(workers=workers, pool_min_batch=1)
    t0 = time.perf_counter()
    vpool.get_pool(workers).start()
    v.score(samples_of(make_pairs(4 * workers, seed=77)))
    t = time.perf_counter() - t0
    vpool.shutdown()
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--measure", default="", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        sizes = [int(x) for x in args.sizes.split(",") if x]
        print(json.dumps(measure(args.measure, args.pairs, args.seed, sizes)))
        return
    n, sizes = args.pairs, [4, 8, 16, 32, 64, 128]
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.repeats):  # interleaved, so drift in the machine hits every mode
        for mode in ("direct", "direct_timers", "local", "pool"):
            runs.setdefault(mode, []).append(spawn(mode, n, seed=r, sizes=sizes))

    def med(mode: str) -> float:
        return statistics.median(x["seconds"] for x in runs[mode])

    t_direct, t_timers, t_local, t_pool = (
        med(m) for m in ("direct", "direct_timers", "local", "pool")
    )
    agree = sum(
        (st == "correct") == v
        for a, b in zip(runs["local"], runs["direct"], strict=True)
        for (st, _), v in zip(a["result"], b["result"], strict=True)
    )
    same = all(a["result"] == b["result"] for a, b in zip(runs["local"], runs["pool"], strict=True))
    workers = vpool.machine_workers()
    print(f"math verifier: {n} pairs; median of {args.repeats} fresh, warmed-up processes each")
    print(f"  direct math-verify, timers off   {n / t_direct:6.0f} pairs/s  ({t_direct:.3f} s)")
    print(f"  direct math-verify, its timers   {n / t_timers:6.0f} pairs/s  ({t_timers:.3f} s)")
    print(f"  trustgrpo MathVerifier, 1 proc   {n / t_local:6.0f} pairs/s  ({t_local:.3f} s)")
    print(
        f"  overhead vs direct, timers off:  {100 * (t_local / t_direct - 1):+.1f}%  (goal <= +10%)"
    )
    print(f"  overhead vs direct, its timers:  {100 * (t_local / t_timers - 1):+.1f}%")
    print(f"  same verdict as direct: {agree}/{n * args.repeats} pairs")
    print(f"process pool: {workers} workers on {workers} cores, warm")
    print(f"  trustgrpo MathVerifier, pool     {n / t_pool:6.0f} pairs/s  ({t_pool:.3f} s)")
    print(f"  speed-up over 1 process: x{t_local / t_pool:.2f}; same outcomes, same order: {same}")
    print(f"  start-up: {pool_startup():.2f} s once per process (forkserver, imports, first load)")
    print("  by batch size: 1 process ms | pool ms")
    for size in sizes:
        a = statistics.median(x["by_size"][str(size)] for x in runs["local"])
        b = statistics.median(x["by_size"][str(size)] for x in runs["pool"])
        print(f"    {size:4d}: {1000 * a:8.1f} | {1000 * b:8.1f}  (x{a / b:.2f})")


if __name__ == "__main__":
    main()
