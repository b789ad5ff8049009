"""Tickets as the API (and the pages) show them: no contact in clear."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session as DbSession
from sqlmodel import select

from bot.results.views import rating_views, record_public
from bot.tickets import guard
from bot.tickets.acts import load
from bot.tickets.states import AWAITING_ANSWER, State
from bot.web import audit
from bot.web.audit import Actor
from storage.models import Rating, ServiceRecord
from storage.tables import appeals

SUMMARY = (
    "id",
    "state",
    "department",
    "tier",
    "opened_at",
    "due_at",
    "escalated_at",
    "acknowledged_at",
    "acknowledge_note",
    "responded_at",
    "outcome",
    "response",
    "feedback_at",
    "rerate_until",
    "rerating_level",
    "closed_at",
    "closed_reason",
)


def overdue(row: Any, now: datetime) -> bool:
    """Still waiting for its department's answer past its deadline (paused while appealed)."""
    return row.state in AWAITING_ANSWER and row.due_at is not None and row.due_at < now


def ticket_summary(row: Any, now: datetime) -> dict[str, Any]:
    view = {key: getattr(row, key) for key in SUMMARY}
    view["overdue"] = overdue(row, now)
    view["rating_id"] = row.rating_id
    return view


def ticket_view(db: DbSession, row: Any, now: datetime) -> dict[str, Any]:
    """One ticket with its rating, its case and its timeline (the audit entries)."""
    conn = db.connection()
    view = ticket_summary(row, now)
    rating = db.get(Rating, row.rating_id)
    record = db.get(ServiceRecord, row.record_id) if row.record_id is not None else None
    records = {record.id: record} if record is not None and record.id is not None else {}
    view["rating"] = rating_views(db, [rating], records)[0] if rating is not None else None
    view["case"] = record_public(record) if record is not None else None
    appeal = conn.execute(sa.select(appeals).where(appeals.c.ticket_id == row.id)).first()
    view["appeal"] = None if appeal is None else appeal_view(appeal)
    view["paused"] = row.state == State.APPEALED
    view["timeline"] = audit.entries(conn, entity="ticket", entity_id=row.id)
    if rating is not None and record is not None:
        later = db.exec(
            select(Rating).where(Rating.record_id == record.id, Rating.evaluation_count == 2)
        ).first()
        view["rerating"] = rating_views(db, [later], records)[0] if later is not None else None
    return view


def shown_ticket(db: DbSession, actor: Actor, ticket_id: int, now: datetime) -> dict[str, Any]:
    """The ticket as :func:`ticket_view` shows it, if ``actor`` may read it (else
    :class:`guard.Refused`; no such ticket: :class:`acts.TicketNotFound`)."""
    row = load(db.connection(), ticket_id)
    guard.check(actor, guard.READ, row.department)
    return ticket_view(db, row, now)


def appeal_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "ticket_id": row.ticket_id,
        "ground": row.ground,
        "statement": row.statement,
        "state": row.state,
        "filed_by": row.filed_by,
        "filed_at": row.filed_at,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at,
        "note": row.note,
        "reassign_to": row.reassign_to,
    }
