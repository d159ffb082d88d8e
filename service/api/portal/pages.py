"""The portal's routes. Thin: each checks the session (and, for a form, its CSRF token), reads or
writes through the store functions the REST API uses, and renders a template."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from pydantic import ValidationError
from starlette.responses import FileResponse, Response
from starlette.templating import Jinja2Templates

from service.accounts import api_key_digest
from service.api.auth import SignInRefusal, SignInRefused, source_of
from service.api.auth import sign_in as sign_in_with_key
from service.api.checks import submit_for_client
from service.api.deps import SessionDep
from service.api.errors import ApiProblem
from service.api.portal import charts
from service.api.portal.session import (
    PORTAL_PATH,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_NONCE_S,
    PortalRefusal,
    PortalRoute,
    PortalSession,
    PortalSessionDep,
    all_values,
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
from service.api.portal.timeline import task_timeline
from service.api.resources import hot_connection, resources_of
from service.api.subscriptions import (
    SubscriptionCreate,
    open_subscription,
    rotate_signing_secret,
)
from service.domain.checks import PHONE_RULE, valid_idempotency_key, validate_check
from service.domain.intake import TASK_ID_PATTERN, Rejection
from service.domain.jsontext import compact_json, json_bytes
from service.domain.states import EventType, TaskState
from service.engine.pause import read_pause
from service.store import deliveries as delivery_store
from service.store import portal as portal_store
from service.store import subscriptions as subscription_store
from service.store import tasks as task_store
from service.store.callbacks import callback_record
from service.webhooks.ping import send_test_event
from service.webhooks.sender import WebhookSender

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PAGE_SIZE = 50
SUBSCRIPTIONS_SHOWN = 100

# Outcomes of a form, named in the URL after its redirect (never free text: nothing a request
# carries is reflected into the page this way).
NOTICES = {
    "signed-out": "Signed out.",
    "redelivered": "The delivery goes out again now; its new attempt appears below once made.",
    "not-redelivered": "Nothing was sent again: the subscription is disabled or deleted.",
    "recovered": "The failed deliveries of that window go out again now.",
    "enabled": "Subscription enabled.",
    "disabled": "Subscription disabled; its pending deliveries stopped.",
    "tested": "Test event sent; its attempt is shown in the subscription's row.",
    "submitted": "Check submitted upstream; its answer appears below once a poll finds it.",
}

templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )
)

templates.env.filters["compact_json"] = compact_json

router = APIRouter(prefix=PORTAL_PATH, include_in_schema=False, route_class=PortalRoute)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    session: PortalSession | None = None,
    status_code: int = 200,
) -> Response:
    csrf = session.csrf if session is not None else context.get("csrf", "")

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="csrf" value="{}">').format(csrf)

    notice = NOTICES.get(request.query_params.get("notice", ""))
    return templates.TemplateResponse(
        request,
        template,
        {"session": session, "csrf_field": csrf_field, "notice": notice, **context},
        status_code=status_code,
    )


def refusal_page(request: Request, status: int, detail: str) -> Response:
    return render(request, "refused.html", {"status": status, "detail": detail}, status_code=status)


PortalRoute.refusal_page = staticmethod(refusal_page)


@router.get("/static/portal.css")
async def stylesheet() -> Response:
    return FileResponse(HERE / "static" / "portal.css", media_type="text/css")


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
    now = resources.clock()
    hours = charts.hours_ending(now)
    client_id = session.client.id
    counts = await portal_store.count_tasks_by_state(db, client_id)
    finished = await portal_store.finished_tasks_by_hour(db, client_id, hours[0])
    delivered = await portal_store.delivery_outcomes_by_hour(db, client_id, hours[0])
    return render(
        request,
        "overview.html",
        {
            "counts": [(state, counts.get(state, 0)) for state in TaskState],
            "count_cap": portal_store.COUNT_CAP,
            "pause": await read_pause(resources.redis),
            "callbacks": await callback_record(db, client_id),
            "charts": [
                charts.finished_chart(hours, finished),
                charts.delivery_chart(hours, delivered),
                charts.lag_chart(hours, finished),
            ],
            "chart_width": charts.WIDTH,
            "chart_height": charts.HEIGHT,
            "chart_row_cap": portal_store.CHART_ROW_CAP,
        },
        session=session,
    )


# --- tasks --------------------------------------------------------------------------------------


@router.get("/tasks")
async def tasks(
    request: Request,
    session: PortalSessionDep,
    state: Annotated[TaskState | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
    find: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if find:
        find = find.strip()
        if TASK_ID_PATTERN.fullmatch(find) is None:
            raise PortalRefusal(422, "a task id is 1-128 characters of A-Za-z0-9._:-")
        return see_other(f"{PORTAL_PATH}/tasks/{find}")
    resources = resources_of(request)
    async with hot_connection(resources) as conn:
        rows = await task_store.list_tasks(
            conn, session.client.id, state=state, before_id=before, limit=PAGE_SIZE + 1
        )
    page, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    return render(
        request,
        "tasks.html",
        {
            "tasks": page,
            "state": state,
            "states": list(TaskState),
            "next_before": page[-1].id if more else None,
        },
        session=session,
    )


@router.get("/tasks/{task_id}")
async def task(
    request: Request, task_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    if TASK_ID_PATTERN.fullmatch(task_id) is None:
        raise PortalRefusal(404, "no such task for this client")
    resources = resources_of(request)
    async with hot_connection(resources) as conn:
        row = await task_store.find_task(conn, session.client.id, task_id)
    story = await portal_store.find_task_story(db, session.client.id, task_id)
    if row is None or story is None:
        raise PortalRefusal(404, f"no task {task_id!r} registered by this client")
    deliveries = (
        await delivery_store.list_event_deliveries(db, story.event_pk)
        if story.event_pk is not None
        else []
    )
    return render(
        request,
        "task.html",
        {
            "task": row,
            "story": story,
            "deliveries": deliveries,
            "timeline": task_timeline(row, story, deliveries),
            "metadata_json": json_bytes(row.metadata, indent=True).decode(),
        },
        session=session,
    )


# --- submitting a check -------------------------------------------------------------------------


def _check_form(
    request: Request,
    session: PortalSession,
    *,
    phone_number: str = "",
    metadata: str = "",
    error: str | None = None,
    code: str | None = None,
    status_code: int = 200,
) -> Response:
    # A fresh Idempotency-Key per form shown: posting the same form twice (back, then submit
    # again) answers the first answer again instead of submitting a second check.
    return render(
        request,
        "check.html",
        {
            "phone_number": phone_number,
            "metadata": metadata,
            "idempotency_key": f"portal-{secrets.token_hex(16)}",
            "error": error,
            "code": code,
            "phone_rule": PHONE_RULE,
        },
        session=session,
        status_code=status_code,
    )


@router.get("/checks/new")
async def check_form(request: Request, session: PortalSessionDep) -> Response:
    return _check_form(request, session)


@router.post("/checks")
async def submit_check(request: Request, session: PortalSessionDep) -> Response:
    fields = await read_form(request, session)
    phone_number = fields.get("phone_number", "").strip()
    metadata_text = fields.get("metadata", "").strip()

    def again(error: str, status_code: int, code: str | None = None) -> Response:
        return _check_form(
            request,
            session,
            phone_number=phone_number,
            metadata=metadata_text,
            error=error,
            code=code,
            status_code=status_code,
        )

    body: dict[str, Any] = {"phone_number": phone_number}
    if metadata_text:
        try:
            body["metadata"] = orjson.loads(metadata_text)
        except orjson.JSONDecodeError:
            return again("metadata: is not valid JSON (leave it empty, or give an object)", 422)
    idempotency_key = fields.get("idempotency_key") or None
    if idempotency_key is not None and not valid_idempotency_key(idempotency_key):
        raise PortalRefusal(422, "the form's idempotency key is not 1-255 printable ASCII")
    checked = validate_check(body)
    if isinstance(checked, Rejection):
        return again(checked.detail, 422)
    resources = resources_of(request)
    try:
        answer = await submit_for_client(
            resources, request, session.client, checked, idempotency_key
        )
    except ApiProblem as problem:
        return again(problem.detail, problem.status)
    answered = orjson.loads(answer.body_json)
    if answer.is_problem:
        return again(str(answered.get("detail", "")), answer.status, answer.code)
    return see_other(f"{PORTAL_PATH}/tasks/{answered['task_id']}?notice=submitted")


# --- deliveries ---------------------------------------------------------------------------------


@router.get("/deliveries")
async def failed_deliveries(
    request: Request,
    session: PortalSessionDep,
    db: SessionDep,
    before: Annotated[datetime | None, Query()] = None,
) -> Response:
    rows = await portal_store.list_failed_deliveries(
        db, session.client.id, before=before, limit=PAGE_SIZE + 1
    )
    page, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    subscriptions = await subscription_store.list_subscriptions(
        db, session.client.id, before_pk=None, limit=SUBSCRIPTIONS_SHOWN
    )
    return render(
        request,
        "deliveries.html",
        {
            "deliveries": page,
            "next_before": page[-1].finished_at.isoformat() if more else None,
            "subscriptions": subscriptions,
            "default_since": (resources_of(request).clock() - timedelta(days=1)).strftime(
                "%Y-%m-%dT%H:%M"
            ),
        },
        session=session,
    )


@router.post("/events/{event_id}/redeliver")
async def redeliver(
    request: Request, event_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    fields = await read_form(request, session)
    event_pk = await delivery_store.find_event_pk(db, session.client.id, event_id[:64])
    if event_pk is None:
        raise PortalRefusal(404, "no such event for this client")
    put_back = await delivery_store.redeliver_event(
        db, event_pk, fields.get("subscription_id") or None, resources_of(request).clock()
    )
    notice = "redelivered" if put_back else "not-redelivered"
    back = fields.get("back", "")
    if back.startswith(f"{PORTAL_PATH}/tasks/") and TASK_ID_PATTERN.fullmatch(
        back.removeprefix(f"{PORTAL_PATH}/tasks/")
    ):
        return see_other(f"{back}?notice={notice}")
    return see_other(f"{PORTAL_PATH}/deliveries?notice={notice}")


def _utc_minute(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PortalRefusal(422, f"{name} must be a date and time, e.g. 2026-12-01T09:30") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@router.post("/subscriptions/{subscription_id}/recover")
async def recover(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    fields = await read_form(request, session)
    since = _utc_minute(fields.get("since", ""), "since")
    until = _utc_minute(fields["until"], "until") if fields.get("until") else None
    if until is not None and until <= since:
        raise PortalRefusal(422, "until must be later than since")
    subscription = await _subscription(db, session, subscription_id)
    if not subscription.enabled:
        raise PortalRefusal(409, "that subscription is disabled; enable it before recovering")
    await delivery_store.recover_failed(
        db, subscription.pk, since, until, resources_of(request).clock()
    )
    return see_other(f"{PORTAL_PATH}/deliveries?notice=recovered")


# --- subscriptions ------------------------------------------------------------------------------


async def _subscription(
    db: SessionDep, session: PortalSession, subscription_id: str
) -> subscription_store.SubscriptionRow:
    row = await subscription_store.find_subscription(db, session.client.id, subscription_id[:64])
    if row is None:
        raise PortalRefusal(404, "no such subscription for this client")
    return row


async def _subscriptions_page(
    request: Request,
    session: PortalSession,
    db: SessionDep,
    *,
    shown_secret: tuple[str, str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    rows = await subscription_store.list_subscriptions(
        db, session.client.id, before_pk=None, limit=SUBSCRIPTIONS_SHOWN
    )
    return render(
        request,
        "subscriptions.html",
        {
            "subscriptions": rows,
            "event_types": list(EventType),
            "shown_secret": shown_secret,
            "last_tests": await subscription_store.last_test_attempts(
                db, session.client.id, [row.pk for row in rows]
            ),
            "error": error,
        },
        session=session,
        status_code=status_code,
    )


@router.get("/subscriptions")
async def subscriptions(request: Request, session: PortalSessionDep, db: SessionDep) -> Response:
    return await _subscriptions_page(request, session, db)


@router.post("/subscriptions")
async def create_subscription(
    request: Request, session: PortalSessionDep, db: SessionDep
) -> Response:
    fields = await read_form(request, session)
    resources = resources_of(request)
    url = fields.get("url", "").strip()
    description = fields.get("description", "")
    chosen = await all_values(request, "event_types")
    try:
        event_types = [EventType(value) for value in chosen] or None
    except ValueError:
        raise PortalRefusal(422, "unknown event type") from None
    try:
        # The REST route's own rules (lengths, NUL, repeated event types), not a second copy.
        checked = SubscriptionCreate(url=url, event_types=event_types, description=description)
    except ValidationError:
        checked = None
    if not url or checked is None:
        return await _subscriptions_page(
            request,
            session,
            db,
            error="Give an http(s) URL (and a short description).",
            status_code=422,
        )
    try:
        row, secret = await open_subscription(
            db,
            resources,
            session.client.id,
            checked.url,
            checked.event_types,
            checked.description,
        )
    except ApiProblem as problem:
        return await _subscriptions_page(
            request, session, db, error=problem.detail, status_code=problem.status
        )
    return await _subscriptions_page(
        request, session, db, shown_secret=(row.id, secret, "created; its signing secret is")
    )


@router.post("/subscriptions/{subscription_id}/enabled")
async def set_enabled(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    fields = await read_form(request, session)
    enabled = fields.get("enabled") == "true"
    row = await subscription_store.update_subscription(
        db,
        session.client.id,
        subscription_id[:64],
        {"enabled": enabled},
        resources_of(request).clock(),
    )
    if row is None:
        raise PortalRefusal(404, "no such subscription for this client")
    notice = "enabled" if enabled else "disabled"
    return see_other(f"{PORTAL_PATH}/subscriptions?notice={notice}")


@router.post("/subscriptions/{subscription_id}/rotate")
async def rotate(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    await read_form(request, session)
    secret = await rotate_signing_secret(
        db, resources_of(request), session.client.id, subscription_id[:64]
    )
    if secret is None:
        raise PortalRefusal(404, "no such subscription for this client")
    return await _subscriptions_page(
        request,
        session,
        db,
        shown_secret=(subscription_id, secret, "rotated (the old secret signs too for 24 h); new"),
    )


@router.post("/subscriptions/{subscription_id}/reveal")
async def reveal(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    await read_form(request, session)
    stored = await subscription_store.find_secret(db, session.client.id, subscription_id[:64])
    if stored is None:
        raise PortalRefusal(404, "no such subscription for this client")
    secret = resources_of(request).cipher.decrypt(stored, subscription_id)
    return await _subscriptions_page(
        request, session, db, shown_secret=(subscription_id, secret, "signing secret:")
    )


@router.post("/subscriptions/{subscription_id}/test")
async def send_test(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    await read_form(request, session)
    subscription = await _subscription(db, session, subscription_id)
    stored = await subscription_store.find_secret(db, session.client.id, subscription.id)
    assert stored is not None
    resources = resources_of(request)
    sender = WebhookSender(
        resources.settings.webhook_timeout_s,
        resources.settings.webhook_allow_private,
        resources.resolver,
    )
    try:
        await send_test_event(
            sender,
            resources.sessions,
            resources.clock,
            session.client.id,
            subscription,
            resources.cipher.decrypt(stored, subscription.id),
        )
    finally:
        await sender.close()
    # Redirected, so reloading the page shows the result again without sending another test.
    return see_other(f"{PORTAL_PATH}/subscriptions?notice=tested#{subscription.id}")
