"""PDF from the HTML report with headless Chromium's print-to-PDF.

Chromium lays out the same HTML and CSS a reader sees (``@page`` size, margins and page
numbers included), so the PDF and the HTML cannot drift apart. The browser runs with a
throw-away profile and its background networking off; the report itself loads nothing (its
Content-Security-Policy forbids it).

The binary is ``$TRUSTGRPO_CHROMIUM`` when set, else the first of ``chromium``,
``chromium-browser``, ``google-chrome``, ``google-chrome-stable`` on ``PATH`` (Debian and
Ubuntu: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from trustgrpo.errors import TrustGRPOError, UserError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pdf-header-footer",
    "--hide-scrollbars",
)


class ReportError(TrustGRPOError):
    """The report could not be produced (the PDF step failed)."""


def find_chromium() -> str | None:
    """Path of a Chromium-family browser, or None."""
    env = os.environ.get("TRUSTGRPO_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def write_pdf(html: Path, pdf: Path, *, timeout: float = 120.0) -> Path:
    """Print ``html`` to ``pdf`` with Chromium; :class:`UserError` when there is no browser,
    :class:`ReportError` when printing fails."""
    exe = find_chromium()
    if exe is None:
        raise UserError(
            f"--pdf needs Chromium (apt-get install -y chromium) or TRUSTGRPO_CHROMIUM set to a "
            f"Chromium or Chrome binary; the HTML report is at {html}"
        )
    pdf = Path(pdf).resolve()
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp_pdf = pdf.with_name(f".{pdf.name}.{os.getpid()}.tmp")
    with tempfile.TemporaryDirectory(prefix="trustgrpo-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={tmp_pdf}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--no-sandbox")  # Chromium refuses to start as root otherwise
        cmd.append(Path(html).resolve().as_uri())
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            tmp_pdf.unlink(missing_ok=True)
            raise ReportError(f"Chromium did not print {html} within {timeout:g} s") from None
    ok = tmp_pdf.is_file() and tmp_pdf.read_bytes()[:5] == b"%PDF-"
    if done.returncode != 0 or not ok:
        tmp_pdf.unlink(missing_ok=True)
        tail = (done.stderr or done.stdout).strip()[-800:]
        raise ReportError(
            f"Chromium could not print {html} to PDF (exit {done.returncode}): {tail}"
        )
    os.replace(tmp_pdf, pdf)
    return pdf
