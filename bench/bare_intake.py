"""The bare endpoint that `POST /v1/tasks` is held against (issue 28): what a competent first
version of task registration looks like with FastAPI, a pydantic body and an asyncpg INSERT, and
nothing else (no authentication, limits, problem documents or idempotent answer).

bench/intake.py serves it the way it serves `phonebridge api`: one uvicorn process, uvloop and
httptools, no access log, on the same scratch database, with the same wrk script. It inserts into
the same `tasks` table with the same conflict rule, for the bench client
(BARE_INTAKE_CLIENT_ID), and answers 201 with the stored row.

    BARE_INTAKE_DATABASE_URL=postgresql://... BARE_INTAKE_CLIENT_ID=1 \
        .venv/bin/uvicorn --app-dir bench bare_intake:create_app --factory --port 8001
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

INSERT = """
    INSERT INTO tasks (client_id, task_id, state, metadata, submitted_at, expires_at,
                       registered_at, next_poll_at, updated_at, poll_count)
    VALUES ($1, $2, 'pending', $3, now(), now() + interval '1 day', now(), now(), now(), 0)
    ON CONFLICT (client_id, task_id) DO NOTHING
    RETURNING task_id, state, metadata, submitted_at, registered_at, expires_at, next_poll_at,
              poll_count
"""


class TaskIn(BaseModel):
    task_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    metadata: dict[str, Any] | None = None


class TaskOut(BaseModel):
    task_id: str
    state: str
    metadata: dict[str, Any] | None
    submitted_at: datetime
    registered_at: datetime
    expires_at: datetime
    next_poll_at: datetime | None
    poll_count: int


async def _json_codec(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def create_app() -> FastAPI:
    client_id = int(os.environ["BARE_INTAKE_CLIENT_ID"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The same bounds as phonebridge's hot pool (service/api/resources.py).
        app.state.pool = await asyncpg.create_pool(
            os.environ["BARE_INTAKE_DATABASE_URL"], min_size=4, max_size=32, init=_json_codec
        )
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/tasks", status_code=201, response_model=TaskOut)
    async def register_task(task: TaskIn, request: Request) -> Any:
        pool: asyncpg.Pool = request.app.state.pool
        async with pool.acquire() as conn:
            row = await conn.fetchrow(INSERT, client_id, task.task_id, task.metadata or {})
        if row is None:
            raise HTTPException(409, "task_id already registered")
        return dict(row)

    return app
