"""What every request handler of the review app shares: :class:`Web` (the run's service,
the sessions, the templates), authentication and CSRF checks, rendering, error pages.

Handlers reach it with :func:`web(request) <web>`. Sync handlers run in a thread pool;
:func:`locked` makes one hold the view's lock, so that a refresh in another request does not
change the view while it reads.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Path as PathParam
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from trustgrpo.review.auth import Session, Sessions, check_csrf
from trustgrpo.review.service import ReviewError, ReviewService

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "trustgrpo_session"
LOGIN_COOKIE = "trustgrpo_login"
MAX_EVENT = 2**53 - 1
"""Largest event index accepted in a path (canonical JSON's integer limit)."""
EventId = Annotated[int, PathParam(ge=0, le=MAX_EVENT, description="ledger leaf index")]
HEADINGS = {
    400: "Bad request",
    401: "Not logged in",
    403: "Refused",
    404: "Not found",
    409: "Conflict",
    503: "Not ready",
}


class NeedLogin(Exception):
    """A page was asked for without a session: redirect to the login page."""


class Refused(ReviewError):
    """Authentication or authorisation failed (401 or 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def templates() -> jinja2.Environment:
    """The pages' Jinja2 environment: autoescaping on for everything, undefined names fail."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson_pretty"] = lambda x: json.dumps(
        x, indent=2, ensure_ascii=False, sort_keys=True
    )
    return env


@dataclass
class Web:
    """One app's shared state."""

    run_dir: Path
    service: ReviewService
    sessions: Sessions
    env: jinja2.Environment
    refresh_s: int

    def session_of(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE))

    def page_session(self, request: Request) -> Session:
        """The session of a page view; without one, the login page."""
        s = self.session_of(request)
        if s is None:
            raise NeedLogin()
        return s

    def api_session(self, request: Request) -> Session:
        s = self.session_of(request)
        if s is None:
            raise Refused(401, 'no valid session: log in with POST /api/session {"token": ...}')
        return s

    def writer(self, request: Request, csrf: str | None) -> Session:
        """The session of a write: logged in, same origin, right CSRF token, reviewer."""
        s = self.session_of(request)
        if s is None:
            raise Refused(401, "no valid session: log in first")
        check_origin(request)
        if not check_csrf(s, csrf):
            raise Refused(403, "bad or missing CSRF token")
        if not s.can_write:
            raise Refused(403, f"read-only: the role {s.role!r} cannot write")
        return s

    def set_session_cookie(self, request: Request, response: Response, s: Session) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            s.id,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    def render(
        self, request: Request, name: str, code: int = 200, *, nav: bool = True, **ctx: Any
    ) -> HTMLResponse:
        """A page; ``nav`` adds the queue size and paused alerts to the navigation (error
        pages skip it: they are rendered on the event loop, without the lock)."""
        s = ctx.pop("session", None)
        base = {
            "session": s,
            "title": ctx.pop("title", "trustgrpo"),
            "page": ctx.pop("page", ""),
            "refresh": ctx.pop("refresh", None),
            "run": self.run_dir.name,
            "notices": ctx.pop("notices", []),
            "queue_total": None,
            "waiting": 0,
        }
        if s is not None and nav:
            try:
                with self.service.lock:
                    view = self.service.view()
                    base["queue_total"] = view.queue.counts()["total"]
                    base["waiting"] = len(view.waiting_alerts())
            except ReviewError:  # no ledger yet
                pass
        html = self.env.get_template(name).render(**base, **ctx)
        return HTMLResponse(html, status_code=code)

    def error(self, request: Request, status: int, message: str) -> Response:
        """JSON ``{"error": message}`` for the API, an error page otherwise."""
        if is_api(request):
            return JSONResponse({"error": message}, status_code=status)
        heading = HEADINGS.get(status, "Error")
        return self.render(
            request,
            "error.html",
            status,
            nav=False,
            session=self.session_of(request),
            title=heading,
            status=status,
            heading=heading,
            message=message,
            back="/login" if status == 401 else back_link(request.url.path),
        )


def web(request: Request) -> Web:
    """The app's :class:`Web`."""
    w: Web = request.app.state.web
    return w


def locked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a sync handler (its ``request`` passed by keyword, as FastAPI does) holding the
    view's lock."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with web(kwargs["request"]).service.lock:
            return fn(*args, **kwargs)

    return wrapper


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def check_origin(request: Request) -> None:
    """Refuse a request whose ``Origin`` header names another site."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(403, f"cross-origin request refused (Origin {origin[:100]})")


def local_path(target: str) -> str:
    """``target`` when it is a path on this site, else ``/`` (no open redirects)."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return "/"
    return target


def back_link(path: str) -> str:
    """Where an error page's Back link goes: the page whose form was posted."""
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "items" and parts[1].isdigit():
        return f"/items/{parts[1]}"
    if parts[0] == "alerts":
        return "/alerts"
    return "/"
