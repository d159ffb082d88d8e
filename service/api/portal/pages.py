"""The portal's routes: signing in and out and the overview here, the task pages in
task_pages.py, the check job pages in job_pages.py and the webhook pages in webhook_pages.py, all
under `router`. Thin: each checks
the session (and, for a form, its CSRF token), calls the service.features function the REST API
calls, and renders a template (rendering.py)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from service.api.auth import SignInRefusal, SignInRefused, source_of
from service.api.auth import sign_in as sign_in_with_key
from service.api.deps import SessionDep
from service.api.portal import charts, job_pages, rendering, task_pages, webhook_pages
from service.api.portal.rendering import render
from service.api.portal.session import (
    PORTAL_PATH,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_NONCE_S,
    PortalRefusal,
    PortalRoute,
    PortalSessionDep,
    clear_cookie,
    end_session,
    form_fields,
    new_session,
    new_sign_in_nonce,
    read_form,
    see_other,
    set_cookie,
    sign_in_csrf,
    sign_in_csrf_matches,
)
from service.api.resources import resources_of
from service.features.keys import api_key_digest
from service.features.overview import CHART_ROW_CAP, COUNT_CAP, client_overview

log = logging.getLogger(__name__)

router = APIRouter(prefix=PORTAL_PATH, include_in_schema=False, route_class=PortalRoute)


@router.get("/static/portal.css")
async def stylesheet() -> Response:
    return FileResponse(rendering.HERE / "static" / "portal.css", media_type="text/css")


# --- signing in and out -----------------------------------------------------------------------


def _sign_in_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    resources = resources_of(request)
    nonce = new_sign_in_nonce(resources)
    response = render(
        request,
        "sign_in.html",
        {"csrf": sign_in_csrf(resources, nonce), "error": error},
        status_code=status_code,
    )
    set_cookie(request, response, SIGN_IN_COOKIE, nonce, SIGN_IN_NONCE_S)
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    resources = resources_of(request)
    fields = await form_fields(request)
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if not sign_in_csrf_matches(resources, nonce, fields.get("csrf")):
        raise PortalRefusal(403, "the sign-in form has expired or was not ours; load it again")
    key = fields.get("api_key", "").strip()
    try:
        client = await sign_in_with_key(resources, key, source_of(request))
    except SignInRefused as refused:
        if refused.reason is SignInRefusal.THROTTLED:
            page = _sign_in_page(
                request,
                "Too many invalid API keys from this address; try again in "
                f"{refused.retry_after_s} s.",
                429,
            )
            page.headers["Retry-After"] = str(refused.retry_after_s)
            return page
        if refused.reason is SignInRefusal.NOT_A_KEY:
            return _sign_in_page(request, "That is not an API key (they start with pbk_).", 401)
        return _sign_in_page(request, "That API key is not valid (unknown or revoked).", 401)
    cookie, lifetime = new_session(resources, client.id, api_key_digest(key))
    response = see_other(PORTAL_PATH)
    set_cookie(request, response, SESSION_COOKIE, cookie, lifetime)
    clear_cookie(request, response, SIGN_IN_COOKIE)
    log.info("portal.signed_in", extra={"client_id": client.id})
    return response


@router.post("/sign-out")
async def sign_out(request: Request, session: PortalSessionDep) -> Response:
    await read_form(request, session)
    await end_session(resources_of(request), session.claims)
    response = see_other(f"{PORTAL_PATH}/sign-in?notice=signed-out")
    clear_cookie(request, response, SESSION_COOKIE)
    return response


# --- overview -----------------------------------------------------------------------------------


@router.get("")
async def overview(request: Request, session: PortalSessionDep, db: SessionDep) -> Response:
    resources = resources_of(request)
    hours = charts.hours_ending(resources.clock())
    seen = await client_overview(db, resources.redis, session.client.id, hours[0])
    return render(
        request,
        "overview.html",
        {
            "counts": seen.counts,
            "count_cap": COUNT_CAP,
            "pause": seen.pause,
            "callbacks": seen.callbacks,
            "charts": [
                charts.finished_chart(hours, seen.finished),
                charts.verdict_chart(hours, seen.verdicts),
                charts.delivery_chart(hours, seen.delivered),
                charts.lag_chart(hours, seen.finished),
            ],
            "chart_width": charts.WIDTH,
            "chart_height": charts.HEIGHT,
            "chart_row_cap": CHART_ROW_CAP,
        },
        session=session,
    )


router.include_router(task_pages.router)
router.include_router(job_pages.router)
router.include_router(webhook_pages.router)
