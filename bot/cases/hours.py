"""When ratebot may contact a citizen: invitations outside the quiet hours, calls inside the
calling hours (both in the deployment's time zone)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.runtime import Runtime


def send_time(rt: Runtime, now: datetime) -> datetime:
    """``now``, or the end of the quiet hours (``RATEBOT_QUIET_HOURS``) when ``now`` falls inside
    them: when an invitation may go out."""
    return _outside(now, rt.settings.zone, rt.settings.quiet_window)


def _outside(now: datetime, zone: ZoneInfo, quiet: tuple[time, time] | None) -> datetime:
    """``now``, or the end of ``quiet`` when ``now`` falls inside it (local time in ``zone``)."""
    if quiet is None:
        return now
    start, end = quiet
    local = now.astimezone(zone)
    t = local.time()
    inside = start <= t < end if start <= end else (t >= start or t < end)
    if not inside:
        return now
    end_day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(now.tzinfo)


def call_time(rt: Runtime, now: datetime) -> datetime:
    """``now``, or the next start of the calling hours when ``now`` is outside them."""
    window = rt.settings.calling_window
    if window is None:
        return now
    start, end = window
    return _outside(now, rt.settings.zone, (end, start))
