"""The review app's JSON API (schema at ``/openapi.json``).

::

    POST   /api/session                 {"token"} -> session cookie, {"reviewer","role","csrf"}
    DELETE /api/session                 log out (X-CSRF-Token)
    GET    /api/summary                 the dashboard's numbers
    GET    /api/queue                   pending items (?reason=, limit, offset)
    GET    /api/items/{event}           one reward event, its alerts, labels and overrides
    POST   /api/items/{event}/labels    {"verdict", "score"?, "reason"?} (X-CSRF-Token)
    GET    /api/alerts                  every alert and the decision on it
    POST   /api/alerts/{alert}/decision {"decision", "reason"?} (X-CSRF-Token)

Errors are ``{"error": message}`` (422 adds ``details``: where and what, per problem).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from trustgrpo.review.auth import check_csrf
from trustgrpo.review.pages import Reason, queue_row
from trustgrpo.review.service import MAX_REASON, MAX_SCORE
from trustgrpo.review.web import MAX_EVENT, EventId, Refused, check_origin, locked, web

router = APIRouter(prefix="/api", tags=["api"])
Csrf = Annotated[str | None, Header(max_length=256, description="the session's CSRF token")]


class ErrorOut(BaseModel):
    error: str
    details: list[Any] | None = None


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(max_length=256, description="the token add-reviewer printed")


class SessionOut(BaseModel):
    reviewer: str
    role: Literal["reviewer", "viewer"]
    csrf: str = Field(description="send as X-CSRF-Token on every write")


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["correct", "incorrect", "unsure"] = Field(
        description="is the completion correct?"
    )
    score: float | None = Field(
        None, ge=-MAX_SCORE, le=MAX_SCORE, allow_inf_nan=False, description="corrected reward"
    )
    reason: str = Field("", max_length=MAX_REASON)


class LabelOut(BaseModel):
    feedback: int = Field(description="leaf index of the feedback event")
    override: int | None = Field(description="leaf index of the override event, if any")


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["continue", "halt"]
    reason: str = Field("", max_length=MAX_REASON)


class DecisionOut(BaseModel):
    event: int
    alert: int
    decision: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": why}
    for code, why in [
        (400, "bad input"),
        (401, "no valid session"),
        (403, "bad CSRF token, foreign origin, or read-only role"),
        (404, "no such event"),
        (409, "already resolved"),
        (422, "the request does not match the schema"),
        (503, "the run has no ledger (yet), or it cannot be written"),
    ]
}


@router.post("/session", response_model=SessionOut, responses=ERRORS)
def api_login(request: Request, body: SessionIn) -> Response:
    w = web(request)
    check_origin(request)
    s = w.sessions.login(body.token)
    if s is None:
        raise Refused(401, "unknown token")
    response = JSONResponse({"reviewer": s.reviewer, "role": s.role, "csrf": s.csrf})
    w.set_session_cookie(request, response, s)
    return response


@router.delete("/session", responses=ERRORS)
def api_logout(request: Request, x_csrf_token: Csrf = None) -> dict[str, bool]:
    w = web(request)
    s = w.api_session(request)
    if not check_csrf(s, x_csrf_token):
        raise Refused(403, "bad or missing CSRF token")
    w.sessions.logout(s.id)
    return {"ok": True}


@router.get("/summary", responses=ERRORS)
@locked
def api_summary(request: Request) -> dict[str, Any]:
    w = web(request)
    w.api_session(request)
    return w.service.summary(w.service.view())


@router.get("/queue", responses=ERRORS)
@locked
def api_queue(
    request: Request,
    reason: Reason | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_EVENT)] = 0,
) -> dict[str, Any]:
    w = web(request)
    w.api_session(request)
    view = w.service.view()
    pending = view.queue.pending(reason)
    return {
        "total": len(pending),
        "counts": view.queue.counts(),
        "items": [
            queue_row(view, it.event, it.reasons, alerts=it.alerts)
            for it in pending[offset : offset + limit]
        ],
    }


@router.get("/items/{event}", responses=ERRORS)
@locked
def api_item(request: Request, event: EventId) -> dict[str, Any]:
    w = web(request)
    w.api_session(request)
    return w.service.reward_event(w.service.view(), event)


@router.post("/items/{event}/labels", response_model=LabelOut, status_code=201, responses=ERRORS)
@locked
def api_label(
    request: Request, event: EventId, body: LabelIn, x_csrf_token: Csrf = None
) -> dict[str, Any]:
    w = web(request)
    s = w.writer(request, x_csrf_token)
    return w.service.label(event, s.reviewer, body.verdict, score=body.score, reason=body.reason)


@router.get("/alerts", responses=ERRORS)
@locked
def api_alerts(request: Request) -> dict[str, Any]:
    w = web(request)
    w.api_session(request)
    return {"alerts": [a.to_json() for a in w.service.view().alerts.values()]}


@router.post(
    "/alerts/{alert}/decision", response_model=DecisionOut, status_code=201, responses=ERRORS
)
@locked
def api_decision(
    request: Request, alert: EventId, body: DecisionIn, x_csrf_token: Csrf = None
) -> dict[str, Any]:
    w = web(request)
    s = w.writer(request, x_csrf_token)
    return w.service.decide(alert, body.decision, s.reviewer, body.reason)
