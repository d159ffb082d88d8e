"""GET /hooks/accuauth/{token}: upstream's completion callback, the one route upstream must reach.

No Authorization (upstream sends none): the token is the secret. The answer is always 200
{"status": "OK"}, whatever the callback carries, so a caller learns nothing from it; a callback
is only ever a hint (service/checks/callback_hints.py), never a result.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from service.api.resources import resources_of
from service.checks.callback_hints import HOOK_PATH

log = logging.getLogger(__name__)

router = APIRouter(tags=["hooks"])

_OK = b'{"status":"OK"}'


@router.get(
    f"{HOOK_PATH}{{token}}",
    summary="Upstream's completion callback (a hint; never a result)",
    responses={200: {"content": {"application/json": {"example": {"status": "OK"}}}}},
)
async def accuauth_callback(
    token: str,
    request: Request,
    task_id: Annotated[str | None, Query()] = None,
    request_id: Annotated[str | None, Query()] = None,
    phone_number: Annotated[str | None, Query()] = None,
    phone_status: Annotated[str | None, Query()] = None,
) -> Response:
    # request_id, phone_number and phone_status are published (upstream sends them) but unused:
    # an unsigned callback proves nothing, the poll that follows decides.
    try:
        await resources_of(request).hints.receive(token, task_id)
    except Exception as error:
        # Upstream gets its OK whatever happens; the poll schedule is the safety net.
        log.warning("hint.not_applied", extra={"error_type": type(error).__name__})
    return Response(_OK, media_type="application/json")
