"""Callbacks (回访): a bad review whose citizen asked for a call gets one,
``RATEBOT_CALLBACK_AFTER_HOURS`` after it was given; the call runs the survey again, recorded
as the case's second rating."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import Session as DbSession
from sqlmodel import select

from bot.cases.calls import schedule_call
from bot.runtime import Runtime
from storage.models import ServiceRecord
from storage.tables import complaints, opt_outs, ratings, records


def schedule_callbacks(rt: Runtime, now: datetime, limit: int) -> int:
    """Schedule the callback (回访) of every bad review that asked for one, made at least
    ``RATEBOT_CALLBACK_AFTER_HOURS`` ago, whose citizen has a phone and did not opt out. Each is
    claimed by setting its complaint's ``callback_at`` only where it is still unset, so of
    several workers one schedules it. The number scheduled."""
    hours = rt.settings.callback_after_hours
    if not hours:
        return 0
    opted_out = sa.exists().where(opt_outs.c.contact_hash == records.c.phone_hash)
    scheduled = 0
    with DbSession(rt.db) as db, db.begin():
        due_ = db.exec(
            select(complaints.c.rating_id, ratings.c.record_id)
            .join(ratings, ratings.c.id == complaints.c.rating_id)
            .join(records, records.c.id == ratings.c.record_id)
            .where(
                complaints.c.wants_callback.is_(True),
                complaints.c.callback_at.is_(None),
                ratings.c.evaluation_count == 1,
                ratings.c.level <= 2,
                ratings.c.status != "in_progress",
                ratings.c.submitted_at <= now - timedelta(hours=hours),
                records.c.phone_hash.is_not(None),
                ~opted_out,
            )
            .order_by(ratings.c.submitted_at)
            .limit(limit)
        ).all()
        for rating_id, record_id in due_:
            claimed = db.exec(
                update(complaints)
                .where(complaints.c.rating_id == rating_id, complaints.c.callback_at.is_(None))
                .values(callback_at=now)
            )
            if claimed.rowcount == 1:
                schedule_call(db, rt, db.get_one(ServiceRecord, record_id), "callback", now)
                scheduled += 1
    return scheduled
