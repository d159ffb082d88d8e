"""Which module serves which route: a maintainer looking for `GET /v1/events/{event_id}` opens
service/api/events.py. Each router holds exactly its routes, and the app includes every router
and no other."""

from __future__ import annotations

from types import ModuleType

import pytest
from fastapi.routing import APIRoute

from service.api import (
    callbacks,
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
from service.api.app import ROUTERS
from service.api.portal import job_pages, pages, task_pages, webhook_pages

Route = tuple[str, str]

ROUTES_BY_MODULE: dict[ModuleType, set[Route]] = {
    callbacks: {("GET", "/hooks/accuauth/{token}")},
    checks: {("GET", "/v1/callback-url"), ("POST", "/v1/checks")},
    check_jobs: {
        ("POST", "/v1/check-jobs"),
        ("GET", "/v1/check-jobs"),
        ("GET", "/v1/check-jobs/{job_id}"),
        ("POST", "/v1/check-jobs/{job_id}/start"),
        ("POST", "/v1/check-jobs/{job_id}/pause"),
        ("POST", "/v1/check-jobs/{job_id}/resume"),
        ("POST", "/v1/check-jobs/{job_id}/cancel"),
        ("GET", "/v1/check-jobs/{job_id}/rejections"),
        ("GET", "/v1/check-jobs/{job_id}/results"),
    },
    deliveries: {
        ("GET", "/v1/events/{event_id}/deliveries"),
        ("POST", "/v1/events/{event_id}/redeliver"),
    },
    events: {("GET", "/v1/events"), ("GET", "/v1/events/{event_id}")},
    health: {("GET", "/healthz"), ("GET", "/readyz")},
    metrics: {("GET", "/metrics")},
    stats: {("GET", "/v1/stats/completion-times")},
    subscriptions: {
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions/{subscription_id}"),
        ("PATCH", "/v1/subscriptions/{subscription_id}"),
        ("DELETE", "/v1/subscriptions/{subscription_id}"),
        ("GET", "/v1/subscriptions/{subscription_id}/health"),
        ("GET", "/v1/subscriptions/{subscription_id}/secret"),
        ("POST", "/v1/subscriptions/{subscription_id}/rotate-secret"),
        ("POST", "/v1/subscriptions/{subscription_id}/recover"),
    },
    tasks: {
        ("POST", "/v1/tasks"),
        ("POST", "/v1/tasks/batch"),
        ("GET", "/v1/tasks"),
        ("GET", "/v1/tasks/{task_id}"),
        ("DELETE", "/v1/tasks/{task_id}"),
    },
    pages: {
        ("GET", "/portal"),
        ("GET", "/portal/sign-in"),
        ("POST", "/portal/sign-in"),
        ("POST", "/portal/sign-out"),
        ("GET", "/portal/static/portal.css"),
    },
    task_pages: {
        ("GET", "/tasks"),
        ("GET", "/tasks/{task_id}"),
        ("GET", "/checks/new"),
        ("POST", "/checks"),
    },
    job_pages: {
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/jobs/{job_id}"),
        ("POST", "/jobs/{job_id}/{move}"),
        ("GET", "/jobs/{job_id}/results.csv"),
    },
    webhook_pages: {
        ("GET", "/deliveries"),
        ("POST", "/events/{event_id}/redeliver"),
        ("GET", "/subscriptions"),
        ("POST", "/subscriptions"),
        ("POST", "/subscriptions/{subscription_id}/catch-up"),
        ("POST", "/subscriptions/{subscription_id}/enabled"),
        ("POST", "/subscriptions/{subscription_id}/pace"),
        ("POST", "/subscriptions/{subscription_id}/recover"),
        ("POST", "/subscriptions/{subscription_id}/reveal"),
        ("POST", "/subscriptions/{subscription_id}/rotate"),
        ("POST", "/subscriptions/{subscription_id}/test"),
    },
}
# The portal's page modules are mounted under /portal by pages.py.
PORTAL_PAGES = {task_pages, job_pages, webhook_pages}


def routes_of(routes: list[object]) -> set[Route]:
    return {
        (method, route.path)
        for route in routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }


@pytest.mark.parametrize("module", ROUTES_BY_MODULE, ids=lambda module: module.__name__)
def test_each_router_declares_exactly_its_routes(module: ModuleType) -> None:
    assert routes_of(module.router.routes) == ROUTES_BY_MODULE[module]


def test_the_app_includes_every_router_and_no_other() -> None:
    included = {id(router) for router in ROUTERS}

    assert len(included) == len(ROUTERS)
    assert included == {
        id(module.router) for module in ROUTES_BY_MODULE if module not in PORTAL_PAGES
    }
