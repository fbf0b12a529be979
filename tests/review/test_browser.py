"""The review page in a real browser (Debian's Chromium via Playwright) on 127.0.0.1: log
in, label an item, find the feedback event in the ledger; hostile model output renders as
text; writes without a session or with a bad CSRF token are refused.

Screenshots of the dashboard and the review page go to ``$TRUSTGRPO_SCREENSHOTS`` (or the
test's temporary directory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import XSS_IMG, XSS_SCRIPT
from trustgrpo.cli import main
from trustgrpo.ledger import LedgerReader

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def site(synthetic_run: tuple[Path, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    from trustgrpo.review.auth import Reviewers
    from trustgrpo.review.queue import QueueConfig
    from trustgrpo.review.server import serve_in_background

    run, info = synthetic_run
    reviewers = Reviewers(run)
    tokens = {"alice": reviewers.add("alice"), "victor": reviewers.add("victor", "viewer")}
    handle = serve_in_background(run, port=0, queue=QueueConfig(random_rate=0.2))
    try:
        yield {"url": handle.url, "run": run, "tokens": tokens, **info}
    finally:
        handle.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    p = context.new_page()
    p.dialogs = []  # type: ignore[attr-defined]
    p.on("dialog", lambda d: (p.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    try:
        yield p
    finally:
        context.close()


def _login(page: Any, site: dict[str, Any], who: str = "alice", path: str = "/") -> None:
    page.goto(site["url"] + path)
    assert "/login" in page.url
    page.fill("#token", site["tokens"][who])
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(site["url"] + path)


def _shots() -> Path | None:
    where = os.environ.get("TRUSTGRPO_SCREENSHOTS")
    return Path(where) if where else None


def test_login_label_and_the_ledger_records_it(
    page: Any, site: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shots = _shots() or tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    _login(page, site)
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator("text=Training is paused").count() == 1
    assert "✓ verified" in page.locator("#card-checkpoint").inner_text()
    assert page.locator("figure.chart svg polyline").count() >= 4
    assert page.locator("meta[http-equiv=refresh]").count() == 1  # follows a live run
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

    page.click("header nav >> text=Review queue")
    first = page.locator("table.list tbody tr").first
    event = int(first.locator("td").first.inner_text())
    first.locator("text=Review").click()
    page.wait_for_url(f"{site['url']}/items/{event}")
    assert page.locator("h1").inner_text() == f"Reward event #{event}"
    page.screenshot(path=str(shots / "review.png"), full_page=True)

    page.check("input[name=verdict][value=incorrect]")
    page.fill("#score", "abc")  # the browser refuses to send it
    assert page.locator("#score").evaluate("e => e.checkValidity()") is False
    page.fill("#score", "0.125")
    page.fill("#reason", "the answer is wrong")
    page.click("form.label button[type=submit]")
    page.wait_for_load_state()
    notice = page.locator(".notice").inner_text()
    assert f"label on event {event} is ledger event" in notice and "corrected reward" in notice

    with LedgerReader.open_readonly(site["run"]) as reader:
        events = list(reader.events())
    feedback = [e for e in events if e.kind == "feedback" and e.body["event"] == event]
    assert len(feedback) == 1
    body = feedback[0].body
    assert (body["reviewer"], body["verdict"], body["score"]) == ("alice", "incorrect", 0.125)
    assert body["reason"] == "the answer is wrong"
    override = [e for e in events if e.kind == "override" and e.body["event"] == event]
    assert [o.body["reward"] for o in override] == [0.125]
    assert main(["audit", "verify", str(site["run"])]) == 0
    capsys.readouterr()

    for name in ("dashboard.png", "review.png"):
        png = (shots / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_hostile_output_renders_as_text(page: Any, site: dict[str, Any]) -> None:
    _login(page, site, path=f"/items/{site['hostile'][0]}")
    title = page.title()
    assert page.locator("#completion").inner_text() == XSS_SCRIPT + " 2"
    assert page.locator("#prompt").inner_text().endswith("<i>answer in digits</i>")
    assert page.locator("main script").count() == 0 and page.locator("main i").count() == 0
    assert "<b>bold?</b>" in page.locator("pre.details").first.inner_text()
    assert page.locator("main h3 code", has_text="judge@<b>j</b>").count() == 1
    banner = page.locator(".banner.review").inner_text()
    assert XSS_SCRIPT in banner  # the alert message, as text

    page.goto(f"{site['url']}/items/{site['hostile'][1]}")
    assert page.locator("#completion").inner_text() == XSS_IMG + " 2"
    assert page.locator("main img").count() == 0
    assert '"why": "<img src=x onerror=' in page.locator("pre.details").nth(1).inner_text()

    page.goto(f"{site['url']}/queue?reason=flag")
    assert page.locator("td.excerpt", has_text="<script>").count() == 1
    page.goto(f"{site['url']}/alerts")
    assert page.locator("h2", has_text="exploit<script>").count() == 1
    page.goto(f"{site['url']}/")
    page.wait_for_timeout(200)
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert "pwned" not in page.title() and "pwned" not in title


def test_writes_without_session_or_with_bad_csrf_are_refused(
    page: Any, browser: Any, site: dict[str, Any]
) -> None:
    url, run = site["url"], site["run"]
    event = site["rewards"][-1]
    with LedgerReader.open_readonly(run) as reader:
        before = reader.size()

    anonymous = browser.new_context()
    try:
        r = anonymous.request.post(
            f"{url}/items/{event}/label", form={"verdict": "correct", "csrf": "x"}
        )
        assert r.status == 401
        r = anonymous.request.post(f"{url}/api/items/{event}/labels", data={"verdict": "correct"})
        assert r.status == 401 and "no valid session" in r.json()["error"]
    finally:
        anonymous.close()

    _login(page, site, path=f"/items/{event}")
    r = page.request.post(f"{url}/items/{event}/label", form={"verdict": "correct", "csrf": "bad"})
    assert r.status == 403 and "CSRF" in r.text()
    r = page.request.post(f"{url}/api/items/{event}/labels", data={"verdict": "correct"})
    assert r.status == 403 and "CSRF" in r.json()["error"]
    # the page's own form, with its hidden token changed
    page.locator("form.label input[name=csrf]").evaluate("el => el.value = 'tampered'")
    page.check("input[name=verdict][value=correct]")
    page.click("form.label button[type=submit]")
    assert page.locator("h1").inner_text() == "403 · Refused"
    with LedgerReader.open_readonly(run) as reader:
        assert reader.size() == before

    page.goto(f"{url}/alerts")  # logging out ends the session
    page.click("text=Log out")
    page.wait_for_url(f"{url}/login")
    r = page.request.get(f"{url}/api/summary")
    assert r.status == 401


def test_viewer_sees_but_cannot_label(page: Any, site: dict[str, Any]) -> None:
    _login(page, site, who="victor", path=f"/items/{site['rewards'][3]}")
    assert page.locator("text=can see but not label").count() == 1
    assert page.locator("form.label").count() == 0
    page.goto(f"{site['url']}/alerts")
    assert page.locator("form.decide").count() == 0
