"""Sandbox throughput: sandboxed runs per second against a bare ``subprocess.run``.

Measures, in the same process, for a trivial program and a 100-line program with 10 asserts:

- one worker: bare ``subprocess.run([python, "-c", code])`` and a sandboxed run, alternated
  run by run (``--runs`` pairs), so that a busy machine slows both alike; runs/s from the
  median time, overhead = median sandboxed time / median bare time;
- a pool of ``--workers`` (default: the machine's cores): batches for ``--seconds``, best of
  ``--rounds``, bare through a thread pool and sandboxed through ``SandboxPool``;

and prints whether the goals hold: at least 25 sandboxed runs/s of the trivial program with
the pool, and per-run overhead within 2x of the bare subprocess.

    python bench/sandbox.py [--runs 150] [--seconds 2] [--rounds 3] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from trustgrpo.sandbox import Limits, Sandbox, SandboxPool

TRIVIAL = "print('ok')\n"

HUNDRED_LINES = '''\
"""A 100-line program with 10 asserts: small functions over lists, strings and numbers."""


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def primes(limit):
    sieve = [True] * (limit + 1)
    sieve[0] = sieve[1] = False
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            for j in range(i * i, limit + 1, i):
                sieve[j] = False
    return [i for i, p in enumerate(sieve) if p]


def is_palindrome(text):
    cleaned = [c.lower() for c in text if c.isalnum()]
    return cleaned == cleaned[::-1]


def word_counts(text):
    counts = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def merge_sort(items):
    if len(items) <= 1:
        return list(items)
    mid = len(items) // 2
    left, right = merge_sort(items[:mid]), merge_sort(items[mid:])
    out = []
    i = j = 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out + left[i:] + right[j:]


def binary_search(items, target):
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


def rle(text):
    out = []
    for ch in text:
        if out and out[-1][0] == ch:
            out[-1][1] += 1
        else:
            out.append([ch, 1])
    return "".join(f"{c}{n}" for c, n in out)


def matrix_mult(a, b):
    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]


assert fib(20) == 6765
assert gcd(84, 36) == 12
assert primes(30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
assert is_palindrome("A man, a plan, a canal: Panama")
assert word_counts("a b a") == {"a": 2, "b": 1}
assert merge_sort([5, 2, 9, 1, 5, 6]) == [1, 2, 5, 5, 6, 9]
assert binary_search([1, 3, 5, 7, 9, 11], 7) == 3
assert rle("aaabccdddd") == "a3b1c2d4"
assert matrix_mult([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]
assert sum(primes(1000)) == 76127
print("10 asserts passed")
'''


def _rate(run_batch: Callable[[int], None], batch: int, seconds: float) -> float:
    """Runs per second of ``run_batch(batch)`` repeated for about ``seconds``."""
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run_batch(batch)
        done += batch
    return done / (time.perf_counter() - t0)


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=150, help="alternated pairs, one worker")
    ap.add_argument("--seconds", type=float, default=2.0, help="per pool configuration and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the best one is reported")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool size")
    ap.add_argument("--backend", default="auto", choices=["auto", "bwrap", "process"])
    args = ap.parse_args()

    box = Sandbox(backend=args.backend)
    pool = SandboxPool(args.workers, sandbox=box)
    limits = Limits(timeout_s=10)
    print(f"sandbox: {box.describe()}")
    print(f"bare:    {sys.executable} -c ...   cores: {os.cpu_count()}   pool: {args.workers}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")

    threads = ThreadPoolExecutor(args.workers)

    def bare(code: str, workers: int) -> Callable[[int], None]:
        def one(_: object = None) -> None:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
            assert out.returncode == 0, out.stderr

        def batch(n: int) -> None:
            if workers == 1:
                for _ in range(n):
                    one()
            else:
                list(threads.map(one, range(n)))

        return batch

    def boxed(code: str, workers: int) -> Callable[[int], None]:
        def batch(n: int) -> None:
            if workers == 1:
                results = [box.run_with(code, stdin="", files={}, limits=limits) for _ in range(n)]
            else:
                results = [f.result() for f in [pool.submit(code, limits=limits) for _ in range(n)]]
            assert all(r.ok for r in results), results

        return batch

    programs = (("trivial", TRIVIAL), ("100-line", HUNDRED_LINES))
    best: dict[tuple[str, str, int], float] = {}
    for prog, code in programs:  # one worker: alternate bare and sandboxed runs
        times: dict[str, list[float]] = {"bare": [], "sandbox": []}
        fns = {"bare": bare(code, 1), "sandbox": boxed(code, 1)}
        for i in range(args.runs + 5):
            for kind, fn in fns.items():
                t0 = time.perf_counter()
                fn(1)
                if i >= 5:  # warm-up
                    times[kind].append(time.perf_counter() - t0)
        for kind, ts in times.items():
            best[(prog, kind, 1)] = 1.0 / statistics.median(ts)
    if args.workers > 1:
        pooled = {
            (prog, kind, args.workers): (bare if kind == "bare" else boxed)(code, args.workers)
            for prog, code in programs
            for kind in ("bare", "sandbox")
        }
        for _ in range(args.rounds):
            for key, fn in pooled.items():
                batch = 4 * key[2]
                fn(batch)  # warm-up
                best[key] = max(best.get(key, 0.0), _rate(fn, batch, args.seconds))
    pool.close()
    threads.shutdown()
    print(f"load average after:  {os.getloadavg()[0]:.2f}")

    print(f"\n{'program':10s} {'runner':8s} {'workers':>7s} {'runs/s':>8s} {'ms/run':>8s}")
    for (prog, kind, w), rate in sorted(
        best.items(), key=lambda kv: (kv[0][0] != "trivial", kv[0][2])
    ):
        print(f"{prog:10s} {kind:8s} {w:7d} {rate:8.1f} {1000 / rate:8.1f}")
    print()
    ok = True
    for prog in ("trivial", "100-line"):
        for w in sorted({1, args.workers}):
            ratio = best[(prog, "bare", w)] / best[(prog, "sandbox", w)]
            print(f"overhead {prog:8s} workers={w}: {ratio:.2f}x the bare subprocess per run")
            if w == 1:
                ok &= ratio <= 2.0
    pool_rate = best[("trivial", "sandbox", args.workers)]
    ok &= pool_rate >= 25
    print(f"\ngoal: >= 25 runs/s trivial with the pool: {pool_rate:.1f}")
    print("goal: per-run overhead <= 2x bare (one worker)")
    print("GOALS MET" if ok else "GOALS NOT MET")


if __name__ == "__main__":
    main()
