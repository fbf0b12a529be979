"""The review web app over one run: :func:`create_app`.

Routes: the pages in :mod:`trustgrpo.review.pages`, the JSON API in
:mod:`trustgrpo.review.api`, plus ``/static/review.css`` and ``/openapi.json``.

Security: every page and API call needs a session (:mod:`trustgrpo.review.auth`); every
write needs the ``reviewer`` role and the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``), and is refused when an ``Origin`` header names another site. Cookies are
``HttpOnly; SameSite=Strict``. Model outputs and reviewer text are rendered only through
Jinja2 autoescaping, and the Content-Security-Policy allows no script at all, so even a
missed escape could not run code. No page loads anything from another site (the CDN-backed
Swagger UI is off). API errors are JSON ``{"error": message}``; a server error is logged
and answered without details.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from trustgrpo.review import api, pages
from trustgrpo.review.auth import Reviewers, Sessions
from trustgrpo.review.queue import QueueConfig
from trustgrpo.review.service import ReviewError, ReviewService
from trustgrpo.review.web import HERE, NeedLogin, Web, is_api, templates, web

log = logging.getLogger("trustgrpo.review")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
"""No scripts at all; styles and images from this site only; forms post here only."""


def create_app(
    run_dir: Path,
    *,
    url: str | None = None,
    signing_key: Path | None = None,
    queue: QueueConfig | None = None,
    refresh_s: int = 5,
) -> FastAPI:
    """The review app of the run in ``run_dir``.

    ``url`` / ``signing_key``: the ledger's store and the key labels are signed with
    (default: what ``RUN/run.toml`` records, else ``RUN/ledger.db`` and ``RUN/ledger.key``).
    ``queue``: how the review queue samples; ``refresh_s``: the dashboard's refresh period
    while the run is live.
    """
    from trustgrpo import __version__

    run_dir = Path(run_dir)
    service = ReviewService(run_dir, url=url, signing_key=signing_key, queue=queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="trustgrpo review",
        version=__version__,
        description="Review a trustgrpo run's rewards; every label is a signed ledger event.",
        docs_url=None,  # Swagger UI would fetch scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.web = Web(run_dir, service, Sessions(Reviewers(run_dir)), templates(), refresh_s)
    _add_plumbing(app)
    app.include_router(pages.router)
    app.include_router(api.router)
    return app


def _add_plumbing(app: FastAPI) -> None:
    """Security headers, error handlers, the stylesheet."""
    css = (HERE / "static" / "review.css").read_bytes()

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response: Response = await call_next(request)
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, exc: NeedLogin) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(ReviewError)
    async def review_error(request: Request, exc: ReviewError) -> Response:
        return web(request).error(request, exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        message = "; ".join(f"{p['where']}: {p['message']}" for p in problems)
        if is_api(request):
            return JSONResponse(
                {"error": f"invalid request: {message}", "details": problems}, status_code=422
            )
        return web(request).error(request, 400, f"invalid request: {message}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return web(request).error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("review server error on %s %s", request.method, request.url.path)
        return web(request).error(request, 500, f"internal error: {type(exc).__name__}")

    @app.get("/static/review.css", include_in_schema=False)
    def stylesheet() -> Response:
        return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=300"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)
