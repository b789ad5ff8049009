"""Ratings in the database: written from a conversation's answers, read by the API."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session as DbSession
from sqlmodel import col, delete, select

from dialogs.session import Session
from storage.models import Complaint, Rating, RatingDimension, ServiceRecord


class AlreadyRated(Exception):
    """The case already has a rating (一事一评): a second one is never written."""


def save_rating(
    db: DbSession,
    session: Session,
    *,
    outcome: str | None,
    channel: str,
    provider: str,
    citizen_hash: str,
    now: datetime,
) -> Rating | None:
    """Write what ``session`` has answered so far.

    ``outcome`` is None while the conversation goes on (the rating is ``in_progress``), else
    complete / incomplete / discarded. With no overall level there is no rating: an in-progress
    row (the citizen restarted and then left) is removed. A finished rating is never overwritten.
    Raises :class:`AlreadyRated` when the case has a rating from another conversation.
    """
    answers = session.answers
    rating = db.exec(select(Rating).where(Rating.conversation_id == session.id)).first()
    if rating is not None and rating.status != "in_progress":
        return rating
    if "level" not in answers or outcome == "discarded":
        if rating is not None:
            _delete_rating(db, rating)
        return None
    if rating is None:
        record = (
            db.exec(
                select(ServiceRecord).where(ServiceRecord.record_no == session.record_no)
            ).first()
            if session.record_no
            else None
        )
        if (
            record is not None
            and db.exec(
                select(Rating.id).where(Rating.record_id == record.id, Rating.evaluation_count == 1)
            ).first()
        ):
            raise AlreadyRated(session.record_no)
        rating = Rating(
            conversation_id=session.id,
            record_id=record.id if record else None,
            invitation_id=session.invitation_id if record else None,
            channel=channel,
            provider=provider,
            citizen_hash=citizen_hash,
            locale=session.locale,
            level=answers["level"],
            status="in_progress",
            unsolicited=record is None,
            created_at=now,
        )
    rating.level = answers["level"]
    rating.comment = answers.get("comment")
    rating.updated_at = now
    rating.expires_at = session.expires_at
    if outcome is not None:
        rating.status = outcome
        rating.submitted_at = now
    db.add(rating)
    db.flush()
    assert rating.id is not None
    db.exec(delete(RatingDimension).where(col(RatingDimension.rating_id) == rating.id))
    for dimension, level in answers.get("dimensions", {}).items():
        db.add(RatingDimension(rating_id=rating.id, dimension=dimension, level=level))
    complaint_answers = answers.get("complaint")
    if complaint_answers is not None:
        complaint = db.exec(select(Complaint).where(Complaint.rating_id == rating.id)).first()
        complaint = complaint or Complaint(rating_id=rating.id)
        complaint.problems = list(complaint_answers.get("problems", []))
        complaint.details = complaint_answers.get("details")
        complaint.wants_callback = complaint_answers.get("callback")
        db.add(complaint)
    return rating


def _delete_rating(db: DbSession, rating: Rating) -> None:
    db.exec(delete(RatingDimension).where(col(RatingDimension.rating_id) == rating.id))
    db.exec(delete(Complaint).where(col(Complaint.rating_id) == rating.id))
    db.delete(rating)
