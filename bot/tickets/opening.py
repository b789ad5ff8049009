"""A bad review becomes a ticket, in the rating's own transaction; its re-rating closes it.

Both run inside the conversation's write (``bot.conversation``), so a ticket exists exactly when
its finished bad review does: a duplicate or concurrent finishing turn finds the ticket there
(the unique key on ``rating_id``) and opens none.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from bot import metrics
from bot.results import rollups, upstream
from bot.tickets import flags
from bot.tickets.rules import Rules
from bot.tickets.states import State
from bot.web import audit
from storage.models import UTCDateTime
from storage.tables import ratings, tickets

BAD_REVIEW = 2  # levels 1 and 2 are 差评

OPEN_TICKET = sa.text(
    """
    INSERT INTO tickets (rating_id, record_id, department, tier, state, opened_at, due_at,
                         paused_seconds, updated_at)
    VALUES (:rating_id, :record_id, :department, :tier, 'open', :now, :due_at, 0, :now)
    ON CONFLICT (rating_id) DO NOTHING
    RETURNING id
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime), sa.bindparam("due_at", type_=UTCDateTime))


FINISHED_RATING = (
    sa.text(
        """
        SELECT r.level, r.evaluation_count, r.record_id, rec.department, c.problems,
               EXISTS (SELECT 1 FROM staff_contacts s WHERE s.contact_hash = r.citizen_hash)
                 AS from_staff,
               (SELECT count(*) FROM ratings o
                 WHERE o.citizen_hash = r.citizen_hash AND o.status != 'in_progress'
                   AND o.created_at > :since) AS recent_ratings
        FROM ratings r
        LEFT JOIN service_records rec ON rec.id = r.record_id
        LEFT JOIN complaints c ON c.rating_id = r.id
        WHERE r.id = :rating_id
        """
    )
    .bindparams(sa.bindparam("since", type_=UTCDateTime))
    .columns(
        sa.column("level", sa.Integer),
        sa.column("evaluation_count", sa.Integer),
        sa.column("record_id", sa.Integer),
        sa.column("department", sa.String),
        sa.column("problems", sa.JSON),
        sa.column("from_staff", sa.Boolean),
        sa.column("recent_ratings", sa.Integer),
    )
)


def rating_finished(conn: sa.Connection, rules: Rules, rating_id: int, now: datetime) -> None:
    """What a rating that just finished (complete or incomplete) sets off, in its own
    transaction: the fraud rules that look at one rating, then — a first bad review — its
    ticket, or — a second rating — the close of the ticket the first one opened. One prepared
    query reads all it needs (a statement built per turn cost a tenth of the turn's CPU)."""
    fraud = rules.rules.fraud
    days = fraud.contact_ratings.days if fraud.contact_ratings else 0
    row = conn.execute(
        FINISHED_RATING, {"rating_id": rating_id, "since": now - timedelta(days=days)}
    ).first()
    if row is None:
        return
    if row.evaluation_count == 1:
        rollups.mark(conn, now)
    else:  # which of the case's evaluations stands may change: its first one's day too
        rollups.mark_case(conn, rating_id)
    flags.check_rating(
        conn,
        fraud,
        rating_id,
        from_staff=bool(row.from_staff),
        recent_ratings=int(row.recent_ratings or 0) if days else 0,
        now=now,
    )
    upstream.enqueue(conn, rating_id, "rerating" if row.evaluation_count == 2 else "rating", now)
    if row.evaluation_count == 1 and row.level <= BAD_REVIEW:
        open_ticket(conn, rules, rating_id, row.record_id, row.department, row.problems, now)
    elif row.evaluation_count == 2:
        close_with_rerating(conn, rating_id, row.record_id, row.level, now)


def open_ticket(
    conn: sa.Connection,
    rules: Rules,
    rating_id: int,
    record_id: int | None,
    department: str | None,
    problems: list[str] | None,
    now: datetime,
) -> int | None:
    """The ticket a first bad review opens: for its case's department (no case: no department,
    the supervisors' triage queue), its tier from the complaint's problems, due at the end of
    the tier's last working day. ``None`` when the rating has its ticket already."""
    tier = rules.rules.tier_for(problems)
    due_at = rules.calendar.due_at(now, rules.rules.tiers[tier])
    ticket_id: int | None = conn.execute(
        OPEN_TICKET,
        {
            "rating_id": rating_id,
            "record_id": record_id,
            "department": department,
            "tier": tier,
            "now": now,
            "due_at": due_at,
        },
    ).scalar()
    if ticket_id is None:
        return None  # opened already, by this rating's earlier delivery or a racing turn
    rollups.mark(conn, due_at)
    audit.write(
        conn,
        audit.SYSTEM,
        "opened",
        "ticket",
        ticket_id,
        now,
        after={"state": State.OPEN, "department": department, "tier": tier, "due_at": due_at},
    )
    metrics.TICKETS_OPENED.labels(tier).inc()
    return ticket_id


def close_with_rerating(
    conn: sa.Connection, rating_id: int, record_id: int | None, level: int, now: datetime
) -> int | None:
    """A case's second rating (再次评价) closes the ticket its first one opened, once the
    department has responded: the ticket records its level (a second bad review opens no new
    ticket). The ticket's id, or ``None`` when there is no responded ticket waiting for it."""
    if record_id is None:
        return None
    ticket = conn.execute(
        sa.select(tickets.c.id)
        .join(ratings, ratings.c.id == tickets.c.rating_id)
        .where(
            ratings.c.record_id == record_id,
            tickets.c.state == State.RESPONDED,
            tickets.c.rerating_id.is_(None),
        )
    ).first()
    if ticket is None:
        return None
    closed = conn.execute(
        sa.update(tickets)
        .where(tickets.c.id == ticket.id, tickets.c.state == State.RESPONDED)
        .values(
            state=State.CLOSED,
            closed_at=now,
            closed_reason="rerated",
            rerating_id=rating_id,
            rerating_level=level,
            updated_at=now,
        )
    )
    if closed.rowcount != 1:
        return None
    audit.write(
        conn,
        audit.SYSTEM,
        "rerated",
        "ticket",
        ticket.id,
        now,
        before={"state": State.RESPONDED},
        after={"state": State.CLOSED, "rerating_level": level},
    )
    metrics.TICKETS_CLOSED.labels("rerated").inc()
    metrics.RERATINGS.labels(str(level)).inc()
    return int(ticket.id)
