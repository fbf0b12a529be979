"""A ledger writer for the crash test: appends in batches until it is killed.

    python crash_writer.py RUN_DIR URL|- SEED

Every event's body holds ``n``, its own index (the writer starts counting at the size it
finds, so this holds across crashes and restarts). ``READY <size> <pid>`` names the writer
process (0: a thread). After each ``flush()`` returns, the writer
prints ``ACK <tree size>``: the test kills it with SIGKILL at a random moment and then checks
that every acknowledged event is in the reopened ledger, which must verify.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import types

# Only the ledger is needed: skip trustgrpo/__init__ (which loads torch) so the process
# starts in a fraction of a second and the kills land while it is writing.
_spec = importlib.util.find_spec("trustgrpo")
assert _spec is not None and _spec.submodule_search_locations is not None
_pkg = types.ModuleType("trustgrpo")
_pkg.__path__ = list(_spec.submodule_search_locations)
sys.modules["trustgrpo"] = _pkg

from trustgrpo.ledger.ledger import Ledger  # noqa: E402


def main() -> None:
    run_dir, url, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    ledger = Ledger.open(
        run_dir,  # type: ignore[arg-type]
        url=None if url == "-" else url,
        batch_size=rng.choice([8, 64, 512]),
        max_delay=rng.choice([0.001, 0.05]),
        background=rng.random() < 0.8,
        process=rng.random() < 0.5,  # with background: a writer process, not a thread
    )
    n = ledger.size()
    child = getattr(ledger._writer, "pid", None) or 0
    print(f"READY {n} {child}", flush=True)
    while True:
        for _ in range(rng.randint(1, 200)):
            h = ledger.put_blob(f"completion {n} " + "x" * rng.randint(0, 300))
            ledger.append("reward", {"n": n, "step": n // 100, "completion_blob": h})
            n += 1
        r = rng.random()
        if r < 0.3:
            ledger.sign(wait=False)
        elif r < 0.4:
            ledger.sign()
        if rng.random() < 0.6:
            print(f"ACK {ledger.flush()}", flush=True)


if __name__ == "__main__":
    main()
