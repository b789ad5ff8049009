"""Publishing a rectified case on the public results page (结果公开, ``/results``).

A supervisor chooses a ticket whose department fixed what the citizen complained of (outcome
``rectified``) and writes the text the public reads; the department's response is offered as
the starting text (:func:`starting_text`). A ticket is published once; withdrawing it keeps the
row (``withdrawn_at``), so what was public when stays a fact. Each act is an audit row on the
ticket, in the transaction it is given.

The public text must not identify anybody (:func:`check_public_text`). The check is simple and
deliberately strict, on the text folded to half-width (NFKC, so ``１３８`` is ``138``):

- no run of 7 or more digits, counting digits parted by single spaces, dashes, dots or slashes
  (mobile and landline numbers, 15- and 18-digit id-card numbers with a final X, case numbers
  like ``370200-2026-0001``); dates written as ``2026-11-27`` or ``2026/11/27`` are allowed;
- not the case's own case number (办件编号), whatever its shape;
- not the name of the clerk who handled the case.

Numbers written in Chinese numerals and names other than the clerk's are beyond it: the
supervisor who writes the text answers for it.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot.tickets import guard
from bot.tickets.acts import load
from bot.web import audit
from bot.web.audit import Actor
from locales import N_
from storage.tables import published_cases, records

PUBLISHERS = frozenset({"supervisor", "admin"})
PUBLISHABLE_OUTCOME = "rectified"

# A date is not a number that identifies anybody: taken out before the digits are looked at.
_DATE = re.compile(r"(?<!\d)\d{4}([-/.])\d{1,2}\1\d{1,2}(?!\d)")
_LONG_NUMBER = re.compile(r"\d(?:[ \-./]?\d){6,}")


class NotPublishable(Exception):
    """The ticket is not a rectified case (409)."""


class PublishedBefore(Exception):
    """A ticket is published once (409), even after it was withdrawn."""


class NotPublished(LookupError):
    """The ticket was never published (404)."""


class WithdrawnBefore(Exception):
    """The publication was withdrawn already (409)."""


class NotPublic(ValueError):
    """The text looks as if it identifies somebody (422). ``reason`` is a catalog id for the
    pages; the message says it in English for the API."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


REASON_NUMBER = N_("case.publish.refused.number")
REASON_CASE_NUMBER = N_("case.publish.refused.case_number")
REASON_CLERK = N_("case.publish.refused.clerk")
REASON_EMPTY = N_("case.publish.refused.empty")


def check_public_text(text: str, *, record_no: str | None, clerk: str | None) -> str:
    """``text`` stripped, when it may be shown to the public; else :class:`NotPublic`."""
    text = text.strip()
    if not text:
        raise NotPublic(REASON_EMPTY, "the public text is empty")
    folded = unicodedata.normalize("NFKC", text)
    if record_no and unicodedata.normalize("NFKC", record_no).casefold() in folded.casefold():
        raise NotPublic(REASON_CASE_NUMBER, "the public text holds the case number")
    if clerk and unicodedata.normalize("NFKC", clerk) in folded:
        raise NotPublic(REASON_CLERK, "the public text names the clerk who handled the case")
    if _LONG_NUMBER.search(_DATE.sub(" ", folded)):
        raise NotPublic(
            REASON_NUMBER,
            "the public text holds a long number (a phone, id-card or case number?)",
        )
    return text


def _case_of(conn: sa.Connection, record_id: int | None) -> Any:
    if record_id is None:
        return None
    return conn.execute(
        sa.select(records.c.record_no, records.c.clerk).where(records.c.id == record_id)
    ).first()


def _publication(conn: sa.Connection, ticket_id: int) -> Any:
    return conn.execute(
        sa.select(published_cases).where(published_cases.c.ticket_id == ticket_id)
    ).first()


def _may_publish(actor: Actor) -> None:
    if actor.role not in PUBLISHERS:
        raise guard.Refused(f"a {actor.role} may not publish a case: a supervisor does")


def starting_text(conn: sa.Connection, ticket_id: int) -> str:
    """What a supervisor starts from: the department's response (checked when published)."""
    return str(load(conn, ticket_id).response or "")


def publication(conn: sa.Connection, ticket_id: int) -> dict[str, Any] | None:
    """The ticket's publication as staff see it (``None``: never published)."""
    row = _publication(conn, ticket_id)
    if row is None:
        return None
    return {
        "text": row.text,
        "published_at": row.published_at,
        "published_by": row.published_by,
        "withdrawn_at": row.withdrawn_at,
        "withdrawn_by": row.withdrawn_by,
    }


def publish_case(
    conn: sa.Connection, actor: Actor, ticket_id: int, text: str, now: datetime
) -> int:
    """Publish the rectified case of ``ticket_id`` with ``text`` (a supervisor's): the
    publication's id. Refusals: not a supervisor 403, no ticket 404, not rectified or published
    before 409, a text that looks as if it identifies somebody 422."""
    _may_publish(actor)
    ticket = load(conn, ticket_id, lock=True)  # two publishers of one ticket: one waits
    if ticket.outcome != PUBLISHABLE_OUTCOME:
        raise NotPublishable(
            f"only a rectified case is published; this ticket is {ticket.state}"
            + (f" ({ticket.outcome})" if ticket.outcome else "")
        )
    if _publication(conn, ticket_id) is not None:
        raise PublishedBefore("this case was published before: a case is published once")
    case = _case_of(conn, ticket.record_id)
    public = check_public_text(
        text,
        record_no=case.record_no if case is not None else None,
        clerk=case.clerk if case is not None else None,
    )
    published_id: int = conn.execute(
        sa.insert(published_cases)
        .values(ticket_id=ticket_id, text=public, published_at=now, published_by=actor.name)
        .returning(published_cases.c.id)
    ).scalar_one()
    audit.write(
        conn,
        actor,
        "published",
        "ticket",
        ticket_id,
        now,
        after={"published_case": published_id, "text": public},
    )
    return published_id


def withdraw_case(conn: sa.Connection, actor: Actor, ticket_id: int, now: datetime) -> None:
    """Take the case of ``ticket_id`` off the public page. The row stays, with when and by
    whom it was withdrawn."""
    _may_publish(actor)
    load(conn, ticket_id)
    row = _publication(conn, ticket_id)
    if row is None:
        raise NotPublished(f"ticket {ticket_id} was never published")
    withdrawn = conn.execute(
        sa.update(published_cases)
        .where(published_cases.c.id == row.id, published_cases.c.withdrawn_at.is_(None))
        .values(withdrawn_at=now, withdrawn_by=actor.name)
    )
    if withdrawn.rowcount != 1:
        raise WithdrawnBefore("this case was withdrawn already")
    audit.write(
        conn,
        actor,
        "withdrawn",
        "ticket",
        ticket_id,
        now,
        before={"published_case": row.id, "withdrawn_at": None},
        after={"withdrawn_at": now},
    )
