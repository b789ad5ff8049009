"""The lists staff work from, for the API and the pages alike: tickets by filter (a department
sees its own departments' only), the counts by state, and the appeals and fraud flags waiting for
a reviewer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from bot.tickets.states import AWAITING_ANSWER, State
from bot.web.audit import Actor
from storage.tables import appeals, flags, tickets

# The desk's order: the tickets waiting for the department first, then those waiting for
# someone else (a reviewer, the citizen), the closed ones last; each by deadline.
WORK_ORDER = {
    State.OPEN: 0,
    State.ACKNOWLEDGED: 0,
    State.APPEALED: 1,
    State.RESPONDED: 1,
    State.CLOSED: 2,
}


@dataclass(frozen=True, slots=True)
class TicketFilter:
    """Which tickets. ``since``/``until`` bound when the ticket opened; ``due_by``: tickets still
    waiting for their answer whose deadline passes between now and then (not yet overdue);
    ``unassigned``: the supervisors' triage queue (no department)."""

    state: str | None = None
    department: str | None = None
    tier: str | None = None
    overdue: bool | None = None
    due_by: datetime | None = None
    since: datetime | None = None
    until: datetime | None = None
    unassigned: bool = False


@dataclass(frozen=True, slots=True)
class TicketPage:
    total: int
    rows: list[Any]


def end_of_today(now: datetime, zone: ZoneInfo) -> datetime:
    """The next local midnight: a deadline at or before it passes today (deadlines are the end of
    a working day, that is the next day's 00:00)."""
    today = now.astimezone(zone).date()
    return datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone)


def due_today(state: str, due_at: datetime | None, now: datetime, zone: ZoneInfo) -> bool:
    """A ticket in ``state`` due at ``due_at`` is still waiting for its answer, not yet overdue,
    and its deadline passes today."""
    return (
        state in AWAITING_ANSWER and due_at is not None and now <= due_at <= end_of_today(now, zone)
    )


def overdue_now(now: datetime) -> ColumnElement[bool]:
    """Still waiting for its department's answer past its deadline (paused while appealed): the
    rule of ``bot.tickets.views.overdue``, in SQL."""
    return sa.and_(tickets.c.state.in_(sorted(AWAITING_ANSWER)), tickets.c.due_at < now)


def _conditions(
    actor: Actor, wanted: TicketFilter, now: datetime, *, with_state: bool = True
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    seen = actor.departments_seen
    if seen is not None:
        conditions.append(tickets.c.department.in_(sorted(seen)))
    if with_state and wanted.state is not None:
        conditions.append(tickets.c.state == wanted.state)
    if wanted.tier is not None:
        conditions.append(tickets.c.tier == wanted.tier)
    if wanted.department is not None:
        conditions.append(tickets.c.department == wanted.department)
    if wanted.unassigned:
        conditions.append(tickets.c.department.is_(None))
    if wanted.since is not None:
        conditions.append(tickets.c.opened_at >= wanted.since)
    if wanted.until is not None:
        conditions.append(tickets.c.opened_at < wanted.until)
    if wanted.overdue is not None:
        conditions.append(overdue_now(now) if wanted.overdue else ~overdue_now(now))
    if wanted.due_by is not None:
        conditions.append(
            sa.and_(
                tickets.c.state.in_(sorted(AWAITING_ANSWER)),
                tickets.c.due_at >= now,
                tickets.c.due_at <= wanted.due_by,
            )
        )
    return conditions


def ticket_page(
    conn: sa.Connection,
    actor: Actor,
    wanted: TicketFilter,
    now: datetime,
    *,
    page: int,
    page_size: int,
    work_first: bool = False,
) -> TicketPage:
    """One page of the tickets ``actor`` sees that match ``wanted``, by deadline (``work_first``:
    the ones waiting for their department first, as the desk shows them) and their total."""
    query = sa.select(tickets).where(*_conditions(actor, wanted, now))
    total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    order: list[Any] = [tickets.c.due_at, tickets.c.id]
    if work_first:
        order.insert(0, sa.case(WORK_ORDER, value=tickets.c.state, else_=len(WORK_ORDER)))
    rows = conn.execute(
        query.order_by(*order).offset((page - 1) * page_size).limit(page_size)
    ).all()
    return TicketPage(total=int(total), rows=list(rows))


def counts_by_state(
    conn: sa.Connection, actor: Actor, wanted: TicketFilter, now: datetime
) -> dict[str, int]:
    """How many tickets ``actor`` sees in each state, under every filter of ``wanted`` but the
    state (so the counts say where a state filter would lead)."""
    query = (
        sa.select(tickets.c.state, sa.func.count())
        .where(*_conditions(actor, wanted, now, with_state=False))
        .group_by(tickets.c.state)
    )
    counted = {state: 0 for state in State}
    counted.update({state: int(n) for state, n in conn.execute(query)})
    return {str(state): n for state, n in counted.items()}


def appeal_rows(conn: sa.Connection, state: str | None, limit: int = 500) -> list[Any]:
    """Appeals in ``state`` (``None``: all), oldest first."""
    query = sa.select(appeals).order_by(appeals.c.id)
    if state is not None:
        query = query.where(appeals.c.state == state)
    return list(conn.execute(query.limit(limit)))


def flag_rows(conn: sa.Connection, state: str | None, limit: int = 500) -> list[dict[str, Any]]:
    """Fraud flags in ``state`` (``None``: all) with the rule that fired, oldest first."""
    query = sa.select(flags).order_by(flags.c.id)
    if state is not None:
        query = query.where(flags.c.state == state)
    return [dict(row) for row in conn.execute(query.limit(limit)).mappings()]
