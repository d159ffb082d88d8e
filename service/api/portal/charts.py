"""The overview's charts of the last 24 hours, laid out as SVG rectangles for the template (the
server draws them: no script, no chart library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.domain.portal import Bar, stacked_bars
from service.domain.states import DeliveryState, TaskState
from service.domain.verdicts import Verdict
from service.features.overview import DeliveryHour, FinishedHour, VerdictHour

CHART_HOURS = 24
WIDTH = 720.0
HEIGHT = 160.0

FINISHED_SERIES = [TaskState.COMPLETED, TaskState.EXPIRED, TaskState.FAILED, TaskState.CANCELLED]
# The answers of a phone_status upstream does not document have no verdict: drawn as their own.
NO_VERDICT = "no verdict"
VERDICT_SERIES = [*Verdict, NO_VERDICT]
DELIVERY_SERIES = [DeliveryState.SUCCEEDED, DeliveryState.FAILED]
LAG_SERIES = ["p50", "p50 to p95"]


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    bars: list[Bar]
    top: int
    unit: str
    series: list[str]
    first_label: str
    last_label: str
    empty: bool


def hours_ending(now: datetime) -> list[datetime]:
    """The starts of the last CHART_HOURS hours, oldest first, the current hour last."""
    current = now.replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=back) for back in range(CHART_HOURS - 1, -1, -1)]


def axis_label(hour: datetime) -> str:
    return f"{hour:%b} {hour.day} {hour:%H}:00 UTC"


def _chart(
    title: str,
    hours: Sequence[datetime],
    counts: dict[datetime, dict[str, int]],
    series: Sequence[str],
    unit: str,
) -> Chart:
    buckets = [(hour.strftime("%H:00"), counts.get(hour, {})) for hour in hours]
    bars, top = stacked_bars(buckets, series, width=WIDTH, height=HEIGHT)
    return Chart(
        title,
        bars,
        top,
        unit,
        list(series),
        # The ends of the axis say the day too: 24 hours back crosses midnight.
        axis_label(hours[0]),
        axis_label(hours[-1]),
        empty=not bars,
    )


def finished_chart(hours: Sequence[datetime], rows: Sequence[FinishedHour]) -> Chart:
    counts: dict[datetime, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row.hour, {})[row.state.value] = row.n
    return _chart("Tasks finished per hour", hours, counts, FINISHED_SERIES, "tasks")


def verdict_chart(hours: Sequence[datetime], rows: Sequence[VerdictHour]) -> Chart:
    counts: dict[datetime, dict[str, int]] = {}
    for row in rows:
        series = NO_VERDICT if row.verdict is None else row.verdict.value
        counts.setdefault(row.hour, {})[series] = row.n
    return _chart("Completed tasks per hour by verdict", hours, counts, VERDICT_SERIES, "tasks")


def delivery_chart(hours: Sequence[datetime], rows: Sequence[DeliveryHour]) -> Chart:
    counts: dict[datetime, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row.hour, {})[row.state.value] = row.n
    return _chart("Deliveries ended per hour", hours, counts, DELIVERY_SERIES, "deliveries")


def lag_chart(hours: Sequence[datetime], rows: Sequence[FinishedHour]) -> Chart:
    """Detection lag per hour: p50 stacked under the rest of p95, in whole seconds."""
    counts: dict[datetime, dict[str, int]] = {}
    for row in rows:
        if row.state is TaskState.COMPLETED and row.lag_p50_s is not None:
            p50 = round(row.lag_p50_s)
            p95 = round(row.lag_p95_s or row.lag_p50_s)
            counts[row.hour] = {"p50": p50, "p50 to p95": max(p95 - p50, 0)}
    return _chart("Detection lag of completed tasks (p50, p95)", hours, counts, LAG_SERIES, "s")
