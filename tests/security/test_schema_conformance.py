"""Schemathesis against the app's own OpenAPI schema: every operation it publishes (the /v1 routes,
health, readiness and upstream's callback), authenticated with the key of a real client of the
run's database that owns tasks, events, deliveries and subscriptions, with data generated from
the schema (valid and invalid), under every check schemathesis has (`--checks all`): no answer
may be a 5xx, every answer must be one the operation declares, in the declared media type and
shape, invalid input must be refused, a call without the key must not be served, and schema-valid
input must be accepted unless it breaks a rule the schema cannot state, refused by a 422 that
names it (schema_valid_input_refused_only_with_the_rule_it_breaks).

Each operation runs up to EXAMPLES_PER_OPERATION generated examples, after schemathesis's
explicit-example and coverage phases (3 to 60 more calls per operation).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.core.failures import Failure
from schemathesis.openapi.checks import AllowHeaderMismatch, RejectedPositiveData
from schemathesis.python.asgi import shutdown_lifespans
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from tests.support.resolvers import security_app
from tests.support.settings import make_settings
from tests.support.tenants import Tenant, new_tenant

# Thousands of generated calls: about a minute on a 2-core machine.
pytestmark = pytest.mark.slow

# 300 per operation (about a minute for all 17 on a 2-core machine) in every run and in CI; set
# the variable for a deeper run (a few thousand) before a release.
EXAMPLES_PER_OPERATION = int(os.environ.get("PHONEBRIDGE_SCHEMA_EXAMPLES", "300"))

# Schemathesis binds the app to each operation when pytest collects the tests, before any fixture
# has made the run's database. The app reads its settings only when its lifespan starts (at the
# first call), so these placeholders, which nothing ever connects to, are replaced by the
# `schema_app` fixture first. Reading the schema needs no database.
SCHEMA_APP = security_app(
    make_settings("postgresql+psycopg://127.0.0.1:5432/never_connected", "redis://127.0.0.1:6379/0")
)
whole_schema = schemathesis.openapi.from_dict(SCHEMA_APP.openapi())
whole_schema.app = SCHEMA_APP
schema = whole_schema


@dataclass
class SchemaTenant:
    """What the generated calls know of the client they act as, filled in by its fixture: its key,
    and the ids of its rows by path parameter name."""

    key: str = ""
    ids: dict[str, list[str]] = field(default_factory=dict)


SCHEMA_TENANT = SchemaTenant()


@schema.auth()
class TenantKey:
    """The tenant's key on every call, declared as the schema's bearer auth so that schemathesis
    also knows to try calls without it."""

    def get(self, case: Case[Any], context: Any) -> str:
        return SCHEMA_TENANT.key

    def set(self, case: Case[Any], data: str, context: Any) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


@schema.hook("flatmap_path_parameters")
def sometimes_existing_ids(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Swap generated ids for the tenant's own now and then, so that reads, changes and deletes
    by id also reach rows that exist instead of answering 404 every time."""
    swapped = {
        name: st.sampled_from(SCHEMA_TENANT.ids[name])
        for name in path_parameters or {}
        if SCHEMA_TENANT.ids.get(name)
    }
    if not swapped:
        return st.just(path_parameters)
    return st.one_of(
        st.just(path_parameters),
        st.fixed_dictionaries(swapped).map(lambda ids: {**path_parameters, **ids}),
    )


@schema.hook("filter_failure")
def allow_of_batch_names_the_task_routes(
    context: Any, failure: Failure, case: Case[Any], response: Any
) -> bool:
    """`/v1/tasks/batch` is also `/v1/tasks/{task_id}` for a task_id of "batch" (a valid one):
    its 405 rightly allows GET and DELETE too, which the schema cannot express."""
    return not (
        isinstance(failure, AllowHeaderMismatch)
        and case.operation.path == "/v1/tasks/batch"
        and set(failure.undocumented_methods) <= {"GET", "DELETE"}
    )


@schema.hook("filter_failure")
def schema_valid_input_refused_only_with_the_rule_it_breaks(
    context: Any, failure: Failure, case: Case[Any], response: Any
) -> bool:
    """Positive-data acceptance runs too, but a schema-valid request may break a rule the schema
    cannot state (a submitted_at older than the task validity, a cursor this API never issued, a
    host that does not resolve, `until` before `since`, an Idempotency-Key reused with another
    body): it is then refused with a 422 problem that names the field and the rule broken.
    Anything else (a 4xx without such a reason, any other status) still fails."""
    if not isinstance(failure, RejectedPositiveData):
        return True
    if response.status_code != 422:
        return True
    problem = response.json()
    names_the_field = bool(problem.get("errors")) and all(
        error.get("field") and error.get("message") for error in problem["errors"]
    )
    reused_key = "Idempotency-Key" in problem.get("detail", "")
    return not (names_the_field or reused_key)


@pytest.fixture(scope="session")
async def schema_tenant(
    api: httpx.AsyncClient, security_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Tenant:
    tenant = await new_tenant(api, security_settings, sessions, tasks=8, subscriptions=4, events=6)
    SCHEMA_TENANT.key = tenant.key
    SCHEMA_TENANT.ids = {
        "task_id": tenant.task_ids,
        "event_id": tenant.event_ids,
        "subscription_id": tenant.subscription_ids,
    }
    return tenant


@pytest.fixture(scope="session")
def schema_app(security_settings: Settings, schema_tenant: Tenant) -> Iterator[FastAPI]:
    """The app schemathesis calls, on its own event loop thread, where it also starts and stops
    the app's lifespan."""
    SCHEMA_APP.state.settings = security_settings
    yield SCHEMA_APP
    shutdown_lifespans()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_is_declared_and_none_is_a_5xx(case: Case[Any], schema_app: FastAPI) -> None:
    case.call_and_validate()
