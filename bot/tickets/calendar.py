"""Working days (工作日) for ticket deadlines: weekends off, China's public holidays off, adjusted
working weekends (调休) on — from the chinese-calendar package, which follows the State Council's
yearly notice — then the deployment's own days off and working days on top.

A year the package does not cover yet (the notice comes out each winter) counts weekends only:
one warning per year and a metric, never a guessed holiday.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from bot import metrics

log = logging.getLogger("ratebot.tickets")


class WorkingCalendar:
    """Which local dates are working days in one deployment."""

    def __init__(
        self, zone: ZoneInfo, *, days_off: Iterable[date] = (), working_days: Iterable[date] = ()
    ) -> None:
        self.zone = zone
        self.days_off = frozenset(days_off)
        self.working_days = frozenset(working_days)
        self._warned: set[int] = set()

    def is_working_day(self, day: date) -> bool:
        if day in self.days_off:
            return False
        if day in self.working_days:
            return True
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:  # a year the package has no notice for
            metrics.CALENDAR_UNCOVERED.labels(str(day.year)).inc()
            if day.year not in self._warned:
                self._warned.add(day.year)
                log.warning(
                    "China's holidays for %d are not known to chinese-calendar yet: counting "
                    "weekends only (upgrade the package once the State Council's notice is out, "
                    "or list the days in RATEBOT_TICKETS_FILE)",
                    day.year,
                )
            return day.weekday() < 5

    def due_at(self, opened_at: datetime, working_days: int) -> datetime:
        """The end of the ``working_days``-th working day after the local day ``opened_at`` falls
        on (that day itself does not count): the next local midnight after it, as an aware time."""
        day = opened_at.astimezone(self.zone).date()
        counted = 0
        while counted < working_days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone)
        return end.astimezone(opened_at.tzinfo)
