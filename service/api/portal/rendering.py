"""How a portal page is rendered: the templates, the notices a form's redirect may name, and the
refusal page (for a PortalRefusal and for a feature's refusal alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from service.api.portal.session import PortalRoute, PortalSession
from service.domain.jsontext import compact_json
from service.features.errors import FeatureError, NotFound

HERE = Path(__file__).parent

# Outcomes of a form, named in the URL after its redirect (never free text: nothing a request
# carries is reflected into the page this way).
NOTICES = {
    "signed-out": "Signed out.",
    "redelivered": "The delivery goes out again now; its new attempt appears below once made.",
    "not-redelivered": "Nothing was sent again: the subscription is disabled or deleted.",
    "recovered": "What failed in that window goes out again now, and so does every event of it "
    "that the subscription missed while it was disabled.",
    "enabled": "Subscription enabled.",
    "disabled": "Subscription disabled; its pending deliveries stopped.",
    "paced": "Pace set: the subscription's deliveries take their turns at the new rate.",
    "tested": "Test event sent; its attempt is shown in the subscription's row.",
    "submitted": "Check submitted upstream; its answer appears below once a poll finds it.",
    "job-drafted": "Draft saved: nothing is submitted until you start it. Below is what it will "
    "cost.",
    "job-created": "Job created and queued: its items are submitted at the pace upstream allows.",
    "job-start": "Job started: its items are submitted at the pace upstream allows.",
    "job-pause": "Job paused: nothing more is submitted until you resume it.",
    "job-resume": "Job resumed.",
    "job-cancel": "Job cancelled: nothing not yet submitted will be; what was submitted finishes "
    "and is reported.",
}

templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )
)

templates.env.filters["compact_json"] = compact_json


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


def feature_refusal_page(request: Request, error: FeatureError) -> Response:
    """A feature's refusal as a page. A 404 does not repeat the id from the URL back."""
    detail = (
        f"no such {error.resource} for this client" if isinstance(error, NotFound) else error.detail
    )
    return refusal_page(request, error.status, detail)


PortalRoute.refusal_page = staticmethod(refusal_page)
PortalRoute.feature_refusal_page = staticmethod(feature_refusal_page)
