"""A webhook receiver that misbehaves: a real local HTTP server that fails about half of the
attempts it gets (500, 503 with Retry-After, 429, or no answer before the sender's timeout) and
keeps every request with the reply it chose, so a test can hold the sender's attempt log against
what really arrived."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.integration.webhooks.receiver import ReceivedRequest, Receiver, Reply

# Longer than PHONEBRIDGE_WEBHOOK_TIMEOUT_S in the chaos stack: the sender gives up first.
TIMEOUT_REPLY = Reply(status=200, delay_s=2.5)
FAILURES = (
    Reply(status=500, body=b"boom"),
    Reply(status=503, headers={"Retry-After": "1"}),
    Reply(status=429),
    TIMEOUT_REPLY,
)


@dataclass(frozen=True)
class Answered:
    request: ReceivedRequest
    reply: Reply

    @property
    def webhook_id(self) -> str:
        return self.request.headers.get("webhook-id", "")

    @property
    def accepted(self) -> bool:
        """Whether the sender saw a 2xx in time (a delayed reply comes after its timeout)."""
        return 200 <= self.reply.status < 300 and self.reply.delay_s == 0


class FlakyReceiver(Receiver):
    """Fails each request with probability `failure_rate` (seeded), but never more than
    `max_failures_in_row` times in a row for one message, so every message gets through within
    the retry schedule. `failure_rate=0` makes a receiver that always accepts."""

    def __init__(self, *, failure_rate: float, seed: int, max_failures_in_row: int = 3) -> None:
        super().__init__()
        self.failure_rate = failure_rate
        self.max_failures_in_row = max_failures_in_row
        self._random = random.Random(seed)
        self._failures_in_row: Counter[str] = Counter()
        self.replies: list[Reply] = []

    def _next_reply(self, request: ReceivedRequest) -> Reply:
        webhook_id = request.headers.get("webhook-id", "")
        fail = (
            self._failures_in_row[webhook_id] < self.max_failures_in_row
            and self._random.random() < self.failure_rate
        )
        if fail:
            self._failures_in_row[webhook_id] += 1
            reply = self._random.choice(FAILURES)
        else:
            self._failures_in_row[webhook_id] = 0
            reply = Reply()
        self.replies.append(reply)
        return reply

    def answered(self) -> list[Answered]:
        with self._changed:
            return [
                Answered(request, reply)
                for request, reply in zip(self.requests, self.replies, strict=True)
            ]


@contextmanager
def flaky_receiver(*, failure_rate: float, seed: int) -> Iterator[FlakyReceiver]:
    receiver = FlakyReceiver(failure_rate=failure_rate, seed=seed)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
