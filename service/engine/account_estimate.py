"""The account's completion-time estimate as the poller uses it: read with each batch (one row by
key) to schedule its polls, and added to by the completions the batch's write-back records, for
the account as a whole and for each client (spread by the estimate the batch was scheduled with).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.completion import CompletionEstimate, Observation, apportion
from service.store.estimates import ACCOUNT_WIDE, add_to_estimates, load_estimate
from service.store.poll_results import PollWrite, WrittenTask


class AccountEstimate:
    def __init__(self, account: str, half_life_s: float) -> None:
        self._account = account
        self._half_life_s = half_life_s
        # As of the last batch that found one stored; None until then (a cold start).
        self.current: CompletionEstimate | None = None

    async def refresh(self, session: AsyncSession, now: datetime) -> None:
        """Read the stored estimate, decayed to `now`; a missing one keeps the last read."""
        stored = await load_estimate(session, self._account)
        if stored is not None:
            self.current = stored.as_of(now, self._half_life_s)

    async def add_completions(
        self,
        session: AsyncSession,
        writes: Sequence[PollWrite],
        written: Sequence[WrittenTask],
        now: datetime,
    ) -> None:
        """Add what a write-back's recorded completions observed, in its transaction."""
        increments = completion_increments(self.current, writes, written)
        await add_to_estimates(session, self._account, increments, now, self._half_life_s)


def completion_increments(
    estimate: CompletionEstimate | None, writes: Sequence[PollWrite], written: Sequence[WrittenTask]
) -> dict[int, tuple[float, ...]]:
    """What a batch's recorded completions, and its tasks that will expire unanswered, add to the
    account's estimate (key ACCOUNT_WIDE) and to each client's, spread by the estimate the batch
    was scheduled with."""
    observed: dict[int, Observation] = {
        write.id: write.decision.observation
        for write in writes
        if write.decision.observation is not None
    }
    by_client: dict[int, list[Observation]] = defaultdict(list)
    for task in written:
        seen = observed.get(task.id)
        if seen is not None and (task.answered or seen.censored):
            by_client[task.client_id].append(seen)
    if not by_client:
        return {}
    spread_by = estimate or CompletionEstimate.empty()
    increments = {client: apportion(spread_by, seen) for client, seen in by_client.items()}
    account = [math.fsum(column) for column in zip(*increments.values(), strict=True)]
    return {ACCOUNT_WIDE: tuple(account), **increments}
