"""POST /v1/checks under the daily check budget, through the real app and the simulator: past it,
429 problem+json `CHECK_BUDGET_EXHAUSTED` with Retry-After to the next UTC midnight; a client's
own limit (`phonebridge api-key limits --max-checks-per-day`) over the setting, `off` meaning no
limit; checks sent at once never pass the limit; and what was held back is counted per client."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.budgets import seconds_to_next_utc_midnight
from service.sim.server import SimServer
from tests.support.api import api_client
from tests.support.checks import checks_settings, submit, submit_calls
from tests.support.factories import client_and_key, limited_key, new_key

pytestmark = pytest.mark.usefixtures("flush_redis")

SETTING = 2


@pytest.fixture
def budget_settings(database_url: str, redis_url: str, fresh_sim: SimServer) -> Settings:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    return checks_settings(
        database_url, redis_url, fresh_sim.base_url, client_max_checks_per_day=SETTING
    )


@pytest.fixture
async def api(budget_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(budget_settings) as client:
        yield client


async def statuses(api: httpx.AsyncClient, key: str, count: int) -> list[int]:
    return [(await submit(api, key)).status_code for _ in range(count)]


async def test_past_the_setting_a_check_answers_429_with_its_code_and_retry_after_to_midnight(
    api: httpx.AsyncClient, budget_settings: Settings, fresh_sim: SimServer
) -> None:
    key = await new_key(budget_settings)
    assert await statuses(api, key, SETTING) == [201] * SETTING

    before = seconds_to_next_utc_midnight(utc_now())
    refused = await submit(api, key, idempotency_key="over")
    after = seconds_to_next_utc_midnight(utc_now())

    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "CHECK_BUDGET_EXHAUSTED"
    assert problem["type"] == "urn:phonebridge:problem:check-budget-exhausted"
    assert after <= int(refused.headers["retry-after"]) <= before
    assert "idempotent-replayed" not in refused.headers
    assert submit_calls(fresh_sim) == SETTING
    # Nothing kept under the key: asked again, it is judged again (and refused again today).
    again = await submit(api, key, idempotency_key="over")
    assert again.status_code == 429
    assert "idempotent-replayed" not in again.headers


async def test_checks_held_back_are_counted_per_client_in_the_metrics(
    api: httpx.AsyncClient, budget_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id, key = await client_and_key(
        budget_settings, sessions, f"budget-{secrets.token_hex(4)}"
    )
    labels = {"client": str(client_id), "kind": "check"}
    assert REGISTRY.get_sample_value("phonebridge_checks_over_budget_total", labels) is None

    assert await statuses(api, key, SETTING + 2) == [201] * SETTING + [429] * 2
    assert REGISTRY.get_sample_value("phonebridge_checks_over_budget_total", labels) == 2


async def test_a_clients_own_limit_wins_over_the_setting(
    api: httpx.AsyncClient, budget_settings: Settings
) -> None:
    key, _ = await limited_key(budget_settings, max_checks_per_day=SETTING + 1)
    assert await statuses(api, key, SETTING + 2) == [201] * (SETTING + 1) + [429]


async def test_a_client_whose_own_limit_is_off_has_no_budget(
    api: httpx.AsyncClient, budget_settings: Settings
) -> None:
    key, _ = await limited_key(budget_settings, max_checks_per_day=0)
    assert await statuses(api, key, SETTING + 2) == [201] * (SETTING + 2)


async def test_checks_sent_at_once_never_pass_the_limit(
    api: httpx.AsyncClient, budget_settings: Settings, fresh_sim: SimServer
) -> None:
    # Each request counts in its own transaction (tests/integration/store/test_budgets.py races
    # thirty of them on the ledger's row alone).
    limit = 5
    key, _ = await limited_key(budget_settings, max_checks_per_day=limit)
    answers = await asyncio.gather(*(submit(api, key) for _ in range(16)))

    codes = [answer.status_code for answer in answers]
    assert codes.count(201) == limit, codes
    assert codes.count(429) == len(codes) - limit, codes
    assert submit_calls(fresh_sim) == limit
