"""service.features.subscriptions: create (URL vetted), reveal, rotate, change, delete, list."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from service.clock import utc_now
from service.domain.states import TASK_EVENT_TYPES, EventType
from service.features import subscriptions
from service.features.errors import InvalidInput, NotFound
from service.features.subscriptions import SubscriptionChange, SubscriptionCreate
from tests.integration.features.conftest import Resources
from tests.support.resolvers import PUBLIC_HOOK_HOST

HOOK_URL = f"https://{PUBLIC_HOOK_HOST}/hook"


async def test_a_created_subscription_listens_to_every_task_event_and_its_secret_is_revealed(
    session: AsyncSession, resources: Resources, client_id: int
) -> None:
    row, secret = await subscriptions.create_subscription(
        session, resources, client_id, SubscriptionCreate(url=HOOK_URL)
    )

    assert row.event_types == list(TASK_EVENT_TYPES)
    assert EventType.SUBSCRIPTION_DISABLED not in row.event_types
    assert secret.startswith("whsec_")
    assert await subscriptions.reveal_secret(session, resources, client_id, row.id) == secret


async def test_a_url_that_does_not_resolve_to_a_public_address_is_refused(
    session: AsyncSession, resources: Resources, client_id: int
) -> None:
    with pytest.raises(InvalidInput, match="url is not allowed") as refused:
        await subscriptions.create_subscription(
            session, resources, client_id, SubscriptionCreate(url="https://unknown.invalid/")
        )
    assert [rule.field for rule in refused.value.broken] == ["url"]


async def test_a_rotated_secret_is_new_and_is_the_one_revealed(
    session: AsyncSession, resources: Resources, client_id: int
) -> None:
    row, first = await subscriptions.create_subscription(
        session, resources, client_id, SubscriptionCreate(url=HOOK_URL)
    )

    rotated = await subscriptions.rotate_secret(session, resources, client_id, row.id)

    assert rotated != first
    assert await subscriptions.reveal_secret(session, resources, client_id, row.id) == rotated


async def test_a_change_applies_only_the_fields_it_sets_and_refuses_a_null(
    session: AsyncSession, resources: Resources, client_id: int
) -> None:
    row, _ = await subscriptions.create_subscription(
        session, resources, client_id, SubscriptionCreate(url=HOOK_URL, description="kept")
    )

    changed = await subscriptions.change_subscription(
        session, resources, client_id, row.id, SubscriptionChange(enabled=False)
    )
    assert (changed.enabled, changed.description, changed.url) == (False, "kept", HOOK_URL)
    with pytest.raises(InvalidInput, match="description cannot be null"):
        await subscriptions.change_subscription(
            session, resources, client_id, row.id, SubscriptionChange(description=None)
        )


async def test_a_deleted_subscription_is_not_found_and_not_listed(
    session: AsyncSession, resources: Resources, client_id: int
) -> None:
    kept, _ = await subscriptions.create_subscription(
        session, resources, client_id, SubscriptionCreate(url=HOOK_URL)
    )
    gone, _ = await subscriptions.create_subscription(
        session, resources, client_id, SubscriptionCreate(url=HOOK_URL)
    )

    await subscriptions.delete_subscription(session, client_id, gone.id, utc_now())

    with pytest.raises(NotFound):
        await subscriptions.find_subscription(session, client_id, gone.id)
    listed = await subscriptions.list_subscriptions(session, client_id, before_pk=None, size=10)
    assert [row.id for row in listed.items] == [kept.id]


@pytest.mark.parametrize("subscription_id", ["sub_" + "a" * 64, "sub_\x00", "not an id"])
async def test_an_id_that_cannot_be_a_subscription_id_is_not_found_by_every_operation(
    session: AsyncSession, resources: Resources, client_id: int, subscription_id: str
) -> None:
    for operation in (
        subscriptions.reveal_secret(session, resources, client_id, subscription_id),
        subscriptions.rotate_secret(session, resources, client_id, subscription_id),
        subscriptions.find_subscription(session, client_id, subscription_id),
        subscriptions.delete_subscription(session, client_id, subscription_id, utc_now()),
    ):
        with pytest.raises(NotFound) as refused:
            await operation
        assert refused.value.resource == "subscription"
