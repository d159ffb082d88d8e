"""GET /metrics: Prometheus text format, for the operator's scraper (no authentication, like
/healthz; keep it off the public internet)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from service.api.deps import ResourcesDep
from service.api.health import database_state
from service.observability.scrape import read_operations_state, render_metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(resources: ResourcesDep) -> Response:
    state, database = await asyncio.gather(
        read_operations_state(
            resources.redis, resources.settings.upstream_max_rps, resources.clock()
        ),
        database_state(resources),
    )
    state = replace(state, database_up=database == "ok")
    return Response(render_metrics(state), media_type=CONTENT_TYPE_LATEST)
