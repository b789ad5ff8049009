"""What people do to a ticket. Each act checks who may do it (``guard``) and from which state
(``states``), changes the ticket with a conditional UPDATE (so of two racing acts one wins and
the other is refused naming the state it found), and writes its audit row — all in the one
transaction it is given."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bot import metrics
from bot.results import rollups
from bot.tickets import guard
from bot.tickets.rules import Rules
from bot.tickets.states import Act, State, WrongState, check
from bot.web import audit
from bot.web.audit import Actor
from storage.privacy import Privacy
from storage.tables import appeals, records, tickets

OUTCOMES = ("rectified", "explained")
GROUNDS = ("malicious", "untrue", "not_ours")
MAX_TEXT = 4000  # the longest note, response, statement or decision a person writes


class TicketNotFound(LookupError):
    """No ticket (or appeal) with that id (404)."""


class AppealedBefore(Exception):
    """A ticket is appealed once (409)."""


def load(conn: sa.Connection, ticket_id: int, *, lock: bool = False) -> Any:
    """The ticket's row, or :class:`TicketNotFound`. ``lock``: held until the transaction ends
    (PostgreSQL; SQLite's writer lock serializes anyway)."""
    query = sa.select(tickets).where(tickets.c.id == ticket_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise TicketNotFound(f"no ticket {ticket_id}")
    return row


def _move(
    conn: sa.Connection,
    actor: Actor,
    act: Act,
    ticket_id: int,
    now: datetime,
    values: dict[str, Any],
    *,
    action: str | None = None,
    reason: str | None = None,
) -> Any:
    """Check and carry out ``act``: the ticket's row as it was before."""
    row = load(conn, ticket_id, lock=True)
    guard.check(actor, act, row.department)
    state = State(row.state)
    after_state = check(act, state)
    changes = {"state": after_state, **values, "updated_at": now}
    moved = conn.execute(
        sa.update(tickets)
        .where(tickets.c.id == ticket_id, tickets.c.state == state)
        .values(**changes)
    )
    if moved.rowcount != 1:  # another act got there first
        raise WrongState(act, State(load(conn, ticket_id).state))
    rollups.mark(conn, row.due_at, changes.get("due_at"))
    before = {key: getattr(row, key) for key in changes if key != "updated_at"}
    audit.write(
        conn,
        actor,
        action or act.value,
        "ticket",
        ticket_id,
        now,
        before=before,
        after={key: value for key, value in changes.items() if key != "updated_at"},
        reason=reason,
    )
    return row


def acknowledge(
    conn: sa.Connection, actor: Actor, ticket_id: int, note: str, now: datetime
) -> None:
    """The department verified the review with the citizen (核实)."""
    _move(
        conn,
        actor,
        Act.ACKNOWLEDGE,
        ticket_id,
        now,
        {"acknowledged_at": now, "acknowledge_note": note},
        reason=note,
    )


def respond(
    conn: sa.Connection,
    actor: Actor,
    rules: Rules,
    ticket_id: int,
    outcome: str,
    text: str,
    now: datetime,
) -> None:
    """The department fixed it (``rectified``, with the measures) or explained why the request
    has no basis (``explained``). The citizen is told and invited to rate again by the worker
    (``bot.cases.feedback``); the re-rating window opens now."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    _move(
        conn,
        actor,
        Act.RESPOND,
        ticket_id,
        now,
        {
            "responded_at": now,
            "outcome": outcome,
            "response": text,
            "rerate_until": now + timedelta(days=rules.rules.rerating_window_days),
        },
        reason=text,
    )


def appeal(
    conn: sa.Connection, actor: Actor, ticket_id: int, ground: str, statement: str, now: datetime
) -> int:
    """The department appeals the review (申诉): the deadline pauses until a reviewer decides.
    One appeal per ticket. The appeal's id."""
    if ground not in GROUNDS:
        raise ValueError(f"ground must be one of {', '.join(GROUNDS)}")
    guard.check(actor, Act.APPEAL, load(conn, ticket_id).department)
    if conn.execute(sa.select(appeals.c.id).where(appeals.c.ticket_id == ticket_id)).first():
        raise AppealedBefore("this ticket was appealed before: one appeal per ticket")
    row = _move(
        conn,
        actor,
        Act.APPEAL,
        ticket_id,
        now,
        {"paused_at": now},
        reason=statement,
    )
    conn.execute(
        sa.update(tickets).where(tickets.c.id == ticket_id).values(state_before_appeal=row.state)
    )
    appeal_id: int = conn.execute(
        sa.insert(appeals)
        .values(
            ticket_id=ticket_id,
            ground=ground,
            statement=statement,
            state="pending",
            filed_by=actor.name,
            filed_at=now,
        )
        .returning(appeals.c.id)
    ).scalar_one()
    audit.write(
        conn,
        actor,
        "filed",
        "appeal",
        appeal_id,
        now,
        after={"ticket_id": ticket_id, "ground": ground, "state": "pending"},
        reason=statement,
    )
    return appeal_id


def assign(
    conn: sa.Connection, actor: Actor, ticket_id: int, department: str | None, now: datetime
) -> None:
    """A supervisor gives the ticket to a department (triage) or another one (reassign)."""
    _move(conn, actor, Act.ASSIGN, ticket_id, now, {"department": department})


def change_tier(
    conn: sa.Connection, actor: Actor, rules: Rules, ticket_id: int, tier: str, now: datetime
) -> None:
    """A supervisor changes the tier: the deadline is computed again from the opening (plus any
    time spent under appeal)."""
    if tier not in rules.rules.tiers:
        raise ValueError(f"tier must be one of {', '.join(rules.rules.tiers)}")
    row = load(conn, ticket_id)
    due_at = rules.calendar.due_at(row.opened_at, rules.rules.tiers[tier]) + timedelta(
        seconds=row.paused_seconds
    )
    _move(conn, actor, Act.CHANGE_TIER, ticket_id, now, {"tier": tier, "due_at": due_at})


class NoContact(LookupError):
    """The case has no phone number to call back (404)."""


def reveal_contact(
    conn: sa.Connection, actor: Actor, privacy: Privacy, ticket_id: int, now: datetime
) -> str:
    """The citizen's phone number in clear, for the callback (回访): to the ticket's department
    or a supervisor, while the ticket is not closed. Every reveal is an audit row; the number is
    written nowhere else."""
    row = load(conn, ticket_id)
    guard.check(actor, Act.REVEAL_CONTACT, row.department)
    check(Act.REVEAL_CONTACT, State(row.state))
    phone_enc = None
    if row.record_id is not None:
        phone_enc = conn.execute(
            sa.select(records.c.phone_enc).where(records.c.id == row.record_id)
        ).scalar()
    if not phone_enc:
        raise NoContact("the case has no phone number")
    audit.write(conn, actor, "revealed", "contact", ticket_id, now, reason="callback")
    metrics.CONTACT_REVEALS.inc()
    return privacy.decrypt(phone_enc)


def escalate_overdue(conn: sa.Connection, now: datetime, limit: int) -> list[int]:
    """Escalate, once, every ticket still waiting for its department's answer past its deadline
    (an appealed ticket's deadline is paused). Claimed by the conditional UPDATE, so of several
    workers one escalates each. The tickets escalated."""
    escalated = [
        int(ticket_id)
        for ticket_id in conn.execute(
            sa.update(tickets)
            .where(
                tickets.c.id.in_(
                    sa.select(tickets.c.id)
                    .where(
                        tickets.c.state.in_([State.OPEN, State.ACKNOWLEDGED]),
                        tickets.c.due_at < now,
                        tickets.c.escalated_at.is_(None),
                    )
                    .order_by(tickets.c.due_at)
                    .limit(limit)
                    .scalar_subquery()
                ),
                tickets.c.escalated_at.is_(None),
            )
            .values(escalated_at=now)
            .returning(tickets.c.id)
        ).scalars()
    ]
    for ticket_id in escalated:
        audit.write(
            conn, audit.SYSTEM, "escalated", "ticket", ticket_id, now, after={"escalated_at": now}
        )
        metrics.ESCALATIONS.inc()
    return escalated


def close_unrated(conn: sa.Connection, now: datetime, limit: int) -> list[int]:
    """Close the responded tickets whose re-rating window ran out without a re-rating."""
    closed = [
        int(ticket_id)
        for ticket_id in conn.execute(
            sa.update(tickets)
            .where(
                tickets.c.id.in_(
                    sa.select(tickets.c.id)
                    .where(tickets.c.state == State.RESPONDED, tickets.c.rerate_until <= now)
                    .limit(limit)
                    .scalar_subquery()
                ),
                tickets.c.state == State.RESPONDED,
            )
            .values(state=State.CLOSED, closed_at=now, closed_reason="window", updated_at=now)
            .returning(tickets.c.id)
        ).scalars()
    ]
    for ticket_id in closed:
        audit.write(
            conn,
            audit.SYSTEM,
            "window_closed",
            "ticket",
            ticket_id,
            now,
            before={"state": State.RESPONDED},
            after={"state": State.CLOSED},
        )
        metrics.TICKETS_CLOSED.labels("window").inc()
    return closed
