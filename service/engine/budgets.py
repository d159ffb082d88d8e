"""The scheduler's step that resumes check jobs paused for their client's daily check budget, once
the budget allows a check again: at the next UTC midnight, or sooner when the client's limit is
raised or lifted (service/store/budgets.py decides which, from the ledger and the limits).

A budget that allows one check resumes the job; if that check spends it, the job's next submit is
refused and pauses it again, so a job never waits longer than one interval past its budget.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.store.budgets import resume_jobs_for_budget
from service.store.db import transaction

log = logging.getLogger(__name__)

# How often budget-paused jobs are looked at (one indexed query: the paused jobs are few).
BUDGET_RESUME_INTERVAL_S = 5.0
# Jobs resumed per transaction; more wait for the next round of the same run.
BUDGET_RESUME_BATCH = 200
BUDGET_RESUME_MAX_ROUNDS = 10


class BudgetResume:
    """Moves budget-paused jobs back to running (and their submits to waiting) when their
    client's budget allows."""

    name = "budget_resume"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        interval_s: float = BUDGET_RESUME_INTERVAL_S,
    ) -> None:
        self._sessions = sessions
        self._setting = settings.client_max_checks_per_day
        self.interval_s = interval_s

    async def run(self, now: datetime) -> None:
        for _ in range(BUDGET_RESUME_MAX_ROUNDS):
            async with transaction(self._sessions) as session:
                resumed = await resume_jobs_for_budget(
                    session, now, self._setting, BUDGET_RESUME_BATCH
                )
            for job in resumed:
                log.info("budget.job_resumed", extra={"job_pk": job.id, "client_id": job.client_id})
            if len(resumed) < BUDGET_RESUME_BATCH:
                return
