"""A paced request and its turn (WebhookSender.send_in_turn): sent when it can start within its
turn, never sent (None) when it would start too late."""

from __future__ import annotations

import asyncio
import secrets

from service.domain.pacing import MAX_LATENESS_S
from service.webhooks.sender import WebhookSender
from tests.support.receivers import Receiver


async def test_a_request_within_its_turn_is_sent_and_one_too_late_is_not(
    receiver: Receiver,
) -> None:
    path = f"/turns-{secrets.token_hex(4)}"
    sender = WebhookSender(2.0, allow_private=True)
    loop = asyncio.get_running_loop()
    try:
        on_time = await sender.send_in_turn(receiver.url(path), {}, b"{}", loop.time())
        # The kept-alive connection is reused: the check is made with it in hand.
        too_late = await sender.send_in_turn(
            receiver.url(path), {}, b"{}", loop.time() - 2 * MAX_LATENESS_S
        )
        unpaced = await sender.send(receiver.url(path), {}, b"{}")
    finally:
        await sender.close()
    assert on_time is not None
    assert on_time.status == 200
    assert too_late is None
    assert unpaced.status == 200
    assert len(receiver.received(path)) == 2


async def test_a_request_too_late_for_its_turn_opens_no_connection(receiver: Receiver) -> None:
    path = f"/turns-{secrets.token_hex(4)}"
    sender = WebhookSender(2.0, allow_private=True)
    try:
        missed = await sender.send_in_turn(
            receiver.url(path), {}, b"{}", asyncio.get_running_loop().time() - 1.0
        )
    finally:
        await sender.close()
    assert missed is None
    assert receiver.received(path) == []
