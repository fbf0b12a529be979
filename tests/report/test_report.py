"""The compliance report built from a real short run: every section, every figure equal to
what the ledger says (parsed from the HTML), hostile text escaped, nothing loaded from the
network in Chromium, and a PDF whose pages convert to PNG."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from report_oracle import expected_facts

from trustgrpo.report import build_report, find_chromium

SECTIONS = (
    "identity",
    "objective",
    "training",
    "results",
    "monitors",
    "oversight",
    "integrity",
    "sandbox",
    "limitations",
    "mapping",
)
NUMBER = re.compile(r"^[+-−]?\d[\d,]*(\.\d+)?(e[+-]?\d+)?%?$")


class Page(HTMLParser):
    """The facts, sections, table cells, links and plots of a report."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.facts: list[dict[str, str]] = []
        self.sections: list[str] = []
        self.cells: list[tuple[str, bool]] = []  # (text, holds a fact)
        self.urls: list[str] = []
        self.svgs = 0
        self.scripts = 0
        self._fact: dict[str, str] | None = None
        self._cell: list[Any] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "data-fact" in a:
            self._fact = {
                "key": a["data-fact"],
                "kind": a["data-kind"],
                "value": a["data-value"],
                "text": "",
            }
            if self._cell is not None:
                self._cell[1] = True
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "td":
            self._cell = ["", False]
        if tag == "svg" and "plot" in a.get("class", ""):
            self.svgs += 1
        if tag == "script":
            self.scripts += 1
        for attr in ("src", "href", "xlink:href", "action", "poster", "data"):
            if attr in a and tag != "svg":
                self.urls.append(a[attr])

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._fact is not None:
            self.facts.append(self._fact)
            self._fact = None
        if tag == "td" and self._cell is not None:
            self.cells.append((self._cell[0].strip(), self._cell[1]))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._fact is not None:
            self._fact["text"] += data
        if self._cell is not None:
            self._cell[0] += data


@pytest.fixture(scope="session")
def reports(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    return {name: build_report(run, out=out / f"{name}.html").html for name, run in runs.items()}


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("−", "-"))


def _text_matches(kind: str, value: Any, text: str) -> bool:
    """The displayed text is the value, rounded as the kind says."""
    if value is None:
        return text in ("—", "null")
    if kind == "bool":
        if text in ("yes", "no", "true", "false"):
            return text in (("yes", "true") if value else ("no", "false"))
        return ("FAIL" in text or "NOT" in text) != bool(value)
    if kind == "int":
        return _number(text) == value
    if kind == "id":
        return text == str(value)
    if kind == "float":
        return math.isclose(_number(text), value, rel_tol=5e-4, abs_tol=1e-12)
    if kind == "pct":
        return abs(_number(text.rstrip("%")) - 100 * value) <= 0.05 + 1e-9
    if kind == "pp":
        return abs(_number(text.removesuffix(" pts")) - 100 * value) <= 0.05 + 1e-9
    if kind == "time":
        if isinstance(value, str):
            return text == value
        t = dt.datetime.fromtimestamp(value / 1000, tz=dt.timezone.utc)
        return text == t.strftime("%Y-%m-%d %H:%M:%S UTC")
    if kind == "dur":
        m = re.fullmatch(r"(?:(\d+) h )?(?:(\d+) min )?([\d.]+) s|(\d+) h (\d+) min", text)
        assert m, text
        if m[4]:
            return abs(int(m[4]) * 3600 + int(m[5]) * 60 - value) <= 30
        secs = (int(m[1] or 0) * 60 + int(m[2] or 0)) * 60 if m[1] else int(m[2] or 0) * 60
        return abs(secs + float(m[3]) - value) <= max(0.5, 0.001 * value)
    if value in ("", "[]", "{}") and text in ("—", "(none)"):
        return True
    return text in (str(value), json.dumps(value, ensure_ascii=False))


def _same(expected: Any, found: Any) -> bool:
    if isinstance(expected, (list, dict)) and isinstance(found, str):
        found = json.loads(found)
    if isinstance(expected, float) or isinstance(found, float):
        if expected is None or found is None:
            return expected is found
        return math.isclose(float(found), float(expected), rel_tol=1e-9, abs_tol=1e-12)
    return bool(found == expected)


@pytest.mark.parametrize("name", ["plain", "reviewed"])
def test_every_section_and_every_figure_matches_the_ledger(
    runs: dict[str, Path], reports: dict[str, Path], name: str
) -> None:
    page = Page(reports[name].read_text())
    assert page.sections == list(SECTIONS)
    assert page.svgs == 4  # reward per component, held-out gap, length vs reward, alerts
    expected = expected_facts(runs[name])
    assert len(page.facts) > 300
    shown: dict[str, Any] = {}
    for fact in page.facts:
        key, value = fact["key"], json.loads(fact["value"])
        assert key in expected, f"{key} = {value!r} is shown but not checked against the ledger"
        assert _same(expected[key], value), (
            f"{key}: ledger says {expected[key]!r}, report {value!r}"
        )
        assert _text_matches(fact["kind"], value, fact["text"]), (key, fact)
        shown[key] = value
    # the figures that matter are all there
    for key in (
        "train.samples",
        "train.steps",
        "verify.root",
        "checkpoint.root",
        "ledger.public_key",
        "replay.ok",
        "review.labels",
        "alerts.total",
        "result.eval/accuracy.last",
        "verifier.1.source_hash",
        "data.train.sha256",
    ):
        assert key in shown, key
    steps = {k for k in expected if re.fullmatch(r"step\.\d+\.step", k)}
    assert steps <= set(shown)  # 6 steps: every one in the table
    alerts = {k for k in expected if re.fullmatch(r"alert\.\d+\.statistic", k)}
    assert alerts and alerts <= set(shown)


