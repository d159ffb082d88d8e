"""Subscriptions in PostgreSQL (service/store/subscriptions.py): written, found and listed for
their client only, disabled and enabled with the reason kept right, soft-deleted out of sight."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.states import DisabledReason
from service.store.db import transaction
from service.store.subscriptions import (
    delete_subscription,
    find_subscription,
    list_subscriptions,
    replace_stored_secrets,
    rotate_secret,
    stored_secrets_after,
    update_subscription,
)
from tests.support.factories import insert_client, subscribe


async def test_a_clients_subscriptions_are_its_own_newest_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    other_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        first = await subscribe(session, client_id)
        second = await subscribe(session, client_id)
        listed = await list_subscriptions(session, client_id, before_pk=None, limit=10)
        after_second = await list_subscriptions(session, client_id, before_pk=second.pk, limit=10)
        found = await find_subscription(session, client_id, first.id)
        foreign = await find_subscription(session, other_id, first.id)

    assert [row.id for row in listed] == [second.id, first.id]
    assert [row.id for row in after_second] == [first.id]
    assert found == first
    assert foreign is None


async def test_disabling_keeps_a_reason_and_enabling_clears_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        row = await subscribe(session, client_id)
        disabled = await update_subscription(
            session, client_id, row.id, {"enabled": False}, utc_now()
        )
        enabled = await update_subscription(
            session, client_id, row.id, {"enabled": True}, utc_now()
        )

    assert disabled is not None
    assert (disabled.enabled, disabled.disabled_reason) == (False, DisabledReason.CLIENT)
    assert enabled is not None
    assert (enabled.enabled, enabled.disabled_reason) == (True, None)


async def test_a_deleted_subscription_is_out_of_sight_and_deleted_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        row = await subscribe(session, client_id)
        deleted = await delete_subscription(session, client_id, row.id, utc_now())
        again = await delete_subscription(session, client_id, row.id, utc_now())
        found = await find_subscription(session, client_id, row.id)
        listed = await list_subscriptions(session, client_id, before_pk=None, limit=10)

    assert (deleted, again) == (True, False)
    assert found is None
    assert listed == []


async def test_resealed_secrets_replace_only_what_was_read(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A reseal's write loses to a rotation made since its read (the next reseal takes it)."""
    client_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        row = await subscribe(session, client_id)
        [read] = [s for s in await stored_secrets_after(session, row.pk - 1, 10) if s.pk == row.pk]
        assert (read.public_id, read.secret_encrypted, read.previous_secret_encrypted) == (
            row.id,
            b"\x00",
            None,
        )
        assert await replace_stored_secrets(session, read, b"\x01", None)
        # Now the row holds b"\x01": a write based on the old read changes nothing.
        assert not await replace_stored_secrets(session, read, b"\x02", None)
        await rotate_secret(session, client_id, row.id, b"\x03", utc_now())
        [now_stored] = await stored_secrets_after(session, row.pk - 1, 1)

    assert (now_stored.secret_encrypted, now_stored.previous_secret_encrypted) == (b"\x03", b"\x01")
