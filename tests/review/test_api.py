"""The JSON API and the form endpoints over HTTP on 127.0.0.1: sessions, CSRF, roles, what
each write records, and that refused or bad writes record nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trustgrpo.cli import main
from trustgrpo.ledger import LedgerReader

requests = pytest.importorskip("requests")
pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def server(synthetic_run: tuple[Path, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    from trustgrpo.review.auth import Reviewers
    from trustgrpo.review.server import serve_in_background

    run, info = synthetic_run
    reviewers = Reviewers(run)
    tokens = {"alice": reviewers.add("alice"), "victor": reviewers.add("victor", "viewer")}
    handle = serve_in_background(run, port=0)
    try:
        yield {"url": handle.url, "run": run, "tokens": tokens, **info}
    finally:
        handle.stop()
    assert not handle.running


def _login(server: dict[str, Any], who: str) -> tuple[Any, str]:
    s = requests.Session()
    r = s.post(server["url"] + "/api/session", json={"token": server["tokens"][who]})
    assert r.status_code == 200, r.text
    assert r.json()["reviewer"] == who
    return s, r.json()["csrf"]


def _size(run: Path) -> int:
    with LedgerReader.open_readonly(run) as reader:
        return reader.size()


def test_reads_need_a_session(server: dict[str, Any]) -> None:
    url = server["url"]
    r = requests.get(url + "/api/summary")
    assert r.status_code == 401 and "no valid session" in r.json()["error"]
    r = requests.get(url + "/queue", allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fqueue"
    r = requests.post(url + "/api/session", json={"token": "tgr_nope"})
    assert r.status_code == 401 and r.json() == {"error": "unknown token"}
    assert requests.get(url + "/openapi.json").json()["info"]["title"] == "trustgrpo review"
    assert requests.get(url + "/docs").status_code == 404  # no CDN-loading Swagger UI


def test_session_cookie_and_security_headers(server: dict[str, Any]) -> None:
    r = requests.post(server["url"] + "/api/session", json={"token": server["tokens"]["alice"]})
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    s, _ = _login(server, "alice")
    page = s.get(server["url"] + "/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"


def test_refused_writes_record_nothing(server: dict[str, Any]) -> None:
    url, run = server["url"], server["run"]
    event = server["rewards"][0]
    body = {"verdict": "incorrect"}
    before = _size(run)

    r = requests.post(f"{url}/api/items/{event}/labels", json=body)  # no session
    assert r.status_code == 401
    r = requests.post(f"{url}/items/{event}/label", data={"verdict": "incorrect", "csrf": "x"})
    assert r.status_code == 401 and "log in" in r.text.lower()

    s, csrf = _login(server, "alice")
    for headers in [{}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": csrf[:-1]}]:
        r = s.post(f"{url}/api/items/{event}/labels", json=body, headers=headers)
        assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = s.post(f"{url}/items/{event}/label", data={"verdict": "incorrect", "csrf": "forged"})
    assert r.status_code == 403 and "CSRF token" in r.text
    r = s.post(
        f"{url}/api/items/{event}/labels",
        json=body,
        headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]

    v, vcsrf = _login(server, "victor")  # read-only
    assert v.get(f"{url}/api/items/{event}").status_code == 200
    r = v.post(f"{url}/api/items/{event}/labels", json=body, headers={"X-CSRF-Token": vcsrf})
    assert r.status_code == 403 and "read-only" in r.json()["error"]
    assert "Your label" in v.get(f"{url}/items/{event}").text
    assert 'name="verdict"' not in v.get(f"{url}/items/{event}").text

    bad: list[tuple[Any, int, str]] = [
        ({"verdict": "maybe"}, 422, "verdict"),
        ({"verdict": "correct", "score": 2.0}, 400, "say why"),
        ({"verdict": "correct", "score": 1e12, "reason": "r"}, 422, "score"),
        ({"verdict": "correct", "extra": 1}, 422, "extra"),
        ({"verdict": "correct", "reason": "x" * 5000}, 422, "reason"),
    ]
    for payload, status, word in bad:
        r = s.post(f"{url}/api/items/{event}/labels", json=payload, headers={"X-CSRF-Token": csrf})
        assert r.status_code == status and word in r.json()["error"], (payload, r.text)
    raw = b'{"verdict": "correct", "reason": "\\ud800"}'  # a lone surrogate
    r = s.post(
        f"{url}/api/items/{event}/labels",
        data=raw,
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "unicode" in r.json()["error"]
    r = s.post(f"{url}/api/items/0/labels", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404 and "'run_started' event" in r.json()["error"]
    r = s.post(f"{url}/api/items/99999/labels", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404 and "the ledger holds" in r.json()["error"]
    r = s.post(f"{url}/items/{event}/label", data={"csrf": csrf, "score": "abc"})
    assert r.status_code == 400 and "verdict" in r.text

    assert _size(run) == before  # nothing refused was recorded


def test_label_records_feedback_and_override(
    server: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, run = server["url"], server["run"]
    s, csrf = _login(server, "alice")
    h = {"X-CSRF-Token": csrf}
    hostile = server["hostile"][0]
    item = s.get(f"{url}/api/items/{hostile}").json()
    assert item["reasons"][0] == "flag" and item["alerts"][0]["index"] == server["review_alert"]
    assert item["completion"].startswith("<script>")  # JSON carries the text as it is

    r = s.post(
        f"{url}/api/items/{hostile}/labels",
        json={"verdict": "incorrect", "score": 0.0, "reason": "exploit <b>not</b> an answer"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    out = r.json()
    with LedgerReader.open_readonly(run) as reader:
        fb = reader.get_event(out["feedback"])
        ov = reader.get_event(out["override"])
    assert fb.kind == "feedback" and ov.kind == "override"
    assert fb.body == {
        "event": hostile,
        "reviewer": "alice",
        "verdict": "incorrect",
        "status": "submitted",
        "score": 0.0,
        "reason": "exploit <b>not</b> an answer",
        "agrees": item["verdict"] == "incorrect",
        "suggestion": {
            "verdict": item["verdict"],
            "reward": item["reward"],
            "agents": ["exact@1a2b3c", "judge@<b>j</b>", "fmt@9f8e"],
        },
        "queue": item["reasons"],
    }
    assert ov.body == {
        "event": hostile,
        "reviewer": "alice",
        "reward": 0.0,
        "reason": "exploit <b>not</b> an answer",
    }
    after = s.get(f"{url}/api/items/{hostile}").json()
    assert after["pending"] is False and after["labels"][0]["index"] == out["feedback"]
    assert hostile not in [i["event"] for i in s.get(f"{url}/api/queue?limit=1000").json()["items"]]

    # an "unsure" answer is a discarded response: no κ pair, no override
    other = server["hostile"][1]
    r = s.post(f"{url}/api/items/{other}/labels", json={"verdict": "unsure"}, headers=h)
    assert r.status_code == 201 and r.json()["override"] is None
    ag = s.get(f"{url}/api/summary").json()["agreement"]
    assert ag["excluded_human"] >= 1 and ag["pairs"] >= 1

    assert main(["audit", "verify", str(run)]) == 0
    capsys.readouterr()


def test_kappa_on_the_dashboard_counts_labels(server: dict[str, Any]) -> None:
    url = server["url"]
    s, csrf = _login(server, "alice")
    h = {"X-CSRF-Token": csrf}
    before = s.get(f"{url}/api/summary").json()["agreement"]
    items = s.get(f"{url}/api/queue?reason=boundary&limit=4").json()["items"]
    assert len(items) == 4
    flipped = {"correct": "incorrect", "incorrect": "correct"}
    for k, it in enumerate(items):
        verdict = it["verdict"] if k < 3 else flipped[it["verdict"]]
        r = s.post(f"{url}/api/items/{it['event']}/labels", json={"verdict": verdict}, headers=h)
        assert r.status_code == 201
    after = s.get(f"{url}/api/summary").json()["agreement"]
    assert after["pairs"] == before["pairs"] + 4
    added = {k: after["table"][k] - before["table"][k] for k in after["table"]}
    assert added["correct/correct"] + added["incorrect/incorrect"] == 3
    assert added["correct/incorrect"] + added["incorrect/correct"] == 1
    page = s.get(f"{url}/").text
    assert f"over {after['pairs']} labels" in page


def test_decision_on_an_alert(server: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    url, run = server["url"], server["run"]
    s, csrf = _login(server, "alice")
    h = {"X-CSRF-Token": csrf}
    alert = server["pause_alert"]
    assert alert in s.get(f"{url}/api/summary").json()["waiting"]
    page = s.get(f"{url}/alerts").text
    assert f'action="/alerts/{alert}/decision"' in page
    csrf_field = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf_field is not None and csrf_field.group(1) == csrf

    r = s.post(
        f"{url}/api/alerts/{server['rewards'][0]}/decision", json={"decision": "halt"}, headers=h
    )
    assert r.status_code == 404 and "expected an alert event" in r.json()["error"]
    r = s.post(
        f"{url}/api/alerts/{alert}/decision", json={"decision": "halt", "reason": "bad"}, headers=h
    )
    assert r.status_code == 201, r.text
    d = r.json()
    with LedgerReader.open_readonly(run) as reader:
        ev = reader.get_event(d["event"])
    assert ev.kind == "decision"
    assert ev.body == {"alert": alert, "decision": "halt", "reviewer": "alice", "reason": "bad"}
    r = s.post(f"{url}/api/alerts/{alert}/decision", json={"decision": "continue"}, headers=h)
    assert r.status_code == 409 and "already resolved: halt by alice" in r.json()["error"]
    assert s.get(f"{url}/api/summary").json()["waiting"] == []
    assert main(["audit", "verify", str(run)]) == 0
    capsys.readouterr()


def test_export_cases(
    server: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    url, run = server["url"], server["run"]
    s, csrf = _login(server, "alice")
    event = server["hostile"][0]
    r = s.post(
        f"{url}/api/items/{event}/labels",
        json={"verdict": "incorrect", "score": 0.0, "reason": "exploit"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 201
    out = tmp_path / "cases.jsonl"
    assert main(["review", "export-cases", str(run), "--out", str(out)]) == 0
    cases = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [c for c in cases if c["source"]["reward_event"] == event]
    assert len(mine) == 1  # the latest label of this reviewer counts
    case = mine[0]
    assert case["completion"].startswith("<script>") and case["expected"]["score"] == 0.0
    assert case["recorded"]["outcomes"][0]["verifier"] == "exact@1a2b3c"
    assert all(c["disagrees"] for c in cases)
    assert main(["review", "export-cases", str(run), "--all"]) == 0
    every = capsys.readouterr().out.splitlines()
    assert len(every) >= len(cases)
    assert main(["review", "export-cases", str(tmp_path)]) == 2
    assert "no ledger" in capsys.readouterr().err


def test_pages_follow_a_growing_ledger_under_concurrent_requests(server: dict[str, Any]) -> None:
    """Another writer (the trainer) appends while several clients read: every answer is
    whole, and the new events show up."""
    import threading

    from trustgrpo.ledger import Ledger

    url, run = server["url"], server["run"]
    s, _ = _login(server, "victor")
    before = s.get(f"{url}/api/summary").json()
    template = s.get(f"{url}/api/items/{server['rewards'][0]}").json()
    statuses: list[int] = []
    stop = threading.Event()

    def read() -> None:
        paths = ["/api/summary", "/api/queue?limit=5", "/", "/queue", "/alerts"]
        while not stop.is_set():
            for p in paths:
                statuses.append(s.get(url + p).status_code)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        with Ledger.open(run) as ledger:
            for k in range(40):
                body = {
                    "step": 7,
                    "prompt_id": "new",
                    "group_id": 0,
                    "index": k,
                    "prompt_blob": ledger.put_blob("new prompt"),
                    "completion_blob": ledger.put_blob(f"answer {k}"),
                    "reference_blob": None,
                    "metadata_blob": None,
                    "num_tokens": 3,
                    "truncated": False,
                    "outcomes": template["outcomes"][:1],
                    "reward": 1.0,
                    "advantage": 0.0,
                }
                ledger.append("reward", body)
                if k % 10 == 9:
                    ledger.sign()
    finally:
        stop.set()
        for t in readers:
            t.join(30)
    assert statuses and set(statuses) == {200}
    after = s.get(f"{url}/api/summary").json()
    assert after["events"] == before["events"] + 40
    assert after["steps"][-1]["step"] == 7 and after["steps"][-1]["samples"] == 40
    assert after["checkpoint"]["ok"] and after["checkpoint"]["size"] == after["events"]
