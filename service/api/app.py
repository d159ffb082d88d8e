"""The FastAPI application: `create_app(settings)` wires the routers, the error handlers, the body
limit and the lifespan that owns the database engine and the Redis client.

`phonebridge api` serves it with uvicorn (`service.api.app:create_app`, factory=True). To add a
resource, write its router module and add it to ROUTERS: one line.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api import (
    callbacks,
    check_job_models,
    check_jobs,
    checks,
    deliveries,
    events,
    health,
    metrics,
    stats,
    subscriptions,
    tasks,
)
from service.api.auth import SECURITY_SCHEME, SECURITY_SCHEME_NAME
from service.api.body_limit import BodySizeLimit
from service.api.client_limits import RateLimitHeaders
from service.api.docs import install_docs
from service.api.errors import Problem, install_error_handlers, problem_responses
from service.api.methods import HeadAndOptions
from service.api.portal import job_pages
from service.api.portal.pages import router as portal_router
from service.api.portal.session import PortalSecurityHeaders
from service.api.resources import api_lifespan
from service.api.responses import JsonResponse
from service.config import Settings, get_settings
from service.observability.traces import start_tracing
from service.webhooks.guard import HostResolver

# The order is the order requests are matched in: each router passed costs a request its routes'
# path matching (FastAPI's included routers match twice over), so registration, the busiest
# route, comes first (issue 28). It is also the order of the OpenAPI schema's paths.
ROUTERS = (
    tasks.router,
    health.router,
    metrics.router,
    events.router,
    deliveries.router,
    subscriptions.router,
    portal_router,
    stats.router,
    checks.router,
    check_jobs.router,
    callbacks.router,
)

# Models that routes reference by name in the OpenAPI schema without FastAPI seeing them as a
# parameter: the problem document, and the request bodies that routes read themselves.
SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    Problem,
    tasks.TaskRegistration,
    tasks.TaskBatch,
    checks.CheckSubmission,
    check_job_models.CheckJobIn,
)

DESCRIPTION = """\
phonebridge polls AccuAuth phone-check tasks until they finish and pushes the results to your
webhooks. Every `/v1` call needs `Authorization: Bearer <api key>`. Errors are
`application/problem+json` (RFC 9457). Request bodies over 1 MiB (a check job's: 16 MiB) answer
413.
"""


def create_app(
    settings: Settings | None = None, *, resolver: HostResolver | None = None
) -> FastAPI:
    """The app; `resolver` vets webhook hosts instead of the system's DNS (tests)."""
    settings = settings if settings is not None else get_settings()
    app = FastAPI(
        title="phonebridge",
        version="1",
        description=DESCRIPTION,
        lifespan=partial(api_lifespan, resolver=resolver),
        default_response_class=JsonResponse,
        # Served by install_docs from local assets instead of FastAPI's CDN-based pages.
        docs_url=None,
        redoc_url=None,
        # phonebridge reports through its JSON logs and /metrics, and through OpenTelemetry only
        # the traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set; with them off, FastAPI skips its
        # per-request check of the OpenTelemetry providers.
        telemetry=_telemetry(settings),
        # Operation ids are the route functions' names (`register_task`, `get_task`): what a
        # generated client calls its methods, so short, and stable as long as the names are.
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_docs(app)
    app.add_middleware(
        BodySizeLimit,
        limits_by_path={**check_jobs.BODY_LIMITS, **job_pages.BODY_LIMITS},
        answered_by_route=job_pages.BODY_LIMITS.keys(),
    )
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(PortalSecurityHeaders)
    app.add_middleware(HeadAndOptions)
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = lambda: _openapi_schema(app)  # type: ignore[method-assign]
    return app


def _telemetry(settings: Settings) -> TelemetryConfig:
    """FastAPI's request spans on phonebridge's tracer provider while traces are on (the root of
    each task's trace: service/observability/traces.py); no metrics or logs through it."""
    config: TelemetryConfig = {
        "tracing": False,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
    }
    tracing = start_tracing(settings, "api")
    if tracing is not None:
        config["tracing"] = True
        config["tracer_provider"] = tracing.provider
    return config


def operation_id(route: APIRoute) -> str:
    return route.name


def _openapi_schema(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, definitions = models_json_schema(
            [(model, "validation") for model in SCHEMA_MODELS],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name, definition in definitions.get("$defs", {}).items():
            schemas.setdefault(name, definition)
        components.setdefault("securitySchemes", {})[SECURITY_SCHEME_NAME] = SECURITY_SCHEME
        # Every /v1 call is authenticated, so any may answer 401, and 429 once its address has
        # presented too many invalid keys (service/api/signins.py); any body may be too large
        # (413, BodySizeLimit) or not JSON (415, bodies.py).
        authenticated = problem_responses(401, 429)
        with_body = problem_responses(413, 415)
        for path, operations in schema.get("paths", {}).items():
            if path.startswith("/v1/"):
                for operation in operations.values():
                    operation["security"] = [{SECURITY_SCHEME_NAME: []}]
                    for status, response in authenticated.items():
                        operation["responses"].setdefault(str(status), response)
                    if "requestBody" in operation:
                        for status, response in with_body.items():
                            operation["responses"].setdefault(str(status), response)
        app.openapi_schema = schema
    return app.openapi_schema
