"""A conversation the state store lost, found again in the records.

Redis restarted without its data (or an operator flushed it): a citizen's next message finds no
session. Answering it as a new conversation would be wrong — "4", meant for the attitude
question, would open an unsolicited rating of 4, a second rating. So a turn that finds no
session asks the records first (:func:`lost_session`):

* a rating of a case by this conversation, finished within the survey's time → the closed
  conversation ("already rated"), as the lost session would have said;
* a rating still in progress (its overall level is written with the first answer) → that
  conversation, with the answers the records keep; the engine then asks the first question they
  leave open, after an apology (``engine.recover``), and never takes the message for an answer
  to a question the records cannot place;
* else an invitation sent within the survey's time whose case has no rating → the invitation's
  conversation at its first question (no answer of it was kept, so the message answers that);
* else nothing: a new conversation, as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import sqlalchemy as sa

from bot.runtime import Runtime
from dialogs.session import Session
from storage.tables import complaints, dimensions, invitations, ratings, recordings, records


def lost_session(
    db: sa.Connection, rt: Runtime, key: str, channel: str, contact_hash: str, now: datetime
) -> Session | None:
    """The conversation ``key`` had, as its records show it, or ``None`` (see the module)."""
    survey = rt.survey
    since = now - timedelta(hours=survey.expires_after_hours)
    rating = db.execute(
        sa.select(ratings, records.c.record_no)
        .outerjoin(records, records.c.id == ratings.c.record_id)
        .where(
            ratings.c.citizen_hash == contact_hash,
            ratings.c.conversation_key == key,
            # an open one until the worker closes it; a finished one of a case while its
            # session would still say "already rated" (an unsolicited one is no case's:
            # after a conversation forgotten on purpose — unsubscribe, STOP — the next
            # message starts afresh, as before)
            sa.or_(
                ratings.c.status == "in_progress",
                sa.and_(ratings.c.updated_at > since, ratings.c.record_id.is_not(None)),
            ),
        )
        .order_by(ratings.c.id.desc())
        .limit(1)
    ).first()
    if rating is not None:
        return _rated(db, rt, rating, now)
    invitation = db.execute(
        sa.select(invitations.c.id, invitations.c.sent_at, records.c.record_no, records.c.locale)
        .join(records, records.c.id == invitations.c.record_id)
        .where(
            invitations.c.contact_hash == contact_hash,
            invitations.c.channel == channel,
            invitations.c.status == "sent",
            invitations.c.sent_at > since,
            ~sa.exists().where(ratings.c.record_id == invitations.c.record_id),
        )
        .order_by(invitations.c.id.desc())
        .limit(1)
    ).first()
    if invitation is None:
        return None
    return Session(
        id=str(uuid4()),
        survey_id=survey.id,
        record_no=invitation.record_no,
        invitation_id=invitation.id,
        locale=invitation.locale,
        step=survey.start,
        started_at=invitation.sent_at,
        updated_at=now,
        expires_at=now + timedelta(hours=survey.expires_after_hours),
        source="invitation",
    )


def _rated(db: sa.Connection, rt: Runtime, rating: Any, now: datetime) -> Session:
    answers: dict[str, Any] = {"level": rating.level}
    levels = dict(
        db.execute(
            sa.select(dimensions.c.dimension, dimensions.c.level).where(
                dimensions.c.rating_id == rating.id
            )
        ).all()
    )
    if levels:
        answers["dimensions"] = levels
    if rating.comment is not None:
        answers["comment"] = rating.comment
    complaint = db.execute(sa.select(complaints).where(complaints.c.rating_id == rating.id)).first()
    if complaint is not None:
        answers["complaint"] = {
            k: v
            for k, v in (
                ("problems", complaint.problems),
                ("details", complaint.details),
                ("callback", complaint.wants_callback),
            )
            if v is not None
        }
    spoken = dict(
        db.execute(
            sa.select(recordings.c.field, recordings.c.url).where(
                recordings.c.rating_id == rating.id
            )
        ).all()
    )
    if spoken:
        answers["recordings"] = spoken
    in_progress = rating.status == "in_progress"
    survey = rt.survey
    return Session(
        id=rating.conversation_id,
        survey_id=survey.id,
        record_no=rating.record_no,
        invitation_id=rating.invitation_id,
        locale=rating.locale,
        # Open: engine.recover finds its question; closed: "already rated" until it expires.
        step=survey.start if in_progress else None,
        answers=answers,
        started_at=rating.created_at,
        updated_at=rating.updated_at,
        expires_at=rating.updated_at + timedelta(hours=survey.expires_after_hours),
        outcome=None if in_progress else rating.status,
        source="invitation" if rating.invitation_id is not None else None,
        evaluation_count=rating.evaluation_count,
    )
