"""Errors as `application/problem+json` (RFC 9457), for every route and every way a request fails.

Routes raise `ApiProblem` (or use the helpers below), and the features they call raise
`FeatureError`s; `install_error_handlers` turns both, FastAPI's request validation errors,
Starlette's 404/405 and database outages into problem documents, each built by
service.domain.problems with its `code`. No handler echoes request headers or bodies, so an API
key never reaches an error text.

`problem_responses(...)` declares the problem answers of a route in the OpenAPI schema.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import orjson
import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from service.api.methods import allowed_methods
from service.domain import problems
from service.domain.problems import ProblemKind, kind_of_status, problem_document, status_title
from service.features.errors import FeatureError

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
DATABASE_RETRY_AFTER_S = 5


class FieldProblem(BaseModel):
    field: str | None = Field(
        description="Where the problem is, e.g. `task_id`, `query.limit`, `tasks[3].metadata`."
    )
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(
        default="about:blank",
        description="A URI naming the kind of problem; `about:blank` when the status says it all.",
    )
    title: str
    status: int
    detail: str = Field(description="What went wrong, in words a person can act on.")
    code: str = Field(
        description="A stable machine-readable code for this kind of problem, e.g. "
        "`VALIDATION_FAILED`, `NOT_FOUND`; the README lists them all.",
        examples=["VALIDATION_FAILED"],
    )
    errors: list[FieldProblem] | None = Field(
        default=None, description="For invalid input: each broken rule."
    )


class ApiProblem(Exception):
    """A request that cannot be served, with what to tell the client."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: ProblemKind | None = None,
        errors: Sequence[FieldProblem] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind if kind is not None else kind_of_status(status)
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers) if headers else None


def invalid_input(detail: str, errors: Sequence[FieldProblem] | None = None) -> ApiProblem:
    return ApiProblem(422, detail, kind=problems.VALIDATION_FAILED, errors=errors)


def problem_response(
    status: int,
    detail: str,
    *,
    kind: ProblemKind | None = None,
    errors: Sequence[FieldProblem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = problem_document(
        status,
        detail,
        kind if kind is not None else kind_of_status(status),
        errors=None if errors is None else [error.model_dump() for error in errors],
    )
    return Response(
        content=orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers) if headers else None,
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route whose failures are these problem statuses."""
    return {
        status: {
            "description": status_title(status),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
        }
        for status in statuses
    }


# asyncpg's errors (the intake pool's statements) that psycopg raises as OperationalError and
# InterfaceError, answered 503 alike: SQLSTATE classes 08 (connection), 53 (insufficient
# resources: too many connections), 57 (operator intervention: a shutdown) and 58 (system), and a
# connection closed under the statement.
ASYNCPG_OUTAGES: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    asyncpg.PostgresSystemError,
    asyncpg.InterfaceError,
)


class IntakeUnavailable(Exception):
    """No connection of the API's asyncpg intake pool within its wait, or none could be opened
    (service/api/resources.py): the database is down or overloaded, answered 503 as psycopg's
    and SQLAlchemy's outages are."""


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiProblem, _on_api_problem)  # type: ignore[arg-type]
    app.add_exception_handler(FeatureError, _on_feature_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http_exception)  # type: ignore[arg-type]
    for outage in (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
        psycopg_pool.PoolTimeout,
        IntakeUnavailable,
        *ASYNCPG_OUTAGES,
    ):
        app.add_exception_handler(outage, _on_database_unavailable)
    app.add_exception_handler(ClientDisconnect, _on_client_disconnect)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected)


async def _on_api_problem(request: Request, problem: ApiProblem) -> Response:
    return problem_response(
        problem.status,
        problem.detail,
        kind=problem.kind,
        errors=problem.errors,
        headers=problem.headers,
    )


def problem_of(error: FeatureError) -> ApiProblem:
    """A feature's refusal as the API answers it."""
    return ApiProblem(
        error.status,
        error.detail,
        kind=error.kind,
        errors=[FieldProblem(field=rule.field, message=rule.message) for rule in error.broken]
        or None,
    )


async def _on_feature_error(request: Request, error: FeatureError) -> Response:
    return await _on_api_problem(request, problem_of(error))


async def _on_request_validation(request: Request, error: RequestValidationError) -> Response:
    found = [
        FieldProblem(field=_location(item.get("loc", ())), message=str(item.get("msg", "invalid")))
        for item in error.errors()
    ]
    detail = "; ".join(
        f"{problem.field}: {problem.message}" if problem.field else problem.message
        for problem in found
    )
    return problem_response(
        422, detail or "invalid request", kind=problems.VALIDATION_FAILED, errors=found
    )


async def _on_http_exception(request: Request, error: HTTPException) -> Response:
    if isinstance(error.__cause__, ApiProblem):
        # Our own reading of a route's JSON body (bodies.JsonBodyRequest) refused it; FastAPI
        # wraps whatever its body reading raises in a 400.
        return await _on_api_problem(request, error.__cause__)
    if error.status_code == 400 and error.__cause__ is not None:
        # FastAPI's own reading of a route's JSON body (the one 400 in this app) failed: the same
        # 422 as every other invalid body, with a reason instead of "error parsing the body".
        return problem_response(
            422,
            f"the request body is not valid JSON: {_unreadable_body_reason(error.__cause__)}",
            kind=problems.VALIDATION_FAILED,
        )
    detail = error.detail if isinstance(error.detail, str) else status_title(error.status_code)
    if error.status_code == 404 and error.detail == "Not Found":
        detail = f"no route {request.url.path!r}"
    elif error.status_code == 405:
        allowed = allowed_methods(request.app, request.scope)
        if allowed:
            # Starlette lists only the methods of the first route that matched the path.
            headers = {**(error.headers or {}), "Allow": ", ".join(allowed)}
            return problem_response(
                405,
                f"{request.method} is not allowed here; use {', '.join(allowed)}",
                headers=headers,
            )
    return problem_response(error.status_code, detail, headers=error.headers)


def _unreadable_body_reason(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return "it is not UTF-8"
    if isinstance(cause, RecursionError):
        return "it is nested too deeply"
    return "it cannot be parsed"


async def _on_database_unavailable(request: Request, error: Exception) -> Response:
    # The exception text can carry connection details; the type name is enough to diagnose.
    log.warning("api.database_unavailable", extra={"error_type": type(error).__name__})
    return problem_response(
        503,
        "the database is unavailable; retry shortly",
        kind=problems.DATABASE_UNAVAILABLE,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _on_client_disconnect(request: Request, error: ClientDisconnect) -> Response:
    """The client hung up before its whole body came: nobody to answer, nothing of ours failed.
    One line at info (it is reachable without authentication, so no traceback to flood with)."""
    client = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
    log.info(
        "http.client_disconnected",
        extra={"method": request.method, "path": request.url.path, "client": client},
    )
    return Response(status_code=400)


async def _on_unexpected(request: Request, error: Exception) -> Response:
    log.error(
        "api.unexpected_error",
        extra={"error_type": type(error).__name__, "path": request.url.path},
        exc_info=error,
    )
    return problem_response(500, "an unexpected error occurred; it has been logged")


def _location(loc: Sequence[Any]) -> str | None:
    """`('query', 'limit')` -> `query.limit`; `('body', 'tasks', 3)` -> `tasks[3]`."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None
