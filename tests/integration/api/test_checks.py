"""POST /v1/checks against the simulator: every upstream answer mapped as the contract says, the
Idempotency-Key (replays, concurrent duplicates, another body), the phone number's rules and its
mask, and what an unreachable or credential-less upstream answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.schedule import DITHER, SAFETY_NET_P
from service.sim.server import SimServer
from service.store.db import create_engine_for, session_factory, transaction
from service.store.estimates import ACCOUNT_WIDE, add_to_estimates
from tests.support.api import api_client, bearer, feed_until
from tests.support.checks import (
    PHONE,
    PHONE_AS_WRITTEN,
    PHONE_MASKED,
    PUBLIC_URL,
    checks_settings,
    submit,
    submit_calls,
)
from tests.support.estimates import uniform_estimate
from tests.support.factories import limited_key, new_key
from tests.support.settings import make_settings


@pytest.fixture
def callback_settings(database_url: str, redis_url: str, sim: SimServer) -> Settings:
    """Checks that carry a callback URL, with their safety-net poll 30 s after submission."""
    return checks_settings(
        database_url, redis_url, sim.base_url, public_url=PUBLIC_URL, hinted_poll_initial_s=30.0
    )


@pytest.fixture
async def api(
    callback_settings: Settings, fresh_sim: SimServer, flush_redis: None
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(callback_settings) as client:
        yield client


@pytest.fixture
async def key(callback_settings: Settings) -> str:
    return await new_key(callback_settings)


@pytest.mark.usefixtures("no_estimates")
async def test_a_pending_check_becomes_a_submitted_task_with_the_masked_number(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    before = datetime.now(UTC)
    response = await submit(api, key, PHONE_AS_WRITTEN, metadata={"order": 7})

    assert response.status_code == 201, response.text
    task = response.json()
    assert task["state"] == "pending"
    assert task["source"] == "submitted"
    assert task["phone_number_masked"] == PHONE_MASKED
    # Upstream is sent the normalised E.164 digits, without '+'.
    assert fresh_sim.control.task(task["task_id"])["phone_number"] == PHONE
    assert task["metadata"] == {"order": 7}
    assert task["task_id"].startswith("sim-ring-0-60s-")
    # The check carried a callback, so the safety net starts at PHONEBRIDGE_HINTED_POLL_INITIAL_S.
    first_poll = datetime.fromisoformat(task["next_poll_at"])
    assert before + timedelta(seconds=29) < first_poll < before + timedelta(seconds=32)
    read = await api.get(f"/v1/tasks/{task['task_id']}", headers=bearer(key))
    assert read.json() == task


@pytest.mark.usefixtures("no_estimates")
async def test_with_learnt_completion_times_the_safety_net_is_placed_from_them(
    api: httpx.AsyncClient,
    key: str,
    fresh_sim: SimServer,
    callback_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Not the fixed PHONEBRIDGE_HINTED_POLL_INITIAL_S (30 s): where SAFETY_NET_P of the answers
    have arrived, here answers uniform over (0, end]: SAFETY_NET_P x end, dithered down by up to
    DITHER."""
    estimate, end = uniform_estimate(up_to_bin=25)
    async with transaction(sessions) as session:
        await add_to_estimates(
            session,
            callback_settings.upstream_account,
            {ACCOUNT_WIDE: estimate.weights},
            utc_now(),
            callback_settings.poll_estimate_half_life_s,
        )
    fresh_sim.control.configure(submit_script="ring-0-60s")
    before = datetime.now(UTC)
    response = await submit(api, key)
    after = datetime.now(UTC)

    assert response.status_code == 201, response.text
    first_poll = datetime.fromisoformat(response.json()["next_poll_at"])
    wanted_s = SAFETY_NET_P * end
    assert before + timedelta(seconds=wanted_s * (1 - DITHER) - 0.1) <= first_poll
    assert first_poll <= after + timedelta(seconds=wanted_s + 0.1)
    assert abs(wanted_s - 30.0) > 10  # not the cold start's first age