@pytest.mark.parametrize("name", ["plain", "reviewed"])
def test_every_number_in_a_table_cell_is_a_checked_figure(
    reports: dict[str, Path], name: str
) -> None:
    page = Page(reports[name].read_text())
    loose = [text for text, tagged in page.cells if NUMBER.match(text) and not tagged]
    assert not loose, f"numbers shown without a data-fact tag: {loose[:10]}"


def test_without_review_the_report_says_so(reports: dict[str, Path]) -> None:
    plain = reports["plain"].read_text()
    assert "No human review recorded" in plain
    assert "No human review recorded" not in reports["reviewed"].read_text()


def test_review_statistics(runs: dict[str, Path], reports: dict[str, Path]) -> None:
    """12 rewards labelled (two 'unsure'), one relabelled, one label on a non-reward event:
    κ over 10 pairs, computed as the review app computes it."""
    facts = {f["key"]: json.loads(f["value"]) for f in Page(reports["reviewed"].read_text()).facts}
    assert facts["review.labels"] == 14
    assert facts["review.items"] == 12
    assert facts["review.pairs"] == 10
    assert facts["review.excluded_human"] == 2
    assert facts["review.excluded_verifier"] == 0
    assert facts["review.relabelled"] == 1 and facts["review.not_reward"] == 1
    assert facts["review.overrides"] == 2 and facts["review.decisions"] == 1
    two = ("correct", "incorrect")
    pairs = [(a, b) for a in two for b in two for _ in range(facts[f"review.cm.{a}.{b}"])]
    assert len(pairs) == 10
    p_o = sum(a == b for a, b in pairs) / 10
    p_e = sum(sum(a == x for a, _ in pairs) * sum(b == x for _, b in pairs) / 100 for x in two)
    assert facts["review.kappa"] == pytest.approx((p_o - p_e) / (1 - p_e))
    try:  # the review app's dashboard must show the same κ
        from trustgrpo.review.stats import agreement
    except ImportError:
        return
    theirs = agreement(pairs)
    assert theirs.kappa == pytest.approx(facts["review.kappa"])
    assert theirs.observed == pytest.approx(facts["review.observed"])


def test_hostile_text_is_escaped(reports: dict[str, Path]) -> None:
    html = reports["reviewed"].read_text()
    page = Page(html)
    assert page.scripts == 0
    assert "<script>alert(1)" not in html and '<img src="https://evil' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text


@pytest.mark.parametrize("name", ["plain", "reviewed"])
def test_nothing_in_the_page_points_outside(reports: dict[str, Path], name: str) -> None:
    html = reports[name].read_text()
    page = Page(html)
    assert all(u.startswith("#") for u in page.urls), page.urls
    assert "default-src 'none'" in html  # the Content-Security-Policy forbids any load
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html)
    assert not re.search(r"@import", html)


def _chromium() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    return exe


LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _requests_when_opened(exe: str, pages: list[Path]) -> list[tuple[list[str], list[str]]]:
    """Per page: every request Chromium made while opening it, and its console errors."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # Chromium is here, so the check must run: the dev extra has it
        pytest.fail("playwright is not installed: pip install playwright (the dev extra)")
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=LAUNCH_ARGS)
        try:
            for path in pages:
                page = browser.new_page()
                requests: list[str] = []
                errors: list[str] = []
                page.on("request", lambda r, log=requests: log.append(r.url))
                page.on(
                    "console",
                    lambda m, log=errors: log.append(m.text) if m.type == "error" else None,
                )
                page.goto(path.resolve().as_uri(), wait_until="networkidle")
                out.append((requests, errors))
                page.close()
        finally:
            browser.close()
    return out


def test_chromium_loads_nothing_but_the_file(reports: dict[str, Path], tmp_path: Path) -> None:
    exe = _chromium()
    # the control proves the log sees requests: an image on 127.0.0.1 is requested
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><img src="http://127.0.0.1:9/x.png">')
    logged = _requests_when_opened(exe, [control, reports["plain"], reports["reviewed"]])
    assert "http://127.0.0.1:9/x.png" in logged[0][0]
    for (requests, errors), name in zip(logged[1:], ("plain", "reviewed"), strict=True):
        assert requests, name
        outside = [u for u in requests if not u.startswith(("file://", "data:"))]
        assert not outside, f"{name}: requests left file://: {outside}"
        assert not errors, f"{name}: console errors (a CSP violation?): {errors}"


def test_pdf_pages_convert_to_png(runs: dict[str, Path], tmp_path: Path) -> None:
    _chromium()
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm is not installed (apt-get install -y poppler-utils)")
    result = build_report(runs["reviewed"], out=tmp_path / "r.html", pdf=True, replay_sample=4)
    assert result.pdf is not None and result.pdf.read_bytes().startswith(b"%PDF-")
    done = subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(result.pdf), str(tmp_path / "page")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not done.stderr.strip(), done.stderr  # poppler reports broken PDFs on stderr
    pngs = sorted(tmp_path.glob("page-*.png"))
    assert 5 <= len(pngs) <= 40
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
