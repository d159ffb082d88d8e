"""A client's daily check budget: how many upstream checks it may cause per UTC day (single checks,
re-checks and check jobs' items alike), and what a check that does not fit waits for.

The limit that applies is the client's own (`phonebridge api-key limits --max-checks-per-day`)
over the setting PHONEBRIDGE_CLIENT_MAX_CHECKS_PER_DAY, as for the intake limits
(service/domain/client_limits.py); 0 means no limit, and then no check is counted at all. Days
are UTC days: a budget spent today is whole again at the next UTC midnight, whatever the
client's time zone.

The count itself is the ledger's (service/store/budgets.py), taken in the transaction that
writes a submit's intent before its call: a check whose outcome is unknown counts, and one that
surely reached nothing upstream is given back. Only today's count is ever read, and a check is
given back on the day it counted on, minutes later at most: the ledger keeps today and the two
days before it, and retention drops older days (`ledger_kept_from`).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta

from service.domain.client_limits import OFF, effective_limit

ONE_DAY = timedelta(days=1)
# Days of the ledger kept before today's: a give-back just after midnight finds yesterday's row,
# with a day to spare.
LEDGER_DAYS_BEFORE_TODAY = 2


def daily_check_limit(own: int | None, setting: int) -> int:
    """The checks a client may cause per UTC day: its own value when it has one, else the
    setting; 0 means no limit."""
    return effective_limit(own, setting)


def budget_applies(limit: int) -> bool:
    """Whether checks are counted at all under this limit (never when it is off)."""
    return limit > OFF


def utc_day(now: datetime) -> date:
    """The UTC day an instant counts in (an aware datetime, in any time zone)."""
    return now.astimezone(UTC).date()


def next_utc_midnight(now: datetime) -> datetime:
    """The start of the UTC day after the one `now` counts in: when a spent budget is whole."""
    return datetime.combine(utc_day(now) + ONE_DAY, time(0), tzinfo=UTC)


def ledger_kept_from(now: datetime) -> date:
    """The oldest UTC day whose count the ledger keeps at `now`; older days go."""
    return utc_day(now) - LEDGER_DAYS_BEFORE_TODAY * ONE_DAY


def seconds_to_next_utc_midnight(now: datetime) -> int:
    """Whole seconds until the next UTC midnight, rounded up and at least 1 (a `Retry-After`:
    retrying after it always finds the next day's budget)."""
    return max(1, math.ceil((next_utc_midnight(now) - now).total_seconds()))


def fits(counted: int, wanted: int, limit: int) -> bool:
    """Whether `wanted` more checks fit in a day that has counted `counted` under `limit` (any
    number fits when there is no limit)."""
    return not budget_applies(limit) or counted + wanted <= limit


def budget_exhausted_detail(limit: int, retry_after_s: int) -> str:
    """What a check refused for the budget is told."""
    checks = "check" if limit == 1 else "checks"
    return (
        f"this client may cause {limit} upstream {checks} per UTC day and has used them; "
        f"nothing was submitted; the budget is whole again at the next UTC midnight, in "
        f"{retry_after_s} s"
    )
