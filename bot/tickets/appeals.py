"""A reviewer decides a department's appeal (申诉复核).

- Rejected: the ticket goes back to the state it was appealed from; its deadline is moved later
  by the time the appeal was pending.
- Upheld, ``malicious`` or ``untrue``: the rating is excluded from the statistics (marked on the
  rating with reason, decider and time — never deleted) and the ticket closes
  (``appeal_upheld``); for ``malicious`` the citizen gets one warning (劝诫), sent by the worker.
- Upheld, ``not_ours``: the ticket goes to the department the reviewer names (else back to
  triage), opens again, and its deadline starts anew.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bot import metrics
from bot.results import rollups, upstream
from bot.tickets.acts import TicketNotFound, load
from bot.tickets.rules import Rules
from bot.tickets.states import State
from bot.web import audit
from bot.web.audit import Actor
from storage.tables import appeals, ratings, tickets

DECIDERS = frozenset({"reviewer", "admin"})


class NotPending(Exception):
    """The appeal was decided already (409)."""


class NotADecider(PermissionError):
    """Only a reviewer (or admin) decides appeals and flags (403)."""


def require_decider(actor: Actor) -> None:
    if actor.role not in DECIDERS:
        raise NotADecider(f"a {actor.role} may not decide appeals or flags")


def decide(
    conn: sa.Connection,
    actor: Actor,
    rules: Rules,
    appeal_id: int,
    *,
    upheld: bool,
    note: str,
    now: datetime,
    reassign_to: str | None = None,
) -> None:
    require_decider(actor)
    appeal = conn.execute(
        sa.select(appeals).where(appeals.c.id == appeal_id).with_for_update()
    ).first()
    if appeal is None:
        raise TicketNotFound(f"no appeal {appeal_id}")
    decided = conn.execute(
        sa.update(appeals)
        .where(appeals.c.id == appeal_id, appeals.c.state == "pending")
        .values(
            state="upheld" if upheld else "rejected",
            decided_by=actor.name,
            decided_at=now,
            note=note,
            reassign_to=reassign_to if upheld and appeal.ground == "not_ours" else None,
        )
    )
    if decided.rowcount != 1:
        raise NotPending(f"the appeal was {appeal.state} already")
    ticket = load(conn, appeal.ticket_id, lock=True)
    paused = (now - ticket.paused_at).total_seconds() if ticket.paused_at else 0.0
    changes: dict[str, Any]
    if not upheld:
        changes = {
            "state": ticket.state_before_appeal or State.OPEN,
            "due_at": ticket.due_at + timedelta(seconds=paused),
            "paused_seconds": ticket.paused_seconds + int(paused),
        }
    elif appeal.ground == "not_ours":
        changes = {
            "state": State.OPEN,
            "department": reassign_to,
            "opened_at": now,
            "due_at": rules.calendar.due_at(now, rules.rules.tiers[ticket.tier]),
            "paused_seconds": 0,
            "acknowledged_at": None,
            "acknowledge_note": None,
        }
    else:
        changes = {
            "state": State.CLOSED,
            "outcome": "appeal_upheld",
            "closed_at": now,
            "closed_reason": "appeal",
        }
        _exclude(conn, actor, ticket.rating_id, f"appeal upheld: {appeal.ground}", now)
    changes |= {"paused_at": None, "state_before_appeal": None, "updated_at": now}
    conn.execute(sa.update(tickets).where(tickets.c.id == ticket.id).values(**changes))
    rollups.mark(conn, ticket.due_at, changes.get("due_at"))
    verdict = "upheld" if upheld else "rejected"
    audit.write(
        conn,
        actor,
        verdict,
        "appeal",
        appeal_id,
        now,
        before={"state": "pending"},
        after={"state": verdict, "reassign_to": changes.get("department")},
        reason=note,
    )
    audit.write(
        conn,
        actor,
        f"appeal_{verdict}",
        "ticket",
        ticket.id,
        now,
        before={key: getattr(ticket, key) for key in changes if key != "updated_at"},
        after={key: value for key, value in changes.items() if key != "updated_at"},
        reason=note,
    )
    metrics.APPEALS.labels(verdict).inc()
    if changes["state"] == State.CLOSED:
        metrics.TICKETS_CLOSED.labels("appeal_upheld").inc()


def _exclude(conn: sa.Connection, actor: Actor, rating_id: int, reason: str, now: datetime) -> None:
    """Take the rating out of the statistics, keeping it (and saying who, why and when)."""
    conn.execute(
        sa.update(ratings)
        .where(ratings.c.id == rating_id)
        .values(excluded_at=now, excluded_reason=reason, excluded_by=actor.name)
    )
    rollups.mark_case(conn, rating_id)
    upstream.enqueue(conn, rating_id, "counts", now)
    audit.write(
        conn,
        actor,
        "excluded",
        "rating",
        rating_id,
        now,
        before={"excluded": False},
        after={"excluded": True},
        reason=reason,
    )
