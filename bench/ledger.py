"""Ledger throughput: appends/s on SQLite and PostgreSQL, and ``audit verify`` events/s.

    python bench/ledger.py [--events 100000] [--repeat 3] [--pg-url URL] [--no-pg]
    python bench/ledger.py --training [--steps 100] [--pairs 2] [--writer process|thread]

Every figure is measured in this run, next to its baseline, for two event sizes:

* *demo-sized*: the embedded arithmetic demo (a ~60-byte prompt shared by a group of 8, a
  ~30-byte completion, a reference);
* *LLM-sized*: a ~400-byte prompt and a ~700-byte completion.

Each reward event carries two verifier outcomes with details, its final reward and advantage
(~480 bytes of JSON body) and its three blobs; a checkpoint is signed every 256 events (a
training step). Rows:

* **plain SQLite**: the same rows (``json.dumps`` of the body, the same blobs with their
  SHA-256) inserted into plain tables with ``executemany`` in batches of the same size, WAL,
  ``synchronous=FULL``, all in one thread: what a plain logger of these rows costs (the
  baseline of the ratios).
* **ledger schema, pre-encoded rows**: the ledger's own store and schema, filled with the
  events already encoded, hashed and deduplicated before the clock starts: SQLite's share of
  an append (what is left is Python work per event).
* **ledger append**: ``put_blob`` + ``append`` — RFC 8785 canonical JSON, SHA-256 leaf and
  tree hashing, batched commits with ``synchronous=FULL`` — then ``flush`` and ``sign``; with
  the writer thread (``Ledger.open``'s default), the writer process (the trainer's default:
  the caller encodes while the child hashes and stores, on the other core) and in the
  caller's thread. Goal: >= 50,000 events/s.
* **audit verify**: :func:`trustgrpo.ledger.audit.verify` over the ledger just written
  (every leaf, the tree, every checkpoint's signature and consistency, every blob's hash), in
  this process alone and with its default helper processes (one process per CPU scans a
  share of the rows; :mod:`trustgrpo.ledger.scan`). Goal: >= 100,000 events/s.

With ``--training``: the training overhead of ledgering on the demo run (the embedded run file,
warm-started, monitors off in both arms), trained for ``--steps`` steps with the ledger on and
off, alternating, ``--pairs`` runs per arm (the two runs of a pair back to back with the same
seed), with ``--writer process`` (the default) or ``thread``. Prints the mean step time of each
arm, the step-time ratio on / off (goal: under 1.03) as the trimmed geometric mean of per-step
ratios and as the median over pairs, and the time spent inside the ledger callback's hooks
(copying the step's results and queueing them: the writer builds, encodes, hashes and stores
them beside the step).

Figures are the median of ``--repeat`` runs, in events per wall-clock second (the goals) and
per CPU-second of this process and its writer process (steadier when other work shares a
small machine; it leaves out the PostgreSQL server's own CPU). The load average is printed
with them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from trustgrpo.ledger import Ledger
from trustgrpo.ledger.audit import verify
from trustgrpo.ledger.store import SQLiteStore

_VOCABULARY = (
    "the of and to in is that for it as with was on be by this are from or an which at not "
    "have has but all were can one more if will their there so its also two three answer step "
    "sum total therefore compute first then add multiply divide result equals number value"
)
WORDS = _VOCABULARY.split()
BATCH = 4096
STEP_EVENTS = 256
SIZES = {"demo-sized": (60, 30), "LLM-sized": (400, 700)}

Event = tuple[str, str, str, dict[str, Any]]


def _text(rng: random.Random, n_chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < n_chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def make_events(
    n: int, seed: int = 0, prompt_chars: int = 400, completion_chars: int = 700
) -> list[Event]:
    """``(prompt, completion, reference, body)`` for ``n`` reward events (8 per group)."""
    rng = random.Random(seed)
    events = []
    prompt = reference = ""
    for i in range(n):
        if i % 8 == 0:
            prompt = _text(rng, prompt_chars)
            reference = str(rng.randint(0, 10**6))
        completion = _text(rng, completion_chars) + f" answer {rng.randint(0, 10**6)}"
        correct = rng.random() < 0.4
        body = {
            "step": i // STEP_EVENTS + 1,
            "prompt_id": f"train-{(i // 8) % 5000:05d}",
            "group_id": (i // 8) % 32,
            "index": i % 8,
            "num_tokens": rng.randint(20, 256),
            "truncated": rng.random() < 0.05,
            "outcomes": [
                {
                    "verifier": "math@3f2a9c1b7d0e",
                    "status": "correct" if correct else "incorrect",
                    "score": 1.0 if correct else 0.0,
                    "details": {"extracted": str(rng.randint(0, 999)), "expected": reference},
                    "duration_ms": round(rng.uniform(0.1, 5.0), 3),
                },
                {
                    "verifier": "format@aa11bb22cc33",
                    "status": "correct",
                    "score": 1.0,
                    "details": {"reason": "answer tag present"},
                    "duration_ms": round(rng.uniform(0.01, 0.2), 3),
                },
            ],
            "reward": 1.0 if correct else 0.1,
            "advantage": rng.gauss(0.0, 1.0),
        }
        events.append((prompt, completion, reference, body))
    return events


Rate = tuple[float, float]
"""(events per wall-clock second, events per CPU-second of this process and the writer
process it waited for)."""


def _clock() -> tuple[float, float]:
    t = os.times()  # children: a writer process, counted once it has been waited for
    return time.perf_counter(), t.user + t.system + t.children_user + t.children_system


def _rate(n: int, start: tuple[float, float], end: tuple[float, float] | None = None) -> Rate:
    wall, cpu = end or _clock()
    return n / (wall - start[0]), n / max(cpu - start[1], 1e-9)


def bench_append(
    run_dir: Path, url: str | None, events: list[Event], background: bool, process: bool = False
) -> Rate:
    ledger = Ledger.open(run_dir, url=url, background=background, batch_size=BATCH, process=process)
    put, append = ledger.put_blob, ledger.append
    t0 = _clock()
    for i, (prompt, completion, reference, body) in enumerate(events):
        body = dict(body)
        body["prompt_blob"] = put(prompt)
        body["completion_blob"] = put(completion)
        body["reference_blob"] = put(reference)
        body["metadata_blob"] = None
        append("reward", body)
        if i % STEP_EVENTS == STEP_EVENTS - 1:
            ledger.sign(wait=False)
    ledger.flush()
    ledger.sign()
    wall = time.perf_counter()
    ledger.close()  # a writer process exits: its CPU time is counted
    return _rate(len(events), t0, (wall, _clock()[1]))


def bench_plain_sqlite(path: Path, events: list[Event]) -> Rate:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (idx INTEGER PRIMARY KEY, kind TEXT, data BLOB)")
    db.execute("CREATE TABLE blobs (hash TEXT PRIMARY KEY, data BLOB)")
    t0 = _clock()
    rows: list[tuple[int, str, bytes]] = []
    blobs: list[tuple[str, bytes]] = []
    for i, (prompt, completion, reference, body) in enumerate(events):
        for text in (prompt, completion, reference):
            raw = text.encode()
            blobs.append((hashlib.sha256(raw).hexdigest(), raw))
        rows.append((i, "reward", json.dumps(body).encode()))
        if len(rows) >= BATCH or i == len(events) - 1:
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?)", blobs)
            db.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
            rows, blobs = [], []
    rate = _rate(len(events), t0)
    db.close()
    return rate


def bench_sqlite_only(path: Path, events: list[Event]) -> Rate:
    """The ledger's own schema filled with rows encoded and hashed *before* the clock starts:
    what SQLite alone takes to store these events."""
    rows: list[tuple[int, str, bytes, bytes]] = []
    blobs: list[tuple[str, bytes]] = []
    cuts: list[int] = []  # blobs[cuts[k]:cuts[k+1]] go with the k-th batch of rows
    seen: set[str] = set()
    for i, (prompt, completion, reference, body) in enumerate(events):
        if i % BATCH == 0:
            cuts.append(len(blobs))
        for text in (prompt, completion, reference):
            raw = text.encode()
            h = "sha256:" + hashlib.sha256(raw).hexdigest()
            if h not in seen:
                seen.add(h)
                blobs.append((h, raw))
        data = json.dumps({"body": body, "index": i, "kind": "reward", "ts": 0}).encode()
        rows.append((i, "reward", hashlib.sha256(b"\x00" + data).digest(), data))
    cuts.append(len(blobs))
    store = SQLiteStore(path)
    store.create()
    t0 = _clock()
    for k, start in enumerate(range(0, len(rows), BATCH)):
        with store.transaction():
            store.insert_blobs(blobs[cuts[k] : cuts[k + 1]])
            store.insert_events(rows[start : start + BATCH])
    rate = _rate(len(events), t0)
    store.close()
    return rate


def bench_verify(run_dir: Path, url: str | None, workers: int | None = None) -> tuple[Rate, int]:
    """The rate, and how many processes scanned (helpers only for 50,000 events or more)."""
    with Ledger.open_readonly(run_dir, url=url) as reader:
        t0 = _clock()
        report = verify(reader, workers=workers)
        rate = _rate(report.events, t0)
    if not report.ok:
        raise SystemExit(f"the benchmark ledger does not verify: {report.problems[0]}")
    return rate, report.processes


def _pg_url(base: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}schema=bench_{uuid.uuid4().hex[:10]}"


def _drop(url: str) -> None:
    from trustgrpo.ledger.store_postgres import PostgresStore

    store = PostgresStore(url, default_schema="unused")
    store.drop()
    store.close()


def measure(events: list[Event], repeat: int, pg: str | None) -> dict[str, list[Rate]]:
    out: dict[str, list[Rate]] = {}

    def add(name: str, rate: Rate) -> None:
        out.setdefault(name, []).append(rate)

    for r in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            add("plain SQLite executemany", bench_plain_sqlite(d / "plain.db", events))
            add("ledger schema, pre-encoded rows", bench_sqlite_only(d / "only.db", events))
            add("ledger append, SQLite, writer thread", bench_append(d / "a", None, events, True))
            rate = bench_append(d / "w", None, events, True, process=True)
            add("ledger append, SQLite, writer process", rate)
            add("ledger append, SQLite, caller thread", bench_append(d / "b", None, events, False))
            add("audit verify, SQLite, one process", bench_verify(d / "a", None, 1)[0])
            rate, n = bench_verify(d / "a", None)
            if n > 1:  # helpers scan ledgers of 50,000 events or more
                add(f"audit verify, SQLite, {n} processes", rate)
            if pg and r == 0:  # PostgreSQL once: it is slower and the point is the order
                url = _pg_url(pg)
                url2 = _pg_url(pg)
                try:
                    rate = bench_append(d / "p", url, events, True)
                    add("ledger append, PostgreSQL, writer thread", rate)
                    rate = bench_append(d / "q", url2, events, True, process=True)
                    add("ledger append, PostgreSQL, writer process", rate)
                    add("audit verify, PostgreSQL", bench_verify(d / "p", url)[0])
                finally:
                    _drop(url)
                    _drop(url2)
    return out


def _table(results: dict[str, dict[str, Rate]], title: str, col: int) -> None:
    names = list(next(iter(results.values())))
    width = max(map(len, names))
    print(f"\n{title:<{width}}" + "".join(f"  {label:>22}" for label in results))
    for name in names:
        cells = []
        for label in results:
            rate = results[label].get(name)
            base = results[label]["plain SQLite executemany"][col]
            if rate is None:
                cells.append(f"{'-':>22}")
                continue
            note = f" ({rate[col] / base:.2f}x)" if name.startswith("ledger append") else ""
            cells.append(f"{rate[col]:>13,.0f}{note:>9}")
        print(f"{name:<{width}}" + "".join(f"  {c:>22}" for c in cells))


def training_overhead(
    steps: int, pairs: int, sft_steps: int, work: Path | None, writer: str = "process"
) -> None:
    from _demo import HookTimer, paired_ratio, prepare, run_config, step_times
    from trustgrpo.ledger.callback import LedgerCallback
    from trustgrpo.trainer import Trainer

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = work or Path(tempfile.mkdtemp(prefix="trustgrpo-bench-ledger-"))
    work.mkdir(parents=True, exist_ok=True)
    data, warm = prepare(work, sft_steps)
    times: dict[bool, list[list[float]]] = {True: [], False: []}
    inside = 0.0
    events = 0
    for k in range(pairs):
        for on in (k % 2 == 0, k % 2 == 1):  # alternate which arm goes first
            run_dir = work / "runs" / f"{'on' if on else 'off'}-{k}"
            shutil.rmtree(run_dir, ignore_errors=True)
            overrides = [
                "monitors.enabled=false",
                f"ledger.enabled={'true' if on else 'false'}",
                f'ledger.writer="{writer}"',
            ]
            trainer = Trainer(run_config(data, warm, run_dir, steps, k, overrides), progress=False)
            cbs = [cb for cb in trainer.recorders if isinstance(cb, LedgerCallback)]
            if on != bool(cbs):
                raise SystemExit(f"expected the ledger {'on' if on else 'off'} in {run_dir}")
            timed = None
            if cbs:
                timed = HookTimer()
                timed.wrap(cbs[0], ("on_step_rewards", "on_step_end"))
            times[on].append(step_times(trainer)[1:])  # the first step warms caches up
            if timed is not None:
                inside += timed.seconds[""]
                with Ledger.open_readonly(run_dir) as reader:
                    events += reader.size()
    off = statistics.mean(t for run in times[False] for t in run)
    on_ = statistics.mean(t for run in times[True] for t in run)
    n = sum(map(len, times[True]))
    r = paired_ratio(times[True], times[False])
    print(
        f"demo: 16 prompts x 8 completions, {steps} steps x {pairs} runs per arm, monitors off, "
        f"ledger.writer = {writer}"
    )
    print(f"load average:        {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"events written:      {events / pairs:,.0f} per run")
    print(f"step time, off:      {off * 1000:.1f} ms (mean)")
    print(f"step time, on:       {on_ * 1000:.1f} ms (mean)")
    print(f"inside the callback: {inside / n * 1000:.2f} ms per step ({inside / n / off:.2%})")
    print(
        f"step-time ratio:     {r['per_step']:.3f} per step, paired (goal < 1.03); runs: "
        f"{r['median']:.3f} [{r['lo']:.3f}-{r['hi']:.3f}] (median [range] over pairs)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000, help="events per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "TRUSTGRPO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    ap.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    ap.add_argument("--training", action="store_true", help="training overhead on the demo")
    ap.add_argument("--steps", type=int, default=100, help="with --training")
    ap.add_argument("--pairs", type=int, default=2, help="with --training")
    ap.add_argument("--sft-steps", type=int, default=1500, help="with --training")
    ap.add_argument(
        "--work", type=Path, default=None, help="with --training: cache folder (default: temp)"
    )
    ap.add_argument(
        "--writer",
        choices=("process", "thread"),
        default="process",
        help="with --training: ledger.writer (default: process, the trainer's default)",
    )
    args = ap.parse_args(argv)
    if args.training:
        training_overhead(args.steps, args.pairs, args.sft_steps, args.work, args.writer)
        return 0
    pg = None if args.no_pg else args.pg_url
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"ledger benchmark: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load average {load:.2f}; {args.events:,} reward events per run, "
        f"median of {args.repeat}"
    )
    results: dict[str, dict[str, Rate]] = {}
    for label, (pc, cc) in SIZES.items():
        events = make_events(args.events, prompt_chars=pc, completion_chars=cc)
        body = sum(len(json.dumps(b)) for *_, b in events[:1000]) / 1000
        print(
            f"  {label}: body ~{body:.0f} B JSON, prompt ~{pc} B (shared by 8), completion ~{cc} B"
        )
        runs = measure(events, args.repeat, pg)
        results[label] = {
            k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
            for k, v in runs.items()
        }
    for title, col in (("events per second (wall clock)", 0), ("events per CPU-second", 1)):
        _table(results, title, col)
    print(
        "x: ratio to plain SQLite in the same run. Goals: append >= 50,000/s, verify >= "
        "100,000/s (wall clock). CPU-seconds count this process and its writer process (not "
        "the PostgreSQL server), so they move less when other work shares the machine."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
