"""API fuzzing with schemathesis against the app's own OpenAPI schema, with a reviewer's
session and CSRF token (so writes get past the checks and reach the ledger): no request may
cause a server error, and the ledger still verifies afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trustgrpo.cli import main
from trustgrpo.ledger import LedgerReader

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, settings  # noqa: E402

MAX_EXAMPLES = 12
"""Per operation (about 15 operations): enough to hit every validation path, bounded time."""


@pytest.fixture(scope="module")
def live(synthetic_run: tuple[Path, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    from trustgrpo.review.auth import Reviewers
    from trustgrpo.review.server import serve_in_background

    run, info = synthetic_run
    token = Reviewers(run).add("fuzzer")
    handle = serve_in_background(run, port=0)
    session = requests.Session()
    r = session.post(handle.url + "/api/session", json={"token": token})
    assert r.status_code == 200
    try:
        yield {"url": handle.url, "run": run, "session": session, "csrf": r.json()["csrf"], **info}
    finally:
        session.close()
        handle.stop()


@pytest.fixture(scope="module")
def api_schema(live: dict[str, Any]) -> Any:
    schema = schemathesis.openapi.from_url(live["url"] + "/openapi.json")
    # logging out would end the fuzzer's session (logout is tested in the browser)
    return schema.exclude(method="DELETE", path="/api/session").exclude(
        method="POST", path="/logout"
    )


def test_no_server_errors(api_schema: Any, live: dict[str, Any]) -> None:
    """Every operation, ``MAX_EXAMPLES`` positive and as many negative requests; operations
    on an event once more with a real reward event or alert in the path. Forms get the real
    CSRF token so that their own validation is reached. (schemathesis' pytest plugin is not
    used: it does not run under this pytest.)"""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12
    real = {"event": live["rewards"][5], "alert": live["pause_alert"]}
    statuses: dict[int, int] = {}
    skipped: list[str] = []
    for op in operations:
        names = {p.name for p in op.path_parameters}
        runs: list[dict[str, Any]] = [
            {"generation_mode": GenerationMode.POSITIVE},
            {"generation_mode": GenerationMode.NEGATIVE},
        ]
        if names & set(real):
            runs.append({"path_parameters": {n: real[n] for n in names & set(real)}})
        for kwargs in runs:

            @given(case=op.as_strategy(**kwargs))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def fuzz(case: Any) -> None:
                if isinstance(case.body, dict) and "csrf" in case.body:
                    case.body["csrf"] = live["csrf"]
                response = case.call_and_validate(
                    session=live["session"],
                    headers={"X-CSRF-Token": live["csrf"]},
                    checks=[not_a_server_error],
                    timeout=30,
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            try:
                fuzz()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert kwargs.get("generation_mode") == GenerationMode.NEGATIVE
                skipped.append(f"{op.method.upper()} {op.path}")
    assert len(skipped) < len(operations) / 2, skipped
    # the fuzzing reached success, validation, refusal and not-found paths
    assert {200, 201, 400, 404, 422} <= set(statuses), statuses


def test_ledger_verifies_after_fuzzing(
    live: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", str(live["run"])]) == 0
    capsys.readouterr()
    with LedgerReader.open_readonly(live["run"]) as reader:
        kinds = {e.kind for e in reader.events()}
    assert "reward" in kinds  # nothing recorded before was lost
