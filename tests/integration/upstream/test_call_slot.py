"""An upstream call's slot checked where its bytes go out (service/upstream/call_slot.py,
service/wire.py): a call within its slot is sent; one that would go out after its slot's last
moment sends not a byte, not even its headers, and raises SlotMissed, which the client passes on
instead of calling it a transport failure; a call outside any slot is never refused. Only a
reservation that found the calls timeline booked ahead gives its calls a last moment."""

from __future__ import annotations

import asyncio

import pytest

from service.upstream.call_slot import PlacedSlots, SlotMissed, within_slot
from service.upstream.client import UpstreamClient
from service.upstream.ratelimit import MAX_LATENESS_S, SlotReservation
from tests.support.settings import make_settings


class RawServer:
    """What each connection sent before the client closed it, byte for byte."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(65536)
        self.received.append(data)
        if data:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            await writer.drain()
        writer.close()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


async def client_of(server: RawServer) -> UpstreamClient:
    server.server = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    settings = make_settings(
        "postgresql://unused/db",
        "redis://unused:1/0",
        upstream_base_url=server.base_url,
        upstream_timeout_s=5.0,
    )
    return UpstreamClient(settings)


async def until_received(server: RawServer, count: int) -> None:
    async with asyncio.timeout(5):
        while len(server.received) < count:
            await asyncio.sleep(0.01)


async def test_a_call_within_its_slot_is_sent_and_one_too_late_sends_no_byte() -> None:
    server = RawServer()
    client = await client_of(server)
    loop = asyncio.get_running_loop()
    try:
        with within_slot(loop.time() + 5.0):
            on_time = await client.fetch_task_result("T-on-time")
        with within_slot(loop.time() - 1.0), pytest.raises(SlotMissed):
            await client.fetch_task_result("T-too-late")
        with within_slot(loop.time() - 1.0), pytest.raises(SlotMissed):
            await client.submit_check("+525512345678", None)
        unpaced = await client.fetch_task_result("T-unpaced")
        await client.aclose()
        # Each late call's connection was opened and closed with nothing written on it.
        await until_received(server, 4)
    finally:
        await client.aclose()
        assert server.server is not None
        server.server.close()
    assert (on_time.status_code, unpaced.status_code) == (200, 200)
    sent = [data for data in server.received if data]
    assert len(sent) == 2
    assert b"T-on-time" in sent[0]
    assert b"T-unpaced" in sent[1]
    assert server.received.count(b"") == 2


def test_only_a_timeline_booked_ahead_gives_a_call_its_last_moment() -> None:
    def placed(first_in_s: float) -> PlacedSlots:
        return PlacedSlots.of(SlotReservation(2, first_in_s, 0.1), sent_at=10.0, answered_at=10.01)

    assert placed(0.0).last_moment(1) is None
    assert placed(MAX_LATENESS_S).last_moment(1) is None
    booked = placed(0.5)
    assert booked.last_moment(0) == pytest.approx(10.5 + MAX_LATENESS_S)
    assert booked.last_moment(1) == pytest.approx(10.6 + MAX_LATENESS_S)


def test_a_slot_is_waited_for_at_its_latest_and_late_past_its_earliest() -> None:
    booked = PlacedSlots.of(SlotReservation(2, 0.5, 0.1), sent_at=10.0, answered_at=10.01)
    assert booked.start_at(0) == pytest.approx(10.51)
    assert booked.start_at(1) == pytest.approx(10.61)
    assert not booked.too_late(1, 10.6 + MAX_LATENESS_S - 0.001)
    assert booked.too_late(1, 10.6 + MAX_LATENESS_S + 0.001)
    assert not booked.uncertain
    slow = PlacedSlots.of(SlotReservation(1, 0.5, 0.1), sent_at=10.0, answered_at=10.1)
    assert slow.uncertain
