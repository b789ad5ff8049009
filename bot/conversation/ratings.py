"""Ratings in the database, written from a conversation's answers.

Written on the webhook's hot path (the first level, then the end of the conversation), so as a
few prepared upserts — the same SQL on PostgreSQL and SQLite — rather than through the ORM,
whose statement building cost more than the database did.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from dialogs.session import Session
from storage.models import (
    UTCDateTime,
)
from storage.tables import complaints, dimensions, ratings, recordings

# A finished rating is never overwritten: the update applies only while it is in progress, and
# then RETURNING gives no row. The record is found by its number in the same statement.
UPSERT_RATING = sa.text(
    """
    INSERT INTO ratings (conversation_id, conversation_key, record_id, invitation_id,
                         evaluation_count, channel, provider, citizen_hash, locale, level, comment,
                         status, unsolicited, created_at, submitted_at, updated_at, next_look_at)
    VALUES (:conversation_id, :conversation_key,
            (SELECT id FROM service_records WHERE record_no = :record_no),
            :invitation_id, :evaluation_count, :channel, :provider, :citizen_hash, :locale,
            :level, :comment, :status, :unsolicited, :now, :submitted_at, :now, :next_look_at)
    ON CONFLICT (conversation_id) DO UPDATE SET
        level = excluded.level, comment = excluded.comment, status = excluded.status,
        submitted_at = excluded.submitted_at, updated_at = excluded.updated_at,
        next_look_at = excluded.next_look_at
    WHERE ratings.status = 'in_progress'
    RETURNING id
    """
).bindparams(
    sa.bindparam("now", type_=UTCDateTime),
    sa.bindparam("submitted_at", type_=UTCDateTime),
    sa.bindparam("next_look_at", type_=UTCDateTime),
    sa.bindparam("unsolicited", type_=sa.Boolean),
)
UPSERT_DIMENSION = sa.text(
    """
    INSERT INTO rating_dimensions (rating_id, dimension, level)
    VALUES (:rating_id, :dimension, :level)
    ON CONFLICT (rating_id, dimension) DO UPDATE SET level = excluded.level
    """
)
UPSERT_COMPLAINT = sa.text(
    """
    INSERT INTO complaints (rating_id, problems, details, wants_callback)
    VALUES (:rating_id, :problems, :details, :wants_callback)
    ON CONFLICT (rating_id) DO UPDATE SET
        problems = excluded.problems, details = excluded.details,
        wants_callback = excluded.wants_callback
    """
).bindparams(
    sa.bindparam("problems", type_=sa.JSON), sa.bindparam("wants_callback", type_=sa.Boolean)
)

UPSERT_RECORDING = sa.text(
    """
    INSERT INTO rating_recordings (rating_id, field, url)
    VALUES (:rating_id, :field, :url)
    ON CONFLICT (rating_id, field) DO UPDATE SET url = excluded.url
    """
)


def save_rating(
    conn: sa.Connection,
    session: Session,
    *,
    outcome: str | None,
    conversation_key: str,
    channel: str,
    provider: str,
    citizen_hash: str,
    now: datetime,
    look_at: datetime,
) -> int | None:
    """Write what ``session`` has answered so far, and say which rating it wrote (``None``: no
    rating, or one finished already, left as it was); an unfinished rating is looked at again by
    the worker at ``look_at``.

    ``outcome`` is None while the conversation goes on (the rating is ``in_progress``), else
    complete / incomplete / discarded. With no overall level there is no rating: an in-progress
    row (the citizen restarted, then left) is withdrawn. A finished rating is never overwritten.
    A case that already has a rating from another conversation raises IntegrityError (一事一评:
    the unique key on record and evaluation count).
    """
    answers = session.answers
    if "level" not in answers or outcome == "discarded":
        _withdraw(conn, session.id)
        return None
    rating_id = conn.execute(
        UPSERT_RATING,
        {
            "conversation_id": session.id,
            "conversation_key": conversation_key,
            "record_no": session.record_no,
            "invitation_id": session.invitation_id,
            "evaluation_count": session.evaluation_count,
            "channel": channel,
            "provider": provider,
            "citizen_hash": citizen_hash,
            "locale": session.locale,
            "level": answers["level"],
            "comment": answers.get("comment"),
            "status": outcome or "in_progress",
            "unsolicited": session.record_no is None,
            "now": now,
            "submitted_at": now if outcome else None,
            "next_look_at": look_at,
        },
    ).scalar()
    if rating_id is None:
        return None  # finished already
    levels = answers.get("dimensions") or {}
    if levels:
        conn.execute(
            UPSERT_DIMENSION,
            [{"rating_id": rating_id, "dimension": d, "level": v} for d, v in levels.items()],
        )
    complaint = answers.get("complaint")
    if complaint is not None:
        conn.execute(
            UPSERT_COMPLAINT,
            {
                "rating_id": rating_id,
                "problems": list(complaint.get("problems", [])),
                "details": complaint.get("details"),
                "wants_callback": complaint.get("callback"),
            },
        )
    spoken = answers.get("recordings") or {}
    if spoken:
        conn.execute(
            UPSERT_RECORDING,
            [{"rating_id": rating_id, "field": f, "url": url} for f, url in spoken.items()],
        )
    return int(rating_id)


def follow_up_due(conn: sa.Connection, record_id: int) -> bool:
    """Whether the case's rating is a bad review whose citizen asked for a callback (回访) that
    has not yet been re-rated: then a follow-up call may ask for the case's second rating."""
    second = sa.select(ratings.c.id).where(
        ratings.c.record_id == record_id, ratings.c.evaluation_count == 2
    )
    wanted = conn.execute(
        sa.select(ratings.c.id)
        .join(complaints, complaints.c.rating_id == ratings.c.id)
        .where(
            ratings.c.record_id == record_id,
            ratings.c.evaluation_count == 1,
            ratings.c.level <= 2,
            ratings.c.status != "in_progress",
            complaints.c.wants_callback.is_(True),
            ~second.exists(),
        )
    ).first()
    return wanted is not None


def save_late_recording(conn: sa.Connection, conversation_id: str, field: str, url: str) -> bool:
    """Keep a spoken answer that arrived after its conversation closed (the call's end was
    reported first); False when the conversation left no rating."""
    rating_id = conn.execute(
        sa.select(ratings.c.id).where(ratings.c.conversation_id == conversation_id)
    ).scalar()
    if rating_id is None:
        return False
    conn.execute(UPSERT_RECORDING, {"rating_id": rating_id, "field": field, "url": url})
    return True


def save_transcription(conn: sa.Connection, recording_url: str, text: str) -> bool:
    """Keep Twilio's transcript of a spoken answer; False when no rating holds that recording."""
    done = conn.execute(
        sa.update(recordings).where(recordings.c.url == recording_url).values(transcription=text)
    )
    return bool(done.rowcount)


def _withdraw(conn: sa.Connection, conversation_id: str) -> None:
    unfinished = sa.select(ratings.c.id).where(
        ratings.c.conversation_id == conversation_id, ratings.c.status == "in_progress"
    )
    rating_id = conn.execute(unfinished).scalar()
    if rating_id is not None:
        conn.execute(sa.delete(dimensions).where(dimensions.c.rating_id == rating_id))
        conn.execute(sa.delete(complaints).where(complaints.c.rating_id == rating_id))
        conn.execute(sa.delete(recordings).where(recordings.c.rating_id == rating_id))
        conn.execute(sa.delete(ratings).where(ratings.c.id == rating_id))
