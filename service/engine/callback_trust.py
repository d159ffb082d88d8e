"""Whether a client's callbacks can be trusted, as the poller's write-backs learn it: each
write-back counts the callback-carrying checks it completed, heard (with their callback) or missed
(without), in its transaction; a client whose callbacks go missing (too many, or all of them from
one moment on: an outage) stops being trusted, and its checks still waiting for a callback are
made due at once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.callback_trust import HALF_LIFE_S
from service.observability.metrics import record_callback_trust
from service.store.callback_trust import CallbackCount, TrustChange, count_callbacks, stop_waiting
from service.store.db import transaction
from service.store.poll_results import WrittenTask

log = logging.getLogger(__name__)


class CallbackTrust:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, tolerance: float, first_poll_s: float
    ) -> None:
        self._sessions = sessions
        self._tolerance = tolerance
        # How soon after submission a check no longer waiting for its callback is polled.
        self._first_poll_s = first_poll_s

    async def count(
        self, session: AsyncSession, written: Sequence[WrittenTask], now: datetime
    ) -> list[TrustChange]:
        """Count a write-back's completions in its transaction; returns the clients whose trust
        changed, for `apply` once it has committed."""
        return await count_callbacks(
            session,
            callback_counts(written),
            now,
            half_life_s=HALF_LIFE_S,
            tolerance=self._tolerance,
        )

    async def apply(self, change: TrustChange, now: datetime) -> None:
        """Log and count a client's callbacks becoming trusted or not; when not, its checks still
        waiting for a callback are made due (their record is committed: trust is already gone for
        whatever claims them)."""
        record = change.record
        record_callback_trust(record.trusted)
        waiting = 0
        if not record.trusted:
            async with transaction(self._sessions) as session:
                waiting = await stop_waiting(
                    session, change.client_id, now, first_poll_s=self._first_poll_s
                )
        log.warning(
            "callbacks.trusted" if record.trusted else "callbacks.untrusted",
            extra={
                "client_id": change.client_id,
                "missed_share": round(record.missed_share, 3),
                "outage": record.outage,
                "waiting_checks_made_due": waiting,
            },
        )


def callback_counts(written: Sequence[WrittenTask]) -> dict[int, CallbackCount]:
    """Per client, the callback-carrying checks a write-back found answered (completed, or
    answered and waiting for a re-check): with their callback (heard) or without (missed)."""
    heard: Counter[int] = Counter()
    missed: Counter[int] = Counter()
    for task in written:
        if task.expects_callback and task.answered:
            (heard if task.hinted else missed)[task.client_id] += 1
    return {
        client_id: CallbackCount(heard[client_id], missed[client_id])
        for client_id in heard.keys() | missed.keys()
    }
