"""Liveness and readiness, for load balancers and orchestrators (no authentication)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text
from starlette.responses import Response

from service.api.deps import ResourcesDep
from service.api.resources import ApiResources
from service.api.responses import json_response
from service.upstream.pause import read_pause

router = APIRouter(tags=["operations"])

DATABASE_CHECK_TIMEOUT_S = 2.0
REDIS_CHECK_TIMEOUT_S = 1.0

DependencyState = Literal["ok", "down"]


class UpstreamState(BaseModel):
    paused: bool | None
    reason: str | None = None
    since: str | None = None


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    database: DependencyState
    redis: DependencyState
    upstream: UpstreamState


class Liveness(BaseModel):
    status: Literal["ok"]


@router.get("/healthz", response_model=Liveness, summary="Liveness: 200 while the process runs")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: the database and Redis answer",
    responses={503: {"model": Readiness, "description": "The database or Redis is down"}},
)
async def readyz(resources: ResourcesDep) -> Response:
    database, (redis, upstream) = await asyncio.gather(
        database_state(resources), _redis_and_pause(resources)
    )
    ready = database == "ok" and redis == "ok"
    body = {
        "status": "ok" if ready else "unavailable",
        "database": database,
        "redis": redis,
        # A pause alone keeps the API ready: intake still works while polling waits.
        "upstream": upstream,
    }
    return json_response(body, status_code=200 if ready else 503)


async def database_state(resources: ApiResources) -> DependencyState:
    """`ok` when PostgreSQL answers a SELECT 1 in time: /readyz's check, and /metrics'."""
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_S):
            async with resources.autocommit_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception:  # any failure means "down" to a readiness probe
        return "down"
    return "ok"


async def _redis_and_pause(resources: ApiResources) -> tuple[DependencyState, dict[str, Any]]:
    try:
        async with asyncio.timeout(REDIS_CHECK_TIMEOUT_S):
            await resources.redis.ping()
            pause = await read_pause(resources.redis)
    except Exception:  # any failure means "down" to a readiness probe
        return "down", {"paused": None}
    if pause is None:
        return "ok", {"paused": False}
    return "ok", {"paused": True, "reason": pause.reason, "since": pause.since.isoformat()}