async def test_a_pending_check_counts_against_the_pending_limit_before_upstream_is_called(
    api: httpx.AsyncClient, callback_settings: Settings, fresh_sim: SimServer
) -> None:
    key, _ = await limited_key(callback_settings, max_pending=1)
    fresh_sim.control.configure(submit_script="ring-0-60s")
    first = await submit(api, key)
    assert first.status_code == 201, first.text
    assert first.json()["state"] == "pending"

    second = await submit(api, key, idempotency_key="second-check")
    assert second.status_code == 429, second.text
    assert second.json()["type"].endswith("too-many-pending")
    assert "retry-after" in second.headers
    # Refused before upstream: only the first check was submitted.
    assert submit_calls(fresh_sim) == 1


async def test_a_check_carries_the_clients_callback_url_upstream(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-1s")
    fresh_sim.control.set_callbacks(lose=1.0)  # keep the simulator from calling a fake host
    callback = (await api.get("/v1/callback-url", headers=bearer(key))).json()["url"]
    assert callback.startswith(f"{PUBLIC_URL}/hooks/accuauth/")

    response = await submit(api, key)

    assert response.status_code == 201
    (planned,) = fresh_sim.control.callback_log()
    assert planned["task_id"] == response.json()["task_id"]


async def test_the_full_number_is_stored_nowhere(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer, callback_settings: Settings
) -> None:
    fresh_sim.control.configure(submit_script="busy-0")
    assert (await submit(api, key, idempotency_key="stored-nowhere")).status_code == 201
    engine = create_engine_for(callback_settings.sqlalchemy_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            dump = (
                await session.execute(
                    text(
                        "SELECT string_agg(t::text, '|') FROM ("
                        " SELECT row_to_json(tasks)::text AS t FROM tasks UNION ALL"
                        " SELECT row_to_json(check_submissions)::text FROM check_submissions"
                        " UNION ALL SELECT row_to_json(events)::text FROM events) rows"
                    )
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert PHONE_MASKED in dump
    assert PHONE not in dump
    assert PHONE[-8:] not in dump


async def test_a_check_finished_at_once_is_completed_with_its_event(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="busy-0")
    response = await submit(api, key)

    assert response.status_code == 201, response.text
    task = response.json()
    assert task["state"] == "completed"
    assert (task["result"]["phone_status"], task["result"]["verdict"]) == ("busy", "live")
    assert task["next_poll_at"] is None
    page = await feed_until(api, key, 1)
    (event,) = page["data"]
    assert event["type"] == "task.completed"
    assert event["data"]["task_id"] == task["task_id"]
    assert event["data"]["source"] == "submitted"
    assert event["data"]["result"] == task["result"]


async def test_invalid_argument_answers_422_with_upstreams_reason_and_keeps_nothing(
    api: httpx.AsyncClient, key: str
) -> None:
    # Bogotá's old 8-digit form: possible, so phonebridge submits it; no longer valid, so the
    # simulator refuses it as upstream would.
    response = await submit(api, key, "+57 1 234 5678", idempotency_key="refused")

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert "argument 'phone_number': invalid" in problem["detail"]
    assert problem["code"] == "INVALID_ARGUMENT"
    listed = await api.get("/v1/tasks", headers=bearer(key))
    assert listed.json()["data"] == []


async def test_an_account_error_answers_503_naming_it_and_opens_the_pause(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.force("key_expired", calls=1)
    response = await submit(api, key, idempotency_key="paused")

    assert response.status_code == 503
    assert response.json()["code"] == "KEY_EXPIRED"
    ready = (await api.get("/readyz")).json()
    assert ready["upstream"]["paused"] is True
    # While paused, nothing is sent: the next submit is refused before any call.
    again = await submit(api, key, idempotency_key="paused")
    assert again.status_code == 503
    assert submit_calls(fresh_sim) == 1


async def test_rate_limit_exceeded_on_submit_answers_503_with_retry_after(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.force("rate_limit", calls=1)
    response = await submit(api, key)

    assert response.status_code == 503
    assert response.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("fault", ["internal_error", "garbage", "html", "reset"])
async def test_an_answer_that_may_hide_a_submitted_check_is_502_outcome_unknown_and_never_resent(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer, fault: str
) -> None:
    fresh_sim.control.force(fault, calls=1)
    response = await submit(api, key, idempotency_key=f"unknown-{fault}")

    assert response.status_code == 502
    assert response.json()["code"] == "SUBMIT_OUTCOME_UNKNOWN"
    retried = await submit(api, key, idempotency_key=f"unknown-{fault}")
    assert retried.status_code == 502
    assert retried.json() == response.json()
    assert submit_calls(fresh_sim) == 1


async def test_an_upstream_that_cannot_be_reached_is_502_upstream_unavailable_and_frees_the_key(
    database_url: str, redis_url: str, flush_redis: None
) -> None:
    settings = make_settings(
        database_url, redis_url, upstream_base_url="http://127.0.0.1:9", upstream_timeout_s=1.0
    )
    key = await new_key(settings)
    async with api_client(settings) as api:
        first = await submit(api, key, idempotency_key="unreachable")
        second = await submit(api, key, idempotency_key="unreachable")

    assert first.status_code == second.status_code == 502
    assert first.json()["code"] == "UPSTREAM_UNAVAILABLE"
    assert second.json()["code"] == "UPSTREAM_UNAVAILABLE"


async def test_without_upstream_credentials_a_submit_answers_503_saying_so(
    database_url: str, redis_url: str, sim: SimServer, flush_redis: None
) -> None:
    settings = make_settings(
        database_url,
        redis_url,
        upstream_base_url=sim.base_url,
        upstream_api_id=None,
        upstream_api_secret=None,
    )
    key = await new_key(settings)
    async with api_client(settings) as api:
        response = await submit(api, key)
    assert response.status_code == 503
    assert "PHONEBRIDGE_UPSTREAM_API_ID" in response.json()["detail"]


# --- the Idempotency-Key ---------------------------------------------------------------------


async def test_the_same_key_and_body_answer_the_first_answer_and_submit_once(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    first = await submit(api, key, idempotency_key="order-17")
    second = await submit(api, key, idempotency_key="order-17")

    assert first.status_code == second.status_code == 201
    # The same bytes, not just the same JSON, and said to be a replay; the first is not.
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert submit_calls(fresh_sim) == 1


async def test_a_replayed_problem_is_the_same_bytes_too(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.force("internal_error", calls=1)
    first = await submit(api, key, idempotency_key="order-18")
    second = await submit(api, key, idempotency_key="order-18")

    assert first.status_code == second.status_code == 502, first.text
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_concurrent_duplicates_submit_once_and_all_get_the_same_answer(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    fresh_sim.control.set_faults(probabilities={"slow": 1.0}, slow_s=0.5)
    answers = await asyncio.gather(*(submit(api, key, idempotency_key="burst") for _ in range(6)))

    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["task_id"] for a in answers}) == 1
    assert submit_calls(fresh_sim) == 1


async def test_the_same_key_with_another_body_is_422(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    assert (await submit(api, key, idempotency_key="k-1")).status_code == 201
    other_number = await submit(api, key, "525599990000", idempotency_key="k-1")
    other_metadata = await submit(api, key, idempotency_key="k-1", metadata={"x": 1})

    assert other_number.status_code == other_metadata.status_code == 422
    assert "different request body" in other_number.json()["detail"]
    assert submit_calls(fresh_sim) == 1


async def test_the_same_key_with_another_recheck_is_422(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    first = await submit(api, key, idempotency_key="k-2", recheck={"after_s": 600})
    same = await submit(api, key, idempotency_key="k-2", recheck={"after_s": 600})
    other = await submit(api, key, idempotency_key="k-2", recheck={"after_s": 900})
    without = await submit(api, key, idempotency_key="k-2")

    assert first.status_code == same.status_code == 201
    assert same.headers.get("idempotent-replayed") == "true"
    assert other.status_code == without.status_code == 422
    assert submit_calls(fresh_sim) == 1


async def test_a_recheck_the_rules_refuse_names_the_broken_rule(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    response = await submit(api, key, recheck={"verdicts": [], "after_s": 30, "max": 0})

    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "VALIDATION_FAILED"
    for rule in ("recheck.verdicts", "recheck.after_s: must be a whole number from 60 to 86400"):
        assert rule in problem["detail"]
    assert "recheck.max" in problem["detail"]
    assert submit_calls(fresh_sim) == 0


async def test_a_number_kept_for_its_recheck_is_stored_only_sealed(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer, callback_settings: Settings
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    response = await submit(api, key, recheck={"after_s": 600})
    assert response.status_code == 201, response.text
    assert response.json()["rechecks"] == []
    engine = create_engine_for(callback_settings.sqlalchemy_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            kept = (
                await session.execute(
                    text(
                        "SELECT s.state, s.phone_number_sealed, row_to_json(s)::text AS row"
                        " FROM scheduled_submits s JOIN tasks t ON t.id = s.task_pk"
                        " WHERE t.task_id = :t"
                    ),
                    {"t": response.json()["task_id"]},
                )
            ).one()
    finally:
        await engine.dispose()
    # On standby until the check's answer is in; sealed, so nothing of the number shows.
    assert kept.state == "standby"
    assert PHONE.encode() not in bytes(kept.phone_number_sealed)
    assert PHONE not in kept.row
    assert PHONE[-8:] not in kept.row


async def test_the_same_key_with_the_same_number_written_otherwise_replays(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    first = await submit(api, key, PHONE, idempotency_key="k-2")
    again = await submit(api, key, PHONE_AS_WRITTEN, idempotency_key="k-2")

    assert first.status_code == again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert submit_calls(fresh_sim) == 1


async def test_keys_belong_to_one_client(
    api: httpx.AsyncClient, key: str, callback_settings: Settings, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    other_key = await new_key(callback_settings)
    mine = await submit(api, key, idempotency_key="shared-name")
    theirs = await submit(api, other_key, idempotency_key="shared-name")

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["task_id"] != theirs.json()["task_id"]
    assert submit_calls(fresh_sim) == 2


# --- input checked before any call -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({"phone_number": "+1 415 555 0123"}, "is a number of US (+1)"),
        ({"phone_number": "+34 612 345 678"}, "is a number of ES (+34)"),
        ({"phone_number": "1-800-FLOWERS"}, "letters"),
        ({"phone_number": "0052 55 1234 5678"}, "starts with 0"),
        ({"phone_number": "+52 5512 3456"}, "can only be dialled locally"),
        ({"phone_number": "+52 55 1234 567"}, "too few digits for a number of MX (+52)"),
        ({"phone_number": "+57 300 123 4567 890"}, "too many digits for a number of CO (+57)"),
        ({"phone_number": "52/55/1234/5678"}, "may hold only the digits"),
        ({"phone_number": "+999 1234 5678"}, "does not start with a country code"),
        ({"phone_number": 525512341234}, "phone_number: is required"),
        ({}, "phone_number: is required"),
        ({"phone_number": PHONE, "callback": "http://x"}, "callback: unknown field"),
        ({"phone_number": PHONE, "metadata": [1]}, "metadata:"),
        ({"phone_number": PHONE, "recheck": "retry"}, "recheck: must be"),
        ({"phone_number": PHONE, "recheck": {"verdicts": ["maybe"]}}, "recheck.verdicts"),
        ({"phone_number": PHONE, "recheck": {"after_s": 59}}, "recheck.after_s"),
        ({"phone_number": PHONE, "recheck": {"max": 6}}, "recheck.max"),
        ([PHONE], "JSON object"),
    ],
)
async def test_an_invalid_body_is_422_naming_the_rule_before_any_upstream_call(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer, body: object, rule: str
) -> None:
    response = await api.post("/v1/checks", json=body, headers=bearer(key))

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert rule in response.json()["detail"]
    assert PHONE not in response.text
    assert submit_calls(fresh_sim) == 0


async def test_the_allowed_countries_come_from_the_setting(
    database_url: str, redis_url: str, fresh_sim: SimServer, flush_redis: None
) -> None:
    settings = checks_settings(database_url, redis_url, fresh_sim.base_url, check_countries=("CO",))
    fresh_sim.control.configure(submit_script="ring-0-60s")
    key = await new_key(settings)
    async with api_client(settings) as api:
        mexican = await submit(api, key, PHONE)
        colombian = await submit(api, key, "+57 300 123 4567", idempotency_key="co")

    assert mexican.status_code == 422
    assert "only numbers of CO (+57) are checked" in mexican.json()["detail"]
    assert colombian.status_code == 201, colombian.text
    assert colombian.json()["phone_number_masked"] == "57******4567"
    assert submit_calls(fresh_sim) == 1


@pytest.mark.parametrize("idempotency_key", ["", "x" * 256, "naïve", "tab\there"])
async def test_an_invalid_idempotency_key_is_422_before_any_upstream_call(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer, idempotency_key: str
) -> None:
    headers = bearer(key) | {"Idempotency-Key": idempotency_key}
    response = await api.post(
        "/v1/checks",
        json={"phone_number": PHONE},
        headers={k.encode(): v.encode() for k, v in headers.items()},
    )

    assert response.status_code == 422
    assert submit_calls(fresh_sim) == 0


# --- the callback URL --------------------------------------------------------------------------


async def test_each_client_has_one_stable_callback_url(
    api: httpx.AsyncClient, key: str, callback_settings: Settings
) -> None:
    other_key = await new_key(callback_settings)
    first = (await api.get("/v1/callback-url", headers=bearer(key))).json()["url"]
    again = (await api.get("/v1/callback-url", headers=bearer(key))).json()["url"]
    theirs = (await api.get("/v1/callback-url", headers=bearer(other_key))).json()["url"]

    assert first == again != theirs
    token = first.rsplit("/", 1)[1]
    assert len(token) >= 22  # at least 128 random bits in URL-safe base64


async def test_without_a_public_url_there_is_no_callback_url_and_checks_carry_none(
    database_url: str, redis_url: str, fresh_sim: SimServer, flush_redis: None
) -> None:
    settings = make_settings(database_url, redis_url, upstream_base_url=fresh_sim.base_url)
    fresh_sim.control.configure(submit_script="ring-0-60s")
    key = await new_key(settings)
    async with api_client(settings) as api:
        url = await api.get("/v1/callback-url", headers=bearer(key))
        before = datetime.now(UTC)
        task = (await submit(api, key)).json()

    assert url.status_code == 409
    assert "PHONEBRIDGE_PUBLIC_URL" in url.json()["detail"]
    assert fresh_sim.control.callback_log() == []
    # Without a callback, polling alone finds the answer. The submit answered PENDING, so the
    # first poll is a registered task's second step: PHONEBRIDGE_POLL_INITIAL_S (±20% jitter).
    assert_first_poll_near(task, before, settings.poll_initial_s)


async def test_an_untrusted_callback_is_not_waited_for(
    api: httpx.AsyncClient, key: str, callback_settings: Settings, fresh_sim: SimServer
) -> None:
    """Once too many of a client's callbacks went missing (service/domain/callback_trust.py), its
    checks still carry a callback but are polled as registered tasks, not on the safety net."""
    fresh_sim.control.configure(submit_script="ring-0-60s")
    fresh_sim.control.set_callbacks(lose=1.0)  # keep the simulator from calling a fake host
    trusted = (await submit(api, key)).json()
    engine = create_engine_for(callback_settings.sqlalchemy_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            await session.execute(
                text(
                    "INSERT INTO callback_records (client_id, heard, missed, trusted, updated_at) "
                    "SELECT client_id, 10, 10, false, now() FROM tasks WHERE task_id = :task_id"
                ),
                {"task_id": trusted["task_id"]},
            )
    finally:
        await engine.dispose()
    before = datetime.now(UTC)
    untrusted = (await submit(api, key, idempotency_key="second")).json()

    assert [c["task_id"] for c in fresh_sim.control.callback_log()] == [
        trusted["task_id"],
        untrusted["task_id"],
    ]
    assert_first_poll_near(untrusted, before, callback_settings.poll_initial_s)


def assert_first_poll_near(task: dict[str, Any], before: datetime, initial_s: float) -> None:
    first_poll = datetime.fromisoformat(task["next_poll_at"])
    assert before + timedelta(seconds=initial_s * 0.8) <= first_poll
    assert first_poll <= datetime.now(UTC) + timedelta(seconds=initial_s * 1.2)


async def test_metadata_numbers_beyond_64_bits_are_answered_and_replayed_as_sent(
    api: httpx.AsyncClient, key: str, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    # 1e20 comes back as 100000000000000000000, an integer beyond 64 bits, in both answers.
    body = b'{"phone_number": "525512341234", "metadata": {"n": 1e20}}'
    headers = bearer(key) | {"Idempotency-Key": "big", "content-type": "application/json"}
    first = await api.post("/v1/checks", content=body, headers=headers)
    again = await api.post("/v1/checks", content=body, headers=headers)

    assert first.status_code == again.status_code == 201, first.text
    assert again.content == first.content
    assert first.json()["metadata"]["n"] == 10**20
