"""Human review of a run: a web page where people check the verifiers' rewards.

A person watches a run (dashboard), labels reward events drawn into a review queue (monitor
flags, near-boundary and disagreeing verifiers, a uniform random slice), corrects rewards,
and decides whether paused training continues. Every act is a signed ledger event:
``feedback`` (a label), ``override`` (a corrected reward, applied by training to the same
completion of the same prompt), ``decision`` (on an alert).

Modules::

    app        create_app: the FastAPI app, security headers, errors   [review] extra
    pages      the HTML pages and forms (Jinja2 templates, no script)  [review] extra
    api        the JSON API (OpenAPI at /openapi.json)                 [review] extra
    web        what handlers share: sessions, CSRF checks, rendering   [review] extra
    server     serve / serve_in_background (uvicorn)                   [review] extra
    service    reading the run and writing labels, without HTTP
    index      RunView: an incremental view of the ledger
    queue      which reward events are queued for review, and why
    auth       reviewers, tokens (stored hashed), sessions, CSRF tokens
    overrides  Overrides: corrected rewards keyed by (prompt, completion) hash
    stats      Cohen's κ with its counts, error rate with a Wilson interval
    charts     geometry of the dashboard's SVG charts
    cli        ``trustgrpo review serve | add-reviewer | remove-reviewer | export-cases``

Only the web modules need the ``[review]`` extra (fastapi, uvicorn, jinja2,
python-multipart); the rest, and this package's import, work without it.
"""

from __future__ import annotations

from trustgrpo.review.auth import ROLES, Reviewer, Reviewers
from trustgrpo.review.overrides import Correction, Overrides, blob_hash
from trustgrpo.review.queue import REASONS, QueueConfig
from trustgrpo.review.stats import Agreement, ErrorRate, agreement, cohen_kappa, error_rate

__all__ = [
    "REASONS",
    "ROLES",
    "Agreement",
    "Correction",
    "ErrorRate",
    "Overrides",
    "QueueConfig",
    "Reviewer",
    "Reviewers",
    "agreement",
    "blob_hash",
    "cohen_kappa",
    "error_rate",
]
