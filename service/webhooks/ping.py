"""The portal's "send a test event": one Standard Webhooks request of type `webhook.test`,
signed with the subscription's current secret and sent through the delivery path's sender (same
SSRF rules and timeout), logged with the attempt log lines of real deliveries (marked
`"test": true`), and kept as the subscription's last test.

It is not an event: it never reaches the event feed, is sent once and never retried, and a 410
answer disables nothing. How to extend: another kind of test message is another body here; its
outcome goes through `record_test_attempt` like this one.
"""

from __future__ import annotations

import logging
import secrets

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock
from service.domain.delivery import describe_test_attempt
from service.domain.signing import webhook_body, webhook_headers
from service.store import subscriptions as subscription_store
from service.store.db import transaction
from service.store.pings import SentTestEvent, record_test_attempt
from service.webhooks.sender import WebhookSender

log = logging.getLogger(__name__)

TEST_EVENT_TYPE = "webhook.test"
TEST_WEBHOOK_ID_PREFIX = "msg_test_"


async def send_test_event(
    sender: WebhookSender,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    client_id: int,
    subscription: subscription_store.SubscriptionRow,
    secret: str,
) -> SentTestEvent:
    """Send one test event to `subscription` now, log its attempt, keep it on the subscription's
    row and return it."""
    now = clock()
    webhook_id = f"{TEST_WEBHOOK_ID_PREFIX}{secrets.token_hex(12)}"
    body = webhook_body(
        TEST_EVENT_TYPE,
        now,
        {"test": True, "subscription_id": subscription.id, "message": "a test from the portal"},
    )
    headers = webhook_headers([secret], webhook_id, int(now.timestamp()), body)
    result = await sender.send(subscription.url, headers, body)
    sent = SentTestEvent(
        subscription_id=subscription.id,
        at=result.at,
        webhook_id=webhook_id,
        status=result.status,
        latency_ms=result.latency_ms,
        error=describe_test_attempt(result.outcome),
    )
    _log_test_attempt(sent)
    async with transaction(sessions) as session:
        await record_test_attempt(session, client_id, sent)
    return sent


def _log_test_attempt(sent: SentTestEvent) -> None:
    # The same lines as a real delivery's attempt (service/webhooks/write_back.py), with the
    # test's webhook-id where a delivery names its event, and no retry: a test is sent once.
    facts = {
        "webhook_id": sent.webhook_id,
        "subscription_id": sent.subscription_id,
        "status": sent.status,
        "latency_ms": sent.latency_ms,
        "test": True,
    }
    if sent.succeeded:
        log.info("webhook.delivered", extra=facts)
    else:
        log.info("webhook.attempt_failed", extra={**facts, "error": sent.error})
