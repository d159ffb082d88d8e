"""The SSRF-safe sender against real local receivers."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from service.webhooks.guard import check_webhook_url
from service.webhooks.sender import EXCERPT_BYTES, WebhookSender
from tests.support.receivers import Receiver, Reply, refused_port
from tests.support.resolvers import TableResolver

HEADERS = {"content-type": "application/json", "webhook-id": "evt_test"}
BODY = b'{"type":"task.completed"}'


def _path() -> str:
    return f"/{secrets.token_hex(6)}"


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    client = WebhookSender(timeout_s=2.0, allow_private=True)
    yield client
    await client.close()


async def test_a_2xx_is_recorded_with_status_latency_and_excerpt(
    sender: WebhookSender, receiver: Receiver
) -> None:
    path = _path()
    receiver.script(path, Reply(status=202, body=b"accepted"))
    result = await sender.send(receiver.url(path), HEADERS, BODY)
    assert (result.status, result.error, result.response_excerpt) == (202, None, "accepted")
    assert result.latency_ms >= 0
    [request] = receiver.received(path)
    assert request.body == BODY
    assert request.headers["webhook-id"] == "evt_test"
    assert request.headers["content-type"] == "application/json"


async def test_a_redirect_is_not_followed(sender: WebhookSender, receiver: Receiver) -> None:
    path, target = _path(), _path()
    receiver.script(path, Reply(status=302, headers={"location": receiver.url(target)}))
    result = await sender.send(receiver.url(path), HEADERS, BODY)
    assert result.status == 302
    assert receiver.received(target) == []


async def test_a_receiver_that_never_answers_times_out() -> None:
    sender = WebhookSender(timeout_s=0.3, allow_private=True)
    try:
        path = _path()
        with_receiver = Receiver()
        with_receiver.start()
        try:
            with_receiver.script(path, Reply(hang=True))
            result = await sender.send(with_receiver.url(path), HEADERS, BODY)
        finally:
            with_receiver.stop()
    finally:
        await sender.close()
    assert result.status is None
    assert result.error == "timed out after 0.3 s"
    assert result.latency_ms >= 300


async def test_a_refused_connection_is_a_recorded_failure(sender: WebhookSender) -> None:
    result = await sender.send(f"http://127.0.0.1:{refused_port()}/hook", HEADERS, BODY)
    assert result.status is None
    assert result.error == "connection refused"


async def test_the_excerpt_is_capped_and_safely_decoded(
    sender: WebhookSender, receiver: Receiver
) -> None:
    path = _path()
    body = b"\xff\x00bad utf-8 " + b"x" * 5000
    receiver.script(path, Reply(status=500, body=body))
    result = await sender.send(receiver.url(path), HEADERS, BODY)
    assert result.status == 500
    assert result.response_excerpt is not None
    assert "\x00" not in result.response_excerpt
    assert result.response_excerpt.startswith("\ufffd\ufffdbad utf-8 ")
    assert len(result.response_excerpt.encode()) <= EXCERPT_BYTES + 8


async def test_retry_after_is_kept_for_the_schedule(
    sender: WebhookSender, receiver: Receiver
) -> None:
    path = _path()
    receiver.script(path, Reply(status=429, headers={"retry-after": "30"}))
    result = await sender.send(receiver.url(path), HEADERS, BODY)
    assert (result.status, result.retry_after) == (429, "30")


async def test_a_slow_receiver_does_not_hold_up_another(receiver: Receiver) -> None:
    sender = WebhookSender(timeout_s=5.0, allow_private=True)
    slow, fast = _path(), _path()
    receiver.script(slow, default=Reply(hang=True))
    try:
        stuck = asyncio.ensure_future(sender.send(receiver.url(slow), HEADERS, BODY))
        await receiver.wait_for(1, slow)
        quick = await asyncio.gather(
            *(sender.send(receiver.url(fast), HEADERS, BODY) for _ in range(20))
        )
        assert [r.status for r in quick] == [200] * 20
        assert not stuck.done()
        stuck.cancel()
    finally:
        await sender.close()


# --- the SSRF guard at send time -------------------------------------------------------------


async def test_a_loopback_literal_is_refused_before_any_connection(receiver: Receiver) -> None:
    sender = WebhookSender(timeout_s=2.0, allow_private=False)
    path = _path()
    try:
        result = await sender.send(receiver.url(path), HEADERS, BODY)
    finally:
        await sender.close()
    assert result.status is None
    assert result.error == "address not allowed: 127.0.0.1 is a loopback address"
    assert receiver.received(path) == []


@pytest.mark.parametrize(
    ("answer", "word"),
    [
        (["10.0.0.7"], "private"),
        (["127.0.0.1"], "loopback"),
        (["93.184.215.14", "192.168.0.10"], "private"),
        (["::1"], "loopback"),
        (["::ffff:127.0.0.1"], "IPv4-mapped"),
        (["169.254.169.254"], "metadata"),
    ],
)
async def test_a_host_resolving_to_a_non_public_address_is_refused(
    answer: list[str], word: str
) -> None:
    resolver = TableResolver({"hooks.example": [answer]})
    sender = WebhookSender(timeout_s=2.0, allow_private=False, resolver=resolver)
    try:
        result = await sender.send("http://hooks.example/hook", HEADERS, BODY)
    finally:
        await sender.close()
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("address not allowed: hooks.example resolves to")
    assert word in result.error
    assert resolver.lookups == ["hooks.example"]


async def test_an_unresolvable_host_is_a_recorded_failure() -> None:
    sender = WebhookSender(timeout_s=2.0, allow_private=False, resolver=TableResolver({}))
    try:
        result = await sender.send("https://nowhere.example/hook", HEADERS, BODY)
    finally:
        await sender.close()
    assert result.status is None
    assert result.error is not None
    assert "nowhere.example" in result.error


async def test_the_connection_goes_to_the_vetted_address_and_keeps_the_host_name(
    receiver: Receiver,
) -> None:
    resolver = TableResolver({"hooks.test": [["127.0.0.1"]]})
    sender = WebhookSender(timeout_s=2.0, allow_private=True, resolver=resolver)
    path = _path()
    try:
        result = await sender.send(f"http://hooks.test:{receiver.port}{path}", HEADERS, BODY)
    finally:
        await sender.close()
    assert result.status == 200
    [request] = receiver.received(path)
    assert request.headers["host"] == f"hooks.test:{receiver.port}"


async def test_dns_rebinding_after_the_url_was_accepted_is_caught_at_send(
    receiver: Receiver,
) -> None:
    resolver = TableResolver({"rebind.test": [["93.184.215.14"], ["127.0.0.1"]]})
    path = _path()
    url = f"http://rebind.test:{receiver.port}{path}"
    assert await check_webhook_url(url, resolver, allow_private=False) is None
    sender = WebhookSender(timeout_s=2.0, allow_private=False, resolver=resolver)
    try:
        result = await sender.send(url, HEADERS, BODY)
    finally:
        await sender.close()
    assert result.error == (
        "address not allowed: rebind.test resolves to 127.0.0.1, which is a loopback address"
    )
    assert resolver.lookups == ["rebind.test", "rebind.test"]
    assert receiver.received(path) == []


async def test_the_create_time_check_refuses_private_hosts_and_accepts_public_ones() -> None:
    resolver = TableResolver(
        {"private.test": [["10.0.0.1"]], "public.test": [["93.184.215.14", "2606:4700::1"]]}
    )
    refusal = await check_webhook_url("https://private.test/h", resolver, allow_private=False)
    assert refusal is not None
    assert "10.0.0.1" in refusal.reason
    assert await check_webhook_url("https://public.test/h", resolver, allow_private=False) is None
    assert await check_webhook_url("https://private.test/h", resolver, allow_private=True) is None
    missing = await check_webhook_url("https://missing.test/h", resolver, allow_private=False)
    assert missing is not None
    assert "cannot be resolved" in missing.reason


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/hook",
        "http://localhost:9/hook",
        "http://127.1/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_urls_refused_by_their_text_never_connect(url: str) -> None:
    resolver = TableResolver({})
    sender = WebhookSender(timeout_s=2.0, allow_private=False, resolver=resolver)
    try:
        result = await sender.send(url, HEADERS, BODY)
    finally:
        await sender.close()
    assert result.error is not None
    assert result.error.startswith("address not allowed")
    assert resolver.lookups == []
