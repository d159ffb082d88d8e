"""The portal's test event (service/webhooks/ping.py): one signed `webhook.test` request to the
subscription's URL, kept as its last test, and never an event nor a retry."""

from __future__ import annotations

import os
import secrets

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.signing import new_secret, verify_signature
from service.domain.states import EventType
from service.store.db import transaction
from service.store.pings import last_test_attempts
from service.store.subscriptions import find_subscription, insert_subscription
from service.webhooks.ping import TEST_EVENT_TYPE, TEST_WEBHOOK_ID_PREFIX, send_test_event
from service.webhooks.sender import WebhookSender
from tests.support.factories import insert_client
from tests.support.receivers import Receiver, Reply
from tests.support.rows import events_of


async def test_a_test_event_is_one_signed_request_kept_as_the_last_test(
    hook_settings: Settings, sessions: async_sessionmaker[AsyncSession], receiver: Receiver
) -> None:
    path = f"/ping-{secrets.token_hex(4)}"
    receiver.script(path, default=Reply(status=410))
    secret = new_secret(os.urandom(24))
    client_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        subscription = await insert_subscription(
            session,
            client_id=client_id,
            public_id=f"sub_{secrets.token_hex(16)}",
            url=receiver.url(path),
            event_types=[EventType.TASK_COMPLETED],
            description="",
            secret_encrypted=b"\x00",
            now=utc_now(),
        )
    sender = WebhookSender(hook_settings.webhook_timeout_s, allow_private=True)
    try:
        sent = await send_test_event(sender, sessions, utc_now, client_id, subscription, secret)
    finally:
        await sender.close()

    [request] = receiver.received(path)
    async with transaction(sessions) as session:
        kept = await last_test_attempts(session, client_id, [subscription.pk])
        after = await find_subscription(session, client_id, subscription.id)
    assert verify_signature(secret, request.headers, request.body, utc_now())
    assert request.headers["webhook-id"] == sent.webhook_id
    assert sent.webhook_id.startswith(TEST_WEBHOOK_ID_PREFIX)
    assert orjson.loads(request.body)["type"] == TEST_EVENT_TYPE
    assert sent.status == 410
    assert kept == {subscription.id: sent}
    # A 410 to a test disables nothing.
    assert after is not None
    assert after.enabled
    # Not an event: the feed has nothing of it.
    assert await events_of(sessions, client_id) == []
