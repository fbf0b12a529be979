"""``trustgrpo audit ...``: exit codes (0 holds, 1 does not, 2 bad usage), text and --json."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from trustgrpo.ledger import Ledger
from trustgrpo.ledger.cli import add_audit_commands, main
from trustgrpo.ledger.merkle import MerkleTree, leaf_hash
from trustgrpo.verifiers.base import Outcome

COMMANDS = ["verify", "replay", "trace", "proof", "check-proof", "export", "redact"]


def make_run(run_dir: Path, url: str | None = None, version: str | None = None) -> list[str]:
    """A small run whose rewards came from the registry's ``exact`` verifier; returns the
    completion blob hashes. ``version`` records another version than the installed one."""
    from trustgrpo.verifiers.base import Sample
    from trustgrpo.verifiers.registry import build_verifier

    spec = {"type": "exact", "name": "exact", "weight": 1.0, "role": "reward"}
    verifier = build_verifier(dict(spec))
    hashes = []
    with Ledger.open(run_dir, url=url) as ledger:
        ledger.append(
            "run_started", {"config": {"verifiers": [spec]}, "provenance": {}, "start_step": 0}
        )
        for s in (1, 2):
            for i, completion in enumerate(["4", "5"]):
                sample = Sample("p0", 0, i, "2+2=", completion, "4")
                (o,) = verifier.score([sample])
                if version is not None:
                    o = Outcome(o.score, o.status, f"exact@{version}", o.details)
                h = ledger.put_blob(completion)
                hashes.append(h)
                ledger.append(
                    "reward",
                    {
                        "step": s,
                        "prompt_id": "p0",
                        "group_id": 0,
                        "index": i,
                        "prompt_blob": ledger.put_blob("2+2="),
                        "completion_blob": h,
                        "reference_blob": ledger.put_blob("4"),
                        "outcomes": [o.to_json()],
                        "reward": o.score,
                        "advantage": 0.5 if i == 0 else -0.5,
                    },
                )
            ledger.append("step", {"step": s, "metrics": {"loss": 1.0}})
            ledger.sign()
            ledger.append("checkpoint", {"step": s, "weights_sha256": "ab" * 32})
        ledger.sign()
    return hashes


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["audit", *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="trustgrpo")
    add_audit_commands(parser.add_subparsers(dest="command"))
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            parser.parse_args(["audit", name, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "--json" in text and len(text) > 200, name
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["audit"])
    assert e.value.code == 2


def test_verify(tmp_path: Path, store_url: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir, store_url)
    url = ["--url", store_url] if store_url else []
    code, out = run(capsys, "verify", str(run_dir), *url, "--deep")
    assert code == 0 and "OK: everything verifies" in out
    saved = tmp_path / "kept.note"
    code, out = run(capsys, "verify", str(run_dir), *url, "--json", "--save-checkpoint", str(saved))
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["events"] == 9 and data["signed_size"] == 9
    assert saved.read_text().startswith(data["key"].split("+")[0] + "\n9\n")
    # more events and a new checkpoint later: the kept checkpoint still verifies against it
    with Ledger.open(run_dir, url=store_url) as ledger:
        ledger.append("feedback", {"event": 1, "reviewer": "r", "verdict": "ok", "reason": ""})
        ledger.sign()
    code, out = run(capsys, "verify", str(run_dir), *url, "--checkpoint", str(saved))
    assert code == 0, out


def test_verify_reports_tampering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    run_dir = tmp_path / "run"
    make_run(run_dir)
    db = sqlite3.connect(run_dir / "ledger.db")
    (data,) = db.execute("SELECT data FROM events WHERE idx = 5").fetchone()
    db.execute(
        "UPDATE events SET data = ? WHERE idx = 5", (data.replace(b'"step":2', b'"step":3'),)
    )
    db.commit()
    db.close()
    code, out = run(capsys, "verify", str(run_dir))
    assert code == 1
    assert "FAILED: event 5: leaf hash expected" in out and "found" in out
    code, out = run(capsys, "verify", str(run_dir), "--json")
    assert code == 1 and json.loads(out)["first_problem"].startswith("event 5: leaf hash")


def test_verify_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustgrpo.ledger import scan

    run_dir = tmp_path / "run"
    make_run(run_dir)
    monkeypatch.setattr(scan, "PARALLEL_MIN_EVENTS", 0)
    code, out = run(capsys, "verify", str(run_dir), "--workers", "2", "--json")
    assert code == 0 and json.loads(out)["events"] == 9 and json.loads(out)["processes"] == 2
    code, out = run(capsys, "verify", str(run_dir), "--workers", "2")
    assert code == 0 and "events/s, 2 processes)" in out
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as e:
            run(capsys, "verify", str(run_dir), "--workers", bad)
        assert e.value.code == 2
        assert f"--workers: expected an integer >= 1, found '{bad}'" in capsys.readouterr().err


def test_proof_and_check_proof(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir)
    proof = tmp_path / "proof.json"
    code, out = run(
        capsys, "proof", str(run_dir), "--event", "2", "--checkpoint", "2", "-o", str(proof)
    )
    assert code == 0 and "event 2" in out
    pub = str(run_dir / "ledger.pub")
    code, out = run(capsys, "check-proof", str(proof), "--key", pub)
    assert code == 0 and out.startswith("OK: event 2 (reward)")
    code, out = run(capsys, "check-proof", str(proof), "--key", pub, "--json")
    assert code == 0 and json.loads(out)["leaf_index"] == 2
    code, out = run(capsys, "proof", str(run_dir), "--event", "0", "--json")  # to stdout
    assert code == 0 and json.loads(out)["leaf_index"] == 0
    bad = json.loads(proof.read_text())
    bad["leaf_index"] = 1
    proof.write_text(json.dumps(bad))
    code, out = run(capsys, "check-proof", str(proof), "--key", pub)
    assert code == 1 and out.startswith("FAILED: ")
    code, out = run(capsys, "proof", str(run_dir), "--event", "99")
    assert code == 2 and "expected an index in [0, 9)" in out


def test_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir)
    code, out = run(
        capsys, "export", str(run_dir), "--format", "jsonl", "-o", str(tmp_path / "e.jsonl")
    )
    assert code == 0 and "wrote 9 events" in out
    lines = (tmp_path / "e.jsonl").read_bytes().splitlines()
    code, out = run(capsys, "verify", str(run_dir), "--json")
    assert MerkleTree(leaf_hash(x) for x in lines).root().hex() == json.loads(out)["root"]
    code, out = run(capsys, "export", str(run_dir), "--format", "jsonl")  # stdout
    assert code == 0 and out.encode().splitlines() == lines
    code, out = run(
        capsys,
        "export",
        str(run_dir),
        "--format",
        "parquet",
        "-o",
        str(tmp_path / "e.parquet"),
        "--json",
    )
    assert code == 0 and json.loads(out)["events"] == 9
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.column_names == ["index", "kind", "ts", "step", "leaf_hash", "event"]
    assert table.column("index").to_pylist() == list(range(9))
    assert table.column("step").to_pylist()[:3] == [None, 1, 1]
    assert [
        hashlib.sha256(b"\x00" + e.encode()).hexdigest() for e in table.column("event").to_pylist()
    ] == table.column("leaf_hash").to_pylist()
    code, out = run(capsys, "export", str(run_dir), "--format", "parquet")  # default path
    assert code == 0 and pq.read_table(run_dir / "ledger.parquet").num_rows == 9
    code, out = run(capsys, "export", str(run_dir), "--format", "parquet", "-o", "-")
    assert code == 2


def test_redact(tmp_path: Path, store_url: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    hashes = make_run(run_dir, store_url)
    if store_url:  # the run file names the store: the commands find it there
        (run_dir / "run.toml").write_text(f'[ledger]\nurl = "{store_url}"\n')
    code, out = run(capsys, "redact", str(run_dir), "--blob", hashes[1], "--reason", "PII")
    assert code == 0 and out.startswith("redacted")
    code, out = run(capsys, "redact", str(run_dir), "--blob", hashes[1], "--json")
    assert code == 0 and json.loads(out)["redacted"] is False
    code, out = run(capsys, "verify", str(run_dir), "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["redacted_blobs"] == 1
    code, out = run(capsys, "redact", str(run_dir), "--blob", "sha256:" + "0" * 64)
    assert code == 2 and "no blob" in out
    code, out = run(capsys, "redact", str(run_dir), "--blob", "nothex")
    assert code == 2


def test_trace_and_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir)
    code, out = run(capsys, "trace", str(run_dir), "--checkpoint", "2", "--top", "2")
    assert code == 0 and "checkpoint of step 2" in out and "4 reward events" in out
    code, out = run(capsys, "trace", str(run_dir), "--checkpoint", "2", "--json")
    assert code == 0 and json.loads(out)["reward_events"] == 4
    code, out = run(capsys, "trace", str(run_dir), "--checkpoint", "7")
    assert code == 2 and "no checkpoint event for step 7" in out
    code, out = run(capsys, "replay", str(run_dir))
    assert code == 0 and "match 4" in out
    code, out = run(capsys, "replay", str(run_dir), "--sample", "2", "--step", "1", "--json")
    assert code == 0 and json.loads(out)["counts"] == {"match": 2}


def test_replay_reports_a_changed_verifier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir, version="0ld0ld0ld0ld")
    code, out = run(capsys, "replay", str(run_dir))
    assert code == 1
    assert "version_mismatch" in out and "version expected 0ld0ld0ld0ld (recorded)" in out


@pytest.mark.parametrize("command", ["verify", "replay", "trace", "proof", "export", "redact"])
def test_missing_run_directory_is_bad_usage(tmp_path: Path, command: str, capsys: Any) -> None:
    extra = {
        "trace": ["--checkpoint", "1"],
        "proof": ["--event", "0"],
        "export": ["--format", "jsonl"],
        "redact": ["--blob", "sha256:" + "0" * 64],
    }.get(command, [])
    code, out = run(capsys, command, str(tmp_path / "nope"), *extra)
    assert code == 2 and "not found" in out
    (tmp_path / "empty").mkdir()
    code, out = run(capsys, command, str(tmp_path / "empty"), *extra)
    assert code == 2 and "no ledger" in out
    assert not (tmp_path / "empty" / "ledger.db").exists()
