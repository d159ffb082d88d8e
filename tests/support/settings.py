"""Settings for tests: the run's own PostgreSQL and Redis, the test credentials, and schedules
compressed so that what takes minutes in production takes a fraction of a second."""

from __future__ import annotations

import os
from typing import Any

from service.config import Settings, build_settings
from tests.support.upstream import API_ID, API_SECRET

# The deployment secret of every test's settings and processes alike: what one seals (webhook
# secrets, the numbers kept for re-checks) another opens.
TEST_SECRET_KEY = "test-secret-key-for-webhook-secrets-at-rest"


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings for tests: the run's own services, fast schedules; overrides win."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "upstream_api_id": API_ID,
        "upstream_api_secret": API_SECRET,
        "secret_key": TEST_SECRET_KEY,
        # Every in-process test client comes from one address; the throttle's own tests set it.
        "sign_in_failures_per_minute": 0,
    }
    values.update(overrides)
    return build_settings(**values)


def webhook_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Deliveries to the local receiver (a private address), short timeouts and retries."""
    values: dict[str, Any] = {
        "webhook_allow_private": True,
        "webhook_timeout_s": 0.5,
        "webhook_retry_schedule": (1.0, 1.0),
        "lease_s": 5.0,
    }
    values.update(overrides)
    return make_settings(database_url, redis_url, **values)


def engine_settings(database_url: str, redis_url: str, base_url: str, **overrides: Any) -> Settings:
    """The polling engine against the simulator at `base_url`, with compressed times."""
    values: dict[str, Any] = {
        "upstream_base_url": base_url,
        "upstream_timeout_s": 2.0,
        "upstream_max_rps": 500.0,
        "poll_initial_s": 0.2,
        "poll_max_s": 0.4,
        "lease_s": 5.0,
        "scheduler_tick_s": 0.05,
        "poll_batch_size": 50,
        "pause_probe_s": 0.5,
        "task_ttl_s": 30.0,
    }
    values.update(overrides)
    return make_settings(database_url, redis_url, **values)


def process_env(
    database_url: str, redis_url: str, base_url: str, **overrides: str
) -> dict[str, str]:
    """The environment of `phonebridge scheduler` / `worker` processes, with compressed times."""
    env = {
        **os.environ,
        "PHONEBRIDGE_DATABASE_URL": database_url,
        "PHONEBRIDGE_REDIS_URL": redis_url,
        "PHONEBRIDGE_UPSTREAM_BASE_URL": base_url,
        "PHONEBRIDGE_UPSTREAM_API_ID": API_ID,
        "PHONEBRIDGE_UPSTREAM_API_SECRET": API_SECRET,
        "PHONEBRIDGE_SECRET_KEY": TEST_SECRET_KEY,
        "PHONEBRIDGE_UPSTREAM_MAX_RPS": "150",
        "PHONEBRIDGE_UPSTREAM_TIMEOUT_S": "1",
        "PHONEBRIDGE_LEASE_S": "4",
        "PHONEBRIDGE_SCHEDULER_TICK_S": "0.05",
        "PHONEBRIDGE_POLL_BATCH_SIZE": "60",
        "PHONEBRIDGE_POLL_INITIAL_S": "0.2",
        "PHONEBRIDGE_POLL_MAX_S": "0.4",
        "PHONEBRIDGE_LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env
