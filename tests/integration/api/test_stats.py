"""GET /v1/stats/completion-times (the client's view of the learnt completion times) and the
operator's gauges of the same estimate."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.observability.snapshot import REFRESH_LOCK_KEY, StoreSnapshotRefresh
from service.store.db import transaction
from service.store.estimates import ACCOUNT_WIDE, add_to_estimates
from tests.support.api import bearer
from tests.support.estimates import uniform_estimate
from tests.support.factories import client_and_key

pytestmark = pytest.mark.usefixtures("no_estimates")
ROUTE = "/v1/stats/completion-times"


async def learn(
    sessions: async_sessionmaker[AsyncSession], client_id: int, up_to_bin: int, total: float
) -> float:
    """Store what polling would have learnt: `total` answers of this client uniform over
    (0, end]; returns end."""
    estimate, end = uniform_estimate(up_to_bin=up_to_bin, total=total)
    async with transaction(sessions) as session:
        await add_to_estimates(
            session,
            "test-account",
            {ACCOUNT_WIDE: estimate.weights, client_id: estimate.weights},
            utc_now(),
            3600.0,
        )
    return end


async def test_a_client_without_completions_sees_no_quantiles(
    api: httpx.AsyncClient, key: str
) -> None:
    response = await api.get(ROUTE, headers=bearer(key))
    assert response.status_code == 200
    assert response.json() == {
        "schedule": "adaptive",
        "completions": 0.0,
        "half_life_s": 3600.0,
        "min_completions": 50.0,
        "updated_at": None,
        "quantiles": [],
    }


async def test_a_client_sees_the_quantiles_of_its_own_completions_only(
    api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    mine, my_key = await client_and_key(settings, sessions, f"stats-{secrets.token_hex(4)}")
    theirs, their_key = await client_and_key(settings, sessions, f"stats-{secrets.token_hex(4)}")
    end = await learn(sessions, mine, up_to_bin=25, total=200.0)
    await learn(sessions, theirs, up_to_bin=40, total=50.0)

    body = (await api.get(ROUTE, headers=bearer(my_key))).json()
    assert body["completions"] == pytest.approx(200.0, rel=1e-3)
    assert body["updated_at"] is not None
    quantiles = {item["quantile"]: item["seconds"] for item in body["quantiles"]}
    assert set(quantiles) == {0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99}
    assert quantiles[0.5] == pytest.approx(end / 2, rel=1e-3)
    assert quantiles[0.95] == pytest.approx(0.95 * end, rel=1e-3)

    other = (await api.get(ROUTE, headers=bearer(their_key))).json()
    assert other["completions"] == pytest.approx(50.0, rel=1e-3)


async def test_the_route_needs_a_key(api: httpx.AsyncClient) -> None:
    response = await api.get(ROUTE)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_operator_sees_the_accounts_quantiles_in_the_metrics(
    api: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis[Any],
) -> None:
    client, _ = await client_and_key(settings, sessions, f"stats-{secrets.token_hex(4)}")
    end = await learn(sessions, client, up_to_bin=25, total=400.0)
    await redis_client.delete(REFRESH_LOCK_KEY)
    await StoreSnapshotRefresh(sessions, redis_client, 15.0).run(utc_now() + timedelta(seconds=1))
    response = await api.get("/metrics")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("phonebridge_completion_estimate_completions", ())] == pytest.approx(
        400.0, rel=1e-3
    )
    median = samples[("phonebridge_completion_time_seconds", (("quantile", "0.5"),))]
    assert median == pytest.approx(end / 2, rel=1e-3)
