"""The intent row of a submitted check (service/checks/intents.py) on the real store: one row per
Idempotency-Key, its answer replayed to a second request, SUBMIT_OUTCOME_UNKNOWN once its lease
has passed without one, and a release that frees the key and gives the check back to the daily
budget; past the budget nothing is kept."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.checks.intents import Intent, SubmitIntents
from service.domain.checks import SUBMIT_OUTCOME_UNKNOWN
from service.domain.states import SubmissionState
from service.store import checks as check_store
from service.store.budgets import checks_on
from service.store.db import transaction
from tests.support.factories import insert_client

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DAY = date(2026, 12, 7)
LEASE = timedelta(seconds=30)


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def begin(
    intents: SubmitIntents,
    client_id: int,
    key: str | None,
    *,
    budget_day: date | None = None,
    checks_per_day: int = 0,
) -> Intent:
    return await intents.begin(
        client_id=client_id,
        idempotency_key=key,
        fingerprint=b"f" * 32,
        masked="+52 55 **** 5678",
        budget_day=budget_day,
        checks_per_day=checks_per_day,
    )


async def test_a_second_request_with_the_key_finds_the_row_and_replays_its_answer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    intents = SubmitIntents(sessions, MovableClock(NOW), LEASE)
    client_id = await insert_client(sessions)
    key = f"order-{secrets.token_hex(4)}"
    first = await begin(intents, client_id, key)
    again = await begin(intents, client_id, key)
    assert (first.created, again.created) == (True, False)
    assert again.submission.id == first.submission.id
    async with transaction(sessions) as session:
        await check_store.finish_submission(
            session,
            first.submission.id,
            state=SubmissionState.ANSWERED,
            status=201,
            body_json='{"id": 1}',
            task_pk=None,
            now=NOW,
        )
    answered = await begin(intents, client_id, key)
    replayed = await intents.replay(answered.submission)
    assert (replayed.status, replayed.body_json, replayed.replayed) == (201, '{"id": 1}', True)


async def test_an_intent_unanswered_past_its_lease_is_replayed_as_outcome_unknown(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = MovableClock(NOW)
    intents = SubmitIntents(sessions, clock, LEASE)
    client_id = await insert_client(sessions)
    key = f"order-{secrets.token_hex(4)}"
    first = await begin(intents, client_id, key)
    assert first.submission.lease_until == NOW + LEASE
    clock.now = NOW + LEASE
    replayed = await intents.replay((await begin(intents, client_id, key)).submission)
    assert (replayed.status, replayed.replayed) == (502, True)
    assert orjson.loads(replayed.body_json)["code"] == SUBMIT_OUTCOME_UNKNOWN
    # Every later request is answered the same, from the row.
    again = await intents.replay((await begin(intents, client_id, key)).submission)
    assert (again.status, again.body_json) == (replayed.status, replayed.body_json)


async def test_past_the_budget_nothing_is_kept_and_a_release_gives_the_check_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    intents = SubmitIntents(sessions, MovableClock(NOW), LEASE)
    client_id = await insert_client(sessions)
    key, other = f"a-{secrets.token_hex(4)}", f"b-{secrets.token_hex(4)}"
    counted = await begin(intents, client_id, key, budget_day=DAY, checks_per_day=1)
    refused = await begin(intents, client_id, other, budget_day=DAY, checks_per_day=1)
    assert (counted.created, counted.over_budget) == (True, False)
    assert (refused.created, refused.over_budget) == (True, True)
    async with transaction(sessions) as session:
        assert await check_store.find_submission(session, client_id, other) is None
        assert await checks_on(session, client_id, DAY) == 1

    await intents.release(counted.submission.id, client_id, DAY)
    async with transaction(sessions) as session:
        assert await check_store.find_submission(session, client_id, key) is None
        assert await checks_on(session, client_id, DAY) == 0
    # The key is free again: a retry is a new request, counted again.
    retried = await begin(intents, client_id, key, budget_day=DAY, checks_per_day=1)
    assert (retried.created, retried.over_budget) == (True, False)
