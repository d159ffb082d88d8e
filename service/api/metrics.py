"""GET /metrics: Prometheus text format, for the operator's scraper (no authentication, like
/healthz; keep it off the public internet)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from service.api.deps import ResourcesDep
from service.observability.scrape import read_operations_state, render_metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(resources: ResourcesDep) -> Response:
    state = await read_operations_state(
        resources.redis, resources.settings.upstream_max_rps, resources.clock()
    )
    return Response(render_metrics(state), media_type=CONTENT_TYPE_LATEST)
