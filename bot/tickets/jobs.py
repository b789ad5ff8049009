"""The closed loop's timers, run by the worker: escalate overdue tickets once, close responded
tickets whose re-rating window ran out, run the fraud rule that looks across citizens, and
count the overdue tickets for ``/metrics``. Each is claimed by a conditional UPDATE, so any
number of workers may run them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from bot import metrics
from bot.runtime import Runtime
from bot.tickets.acts import close_unrated, escalate_overdue
from bot.tickets.flags import check_bursts
from bot.tickets.rules import rules_for
from bot.tickets.states import AWAITING_ANSWER
from storage.tables import tickets

BATCH = 100


def run_due(rt: Runtime, now: datetime) -> int:
    """Run what is due; the number of tickets and ratings it changed."""
    rules = rules_for(rt.settings.tickets_file, rt.settings.timezone)
    with rt.db.begin() as conn:
        escalated = escalate_overdue(conn, now, BATCH)
    with rt.db.begin() as conn:
        closed = close_unrated(conn, now, BATCH)
    with rt.db.begin() as conn:
        flagged = check_bursts(conn, rules.rules.fraud, now)
    with rt.db.connect() as conn:
        overdue = conn.execute(
            sa.select(sa.func.count())
            .select_from(tickets)
            .where(tickets.c.state.in_(sorted(AWAITING_ANSWER)), tickets.c.due_at < now)
        ).scalar_one()
    metrics.TICKETS_OVERDUE.set(overdue)
    return len(escalated) + len(closed) + flagged
