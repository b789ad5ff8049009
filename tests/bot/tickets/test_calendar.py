"""Ticket deadlines in working days: China's holidays and 调休 from chinese-calendar, the
deployment's own days on top, and weekends only for a year the package does not cover."""

from __future__ import annotations

import logging
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from bot import metrics
from bot.tickets.calendar import WorkingCalendar

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("opened", "working_days", "due"),
    [
        # an ordinary week: Monday's ticket with one working day is due at the end of Tuesday
        ("2026-11-30T10:00", 1, "2026-12-02T00:00"),
        # Friday → Monday: the weekend does not count
        ("2026-12-04T16:30", 1, "2026-12-08T00:00"),
        # Friday 18 Sep 2026 → Sunday 20 Sep, an adjusted working day (调休) before National Day
        ("2026-09-18T10:00", 1, "2026-09-21T00:00"),
        # across Mid-Autumn (25–27 Sep) and National Day (1–7 Oct), Saturday 10 Oct works
        ("2026-09-24T09:00", 5, "2026-10-10T00:00"),
        ("2026-09-24T09:00", 6, "2026-10-11T00:00"),
        # Spring Festival 2026: Saturday 14 Feb works, 15–23 Feb are off
        ("2026-02-13T11:00", 1, "2026-02-15T00:00"),
        ("2026-02-13T11:00", 5, "2026-02-28T00:00"),
        # the pilot's longest tier
        ("2026-11-30T10:00", 15, "2026-12-22T00:00"),
    ],
)
def test_due_at_counts_working_days_after_the_opening_day(
    opened: str, working_days: int, due: str
) -> None:
    calendar = WorkingCalendar(SHANGHAI)
    assert calendar.due_at(local(opened), working_days) == local(due)


def test_the_opening_day_is_the_local_day_not_the_utc_day() -> None:
    calendar = WorkingCalendar(SHANGHAI)
    # 17:00 UTC on Thursday is 01:00 on Friday in Shanghai: one working day ends on Monday.
    opened = datetime.fromisoformat("2026-12-03T17:00:00+00:00")
    due = calendar.due_at(opened, 1)
    assert due == local("2026-12-08T00:00")
    assert due.tzinfo == opened.tzinfo  # given back in the caller's zone


def test_local_days_off_and_working_days_override_the_national_calendar() -> None:
    calendar = WorkingCalendar(
        SHANGHAI, days_off=[date(2026, 12, 1)], working_days=[date(2026, 12, 5)]
    )
    assert not calendar.is_working_day(date(2026, 12, 1))  # a Tuesday the city gives off
    assert calendar.is_working_day(date(2026, 12, 5))  # a Saturday the city works
    assert calendar.is_working_day(date(2026, 10, 10))  # the national 调休 still holds
    assert calendar.due_at(local("2026-11-30T10:00"), 1) == local("2026-12-03T00:00")
    assert calendar.due_at(local("2026-12-04T10:00"), 1) == local("2026-12-06T00:00")


def test_a_year_the_package_does_not_know_counts_weekends_only_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calendar = WorkingCalendar(SHANGHAI)
    before = metrics.CALENDAR_UNCOVERED.labels("2099")._value.get()
    with caplog.at_level(logging.WARNING, logger="ratebot.tickets"):
        # Friday 2 Jan 2099 → Monday 5 Jan: no holiday is guessed, the weekend is off
        assert calendar.due_at(local("2099-01-02T10:00"), 1) == local("2099-01-06T00:00")
        assert calendar.due_at(local("2099-01-05T10:00"), 2) == local("2099-01-08T00:00")
    warnings = [r for r in caplog.records if "2099" in r.getMessage()]
    assert len(warnings) == 1
    assert metrics.CALENDAR_UNCOVERED.labels("2099")._value.get() > before
