"""The review app's HTML pages and forms (server-rendered, no JavaScript).

::

    GET  /login, POST /login, POST /logout
    GET  /                     dashboard (refreshes every few seconds while the run is live)
    GET  /queue                the review queue (?reason=flag|disagreement|boundary|random)
    GET  /items/{event}        one reward event: prompt, completion, outcomes, alerts, form
    POST /items/{event}/label  label it
    GET  /alerts               alerts; a pause has continue / halt buttons
    POST /alerts/{alert}/decision

A successful form post redirects (303) to a page that says which ledger event recorded it.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from trustgrpo.review.auth import check_csrf
from trustgrpo.review.charts import Chart, line_chart, timeline
from trustgrpo.review.index import RunView
from trustgrpo.review.queue import REASONS
from trustgrpo.review.service import MAX_REASON, BadInput, ReviewError, parse_score
from trustgrpo.review.web import (
    LOGIN_COOKIE,
    MAX_EVENT,
    SESSION_COOKIE,
    EventId,
    Refused,
    local_path,
    locked,
    web,
)

router = APIRouter(tags=["pages"])
Reason = Literal["flag", "disagreement", "boundary", "random"]
PAGE_SIZE = 50


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    w = web(request)
    token = secrets.token_urlsafe(24)  # login CSRF: a cookie and a form field that must match
    response = w.render(
        request,
        "login.html",
        title="Log in",
        session=w.session_of(request),
        login_csrf=token,
        next=local_path(next),
    )
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/login", max_age=3600
    )
    return response


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    token: Annotated[str, Form(max_length=256)] = "",
    csrf: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    w = web(request)
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    if not expected or not secrets.compare_digest(expected.encode(), csrf.encode()):
        raise Refused(403, "the login form expired or came from elsewhere: reload it")
    s = w.sessions.login(token)
    if s is None:
        raise Refused(401, "unknown token")
    response = RedirectResponse(local_path(next), status_code=303)
    w.set_session_cookie(request, response, s)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=256)] = "") -> Response:
    w = web(request)
    s = w.session_of(request)
    if s is not None:
        if not check_csrf(s, csrf):
            raise Refused(403, "bad or missing CSRF token")
        w.sessions.logout(s.id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
@locked
def dashboard(request: Request) -> Response:
    w = web(request)
    s = w.page_session(request)
    try:
        view = w.service.view()
    except ReviewError as e:
        return w.render(
            request,
            "error.html",
            503,
            session=s,
            title="Waiting",
            refresh=w.refresh_s,
            status=503,
            heading="Waiting for the run",
            message=str(e),
            back="/",
        )
    summary = w.service.summary(view)
    last = "–"
    if view.last_ts:
        when = datetime.fromtimestamp(view.last_ts / 1000, timezone.utc)
        last = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return w.render(
        request,
        "dashboard.html",
        session=s,
        title="Dashboard",
        page="dashboard",
        refresh=None if view.finished else w.refresh_s,
        s=summary,
        reasons=REASONS,
        charts=charts(view, summary),
        waiting_alerts=view.waiting_alerts(),
        recent_alerts=sorted(view.alerts.values(), key=lambda a: -a.index)[:8],
        last_event=last,
    )


@router.get("/queue", response_class=HTMLResponse)
@locked
def queue_page(
    request: Request,
    reason: Reason | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_EVENT)] = 0,
) -> Response:
    w = web(request)
    s = w.page_session(request)
    view = w.service.view()
    pending = view.queue.pending(reason)
    page = pending[offset : offset + PAGE_SIZE]
    return w.render(
        request,
        "queue.html",
        session=s,
        title="Review queue",
        page="queue",
        items=[queue_row(view, it.event, it.reasons) for it in page],
        counts=view.queue.counts(),
        reasons=REASONS,
        reason=reason,
        offset=offset,
        limit=PAGE_SIZE,
        total=len(pending),
    )


@router.get("/items/{event}", response_class=HTMLResponse)
@locked
def item_page(
    request: Request,
    event: EventId,
    saved: Annotated[int | None, Query(ge=0, le=MAX_EVENT)] = None,
) -> Response:
    w = web(request)
    s = w.page_session(request)
    view = w.service.view()
    it = w.service.reward_event(view, event)
    notices = []
    lab = next((x for x in view.labels if x.index == saved), None)
    if lab is not None:  # what the redirect after a label names, read back from the ledger
        later = [o for o in view.overrides_on.get(lab.event, []) if o.index > lab.index]
        notices.append(
            (
                "ok",
                f"Saved: {lab.reviewer}'s label on event {lab.event} is ledger event "
                f"{lab.index}"
                + (f", the corrected reward is event {later[0].index}" if later else ""),
            )
        )
    nxt = next((p.event for p in view.queue.pending() if p.event != event), None)
    return w.render(
        request,
        "item.html",
        session=s,
        title=f"Event {event}",
        page="queue",
        it=it,
        next_item=nxt,
        notices=notices,
    )


@router.post("/items/{event}/label")
@locked
def label_form(
    request: Request,
    event: EventId,
    csrf: Annotated[str, Form(max_length=256)] = "",
    verdict: Annotated[str, Form(max_length=32)] = "",
    score: Annotated[str, Form(max_length=64)] = "",
    reason: Annotated[str, Form(max_length=MAX_REASON)] = "",
) -> Response:
    w = web(request)
    s = w.writer(request, csrf)
    if not verdict:
        raise BadInput("verdict: choose correct, incorrect or can't tell")
    out = w.service.label(event, s.reviewer, verdict, score=parse_score(score), reason=reason)
    view = w.service.view()
    nxt = next((p.event for p in view.queue.pending() if p.event != event), event)
    return RedirectResponse(f"/items/{nxt}?saved={out['feedback']}", status_code=303)


@router.get("/alerts", response_class=HTMLResponse)
@locked
def alerts_page(
    request: Request, decided: Annotated[int | None, Query(ge=0, le=MAX_EVENT)] = None
) -> Response:
    w = web(request)
    s = w.page_session(request)
    view = w.service.view()
    notices = [
        ("ok", f"Alert {a.index}: {a.decision.get('decision')} recorded as ledger event {decided}")
        for a in view.alerts.values()
        if a.decision and a.decision.get("event") == decided
    ]
    return w.render(
        request,
        "alerts.html",
        session=s,
        title="Alerts",
        page="alerts",
        alerts=sorted(view.alerts.values(), key=lambda a: (not a.waiting, -a.index)),
        reward_events=view.rows,
        notices=notices,
    )


@router.post("/alerts/{alert}/decision")
@locked
def decision_form(
    request: Request,
    alert: EventId,
    csrf: Annotated[str, Form(max_length=256)] = "",
    decision: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=MAX_REASON)] = "",
) -> Response:
    w = web(request)
    s = w.writer(request, csrf)
    out = w.service.decide(alert, decision, s.reviewer, reason)
    return RedirectResponse(f"/alerts?decided={out['event']}#alert-{alert}", status_code=303)


# ---------------------------------------------------------------------- helpers


def queue_row(
    view: RunView, event: int, reasons: list[str], alerts: list[int] | None = None
) -> dict[str, Any]:
    """One queue entry as the queue page and ``/api/queue`` show it."""
    row = view.rows[event]
    completion = view.text(view.event(event).body.get("completion_blob")) or ""
    out: dict[str, Any] = {
        "event": event,
        "step": row.step,
        "reasons": list(reasons),
        "verdict": row.verdict,
        "reward": row.reward,
        "excerpt": completion[:160] + ("…" if len(completion) > 160 else ""),
    }
    if alerts is not None:
        out["alerts"] = list(alerts)
    return out


def charts(view: RunView, summary: dict[str, Any]) -> list[Chart]:
    """The dashboard's charts: reward per component, success and held-out accuracy,
    completion length, alerts on a timeline."""
    steps = summary["steps"]
    comps: dict[str, list[tuple[int, float | None]]] = {
        "reward (final)": [(r["step"], r["reward_mean"]) for r in steps]
    }
    for c in view.components:
        role = view.roles.get(c, "reward")
        comps[c if role == "reward" else f"{c} ({role})"] = [
            (r["step"], r["components"].get(c)) for r in steps
        ]
    success = {
        "train success": [(r["step"], r["success"]) for r in steps],
        "held-out accuracy": [
            (r["step"], r["eval_accuracy"]) for r in steps if r["eval_accuracy"] is not None
        ],
        "truncated share": [(r["step"], r["truncated"]) for r in steps],
    }
    lengths = {"mean completion tokens": [(r["step"], r["mean_tokens"]) for r in steps]}
    marks = [
        (
            a["step"] if a["step"] is not None else 0,
            a["severity"],
            f"#{a['index']} {a['detector']}/{a['check']} ({a['severity']}): {a['message'][:200]}",
            f"/alerts#alert-{a['index']}",
        )
        for a in summary["alerts"]
    ]
    return [
        line_chart("Reward per component (mean per step)", comps),
        line_chart("Success and held-out accuracy", success, y_range=(0.0, 1.0)),
        line_chart("Completion length", lengths),
        timeline("Alerts", [r["step"] for r in steps], marks),
    ]
