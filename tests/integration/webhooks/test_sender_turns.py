"""A paced request and its turn (WebhookSender.send_in_turn): sent when it can start within its
turn, and, when it would start too late, not sent (None) with not a byte of it on the wire."""

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


async def test_a_request_too_late_for_its_turn_sends_no_byte() -> None:
    """Not even its headers: a raw server sees at most a connection opened and closed."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = WebhookSender(2.0, allow_private=True)
    try:
        missed = await sender.send_in_turn(
            f"http://127.0.0.1:{port}/hook",
            {"content-type": "application/json"},
            b"{}",
            asyncio.get_running_loop().time() - 1.0,
        )
        await sender.close()
        async with asyncio.timeout(5):
            while not received:
                await asyncio.sleep(0.01)
    finally:
        await sender.close()
        server.close()
    assert missed is None
    assert received == [b""]
