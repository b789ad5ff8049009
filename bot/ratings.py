"""Ratings in the database, written from a conversation's answers.

Written on the webhook's hot path (the first level, then the end of the conversation), so with
a few Core statements — an upsert per table — rather than the ORM's read-modify-write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dialogs.session import Session
from storage.models import Complaint, Rating, RatingDimension, ServiceRecord

ratings = Rating.__table__  # type: ignore[attr-defined]
dimensions = RatingDimension.__table__  # type: ignore[attr-defined]
complaints = Complaint.__table__  # type: ignore[attr-defined]
records = ServiceRecord.__table__  # type: ignore[attr-defined]


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    """INSERT with ON CONFLICT, in the connection's dialect (PostgreSQL or SQLite)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def save_rating(
    conn: sa.Connection,
    session: Session,
    *,
    outcome: str | None,
    channel: str,
    provider: str,
    citizen_hash: str,
    now: datetime,
) -> None:
    """Write what ``session`` has answered so far.

    ``outcome`` is None while the conversation goes on (the rating is ``in_progress``), else
    complete / incomplete / discarded. With no overall level there is no rating: an in-progress
    row (the citizen restarted, then left) is withdrawn. A finished rating is never overwritten.
    A case that already has a rating from another conversation raises IntegrityError (一事一评:
    the unique key on record and evaluation count).
    """
    answers = session.answers
    if "level" not in answers or outcome == "discarded":
        _withdraw(conn, session.id)
        return
    record_id = (
        sa.select(records.c.id).where(records.c.record_no == session.record_no).scalar_subquery()
        if session.record_no
        else None
    )
    changing = {
        "level": answers["level"],
        "comment": answers.get("comment"),
        "status": outcome or "in_progress",
        "submitted_at": now if outcome else None,
        "updated_at": now,
        "expires_at": session.expires_at,
    }
    insert = _insert(conn, ratings).values(
        conversation_id=session.id,
        record_id=record_id,
        invitation_id=session.invitation_id,
        evaluation_count=1,
        channel=channel,
        provider=provider,
        citizen_hash=citizen_hash,
        locale=session.locale,
        unsolicited=session.record_no is None,
        created_at=now,
        **changing,
    )
    rating_id = conn.execute(
        insert.on_conflict_do_update(
            index_elements=[ratings.c.conversation_id],
            set_=changing,
            where=ratings.c.status == "in_progress",
        ).returning(ratings.c.id)
    ).scalar()
    if rating_id is None:
        return  # finished already
    levels = answers.get("dimensions") or {}
    if levels:
        upsert = _insert(conn, dimensions)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[dimensions.c.rating_id, dimensions.c.dimension],
                set_={"level": upsert.excluded.level},
            ),
            [{"rating_id": rating_id, "dimension": d, "level": v} for d, v in levels.items()],
        )
    complaint = answers.get("complaint")
    if complaint is not None:
        values = {
            "problems": list(complaint.get("problems", [])),
            "details": complaint.get("details"),
            "wants_callback": complaint.get("callback"),
        }
        conn.execute(
            _insert(conn, complaints)
            .values(rating_id=rating_id, **values)
            .on_conflict_do_update(index_elements=[complaints.c.rating_id], set_=values)
        )


def _withdraw(conn: sa.Connection, conversation_id: str) -> None:
    unfinished = sa.select(ratings.c.id).where(
        ratings.c.conversation_id == conversation_id, ratings.c.status == "in_progress"
    )
    rating_id = conn.execute(unfinished).scalar()
    if rating_id is not None:
        conn.execute(sa.delete(dimensions).where(dimensions.c.rating_id == rating_id))
        conn.execute(sa.delete(complaints).where(complaints.c.rating_id == rating_id))
        conn.execute(sa.delete(ratings).where(ratings.c.id == rating_id))
