"""The portal overview's charts (service/api/portal/charts.py): the last 24 hours, oldest first,
laid out from the hourly rows the store reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.api.portal.charts import (
    CHART_HOURS,
    NO_VERDICT,
    axis_label,
    finished_chart,
    hours_ending,
    verdict_chart,
)
from service.domain.states import TaskState
from service.domain.verdicts import Verdict
from service.features.overview import VerdictHour, count_verdicts
from service.store.portal import AnswerHour, FinishedHour

NOW = datetime(2026, 12, 7, 14, 37, 12, tzinfo=UTC)


def test_the_hours_end_with_the_current_one_oldest_first() -> None:
    hours = hours_ending(NOW)

    assert len(hours) == CHART_HOURS
    assert hours[-1] == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    assert hours[0] == hours[-1] - timedelta(hours=CHART_HOURS - 1)
    assert hours == sorted(hours)


def test_finished_tasks_are_drawn_under_their_hours() -> None:
    hours = hours_ending(NOW)
    rows = [
        FinishedHour(hours[-1], TaskState.COMPLETED, 30, 4.0, 9.0),
        FinishedHour(hours[-1], TaskState.FAILED, 10, None, None),
        FinishedHour(hours[-3], TaskState.EXPIRED, 5, None, None),
    ]

    chart = finished_chart(hours, rows)

    assert not chart.empty
    assert chart.top >= 40
    assert (chart.first_label, chart.last_label) == ("Dec 6 15:00 UTC", "Dec 7 14:00 UTC")
    assert len(chart.bars) == 3


def test_no_rows_make_an_empty_chart() -> None:
    chart = finished_chart(hours_ending(NOW), [])

    assert chart.empty
    assert chart.bars == []


def test_an_axis_label_says_the_day_and_the_hour() -> None:
    assert axis_label(datetime(2026, 12, 10, 5, tzinfo=UTC)) == "Dec 10 05:00 UTC"
    assert axis_label(datetime(2027, 1, 1, 0, tzinfo=UTC)) == "Jan 1 00:00 UTC"


def test_answers_are_counted_by_the_verdict_of_their_status() -> None:
    hours = hours_ending(NOW)
    answers = [
        AnswerHour(hours[-2], "ring", 3),
        AnswerHour(hours[-2], "busy", 2),
        AnswerHour(hours[-2], "empty", 1),
        AnswerHour(hours[-1], "temp_unavailable", 4),
        AnswerHour(hours[-1], "line_abnormal", 1),
        AnswerHour(hours[-1], "turned_off", 6),
        AnswerHour(hours[-1], "voicemail", 2),
        AnswerHour(hours[-1], "beeping", 1),
    ]

    assert sorted(count_verdicts(answers), key=lambda row: (row.hour, str(row.verdict))) == [
        VerdictHour(hours[-2], Verdict.DEAD, 1),
        VerdictHour(hours[-2], Verdict.LIVE, 5),
        VerdictHour(hours[-1], None, 3),
        VerdictHour(hours[-1], Verdict.RETRY, 5),
        VerdictHour(hours[-1], Verdict.UNREACHABLE, 6),
    ]


def test_the_verdict_chart_stacks_each_verdict_and_the_answers_of_none() -> None:
    hours = hours_ending(NOW)
    rows = [
        VerdictHour(hours[-1], Verdict.LIVE, 5),
        VerdictHour(hours[-1], Verdict.RETRY, 2),
        VerdictHour(hours[-1], None, 1),
        VerdictHour(hours[-4], Verdict.DEAD, 3),
    ]

    chart = verdict_chart(hours, rows)

    assert chart.series == ["live", "unreachable", "dead", "retry", NO_VERDICT]
    assert chart.top == 8
    drawn = {(bar.label, bar.series, bar.value) for bar in chart.bars}
    assert drawn == {
        (hours[-1].strftime("%H:00"), "live", 5),
        (hours[-1].strftime("%H:00"), "retry", 2),
        (hours[-1].strftime("%H:00"), NO_VERDICT, 1),
        (hours[-4].strftime("%H:00"), "dead", 3),
    }
    assert verdict_chart(hours, []).empty
