"""Outbound calls: an invitation by phone is handed to the dialer, which places a call inside
calling hours through Twilio's REST API; the call runs the same survey (its answer URL is
``/channels/voice?record_no=…&attempt=…``). A bad review whose citizen asked for a callback
(回访) gets one once its department has responded (``bot.cases.feedback``; or when ``ratebot
call`` says so): the same survey again, recorded as the case's second rating.

A busy line, no answer or an answering machine schedules the next attempt,
``RATEBOT_CALL_RETRY_MINUTES`` later, up to ``RATEBOT_CALL_ATTEMPTS`` in all; every attempt is a
row of its own.

Placing claims the attempt with a conditional UPDATE, and a status report schedules the retry
only on the transition that ends the attempt, so concurrent workers and Twilio's retried
callbacks never place or schedule a call twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import Session as DbSession
from sqlmodel import col, select

from bot.cases.hours import call_time
from bot.conversation.optouts import is_opted_out
from bot.conversation.ratings import follow_up_due
from bot.results import rollups
from bot.runtime import Runtime
from channels.base import Delivery
from channels.voice import ENDED
from storage.models import CallAttempt, Invitation, ServiceRecord
from storage.privacy import mask
from storage.tables import complaints, ratings

log = logging.getLogger("ratebot.calls")

# Twilio's statuses worth calling again later (its final ones are the channel's: ENDED).
RETRIED = {"busy", "no-answer", "machine"}
# A claim still unfinished this long after it was taken (a call being placed, an invitation
# being sent) was interrupted: its process died.
INTERRUPTED_AFTER = timedelta(minutes=10)
UNDER_WAY = ("scheduled", "calling", "queued", "initiated", "ringing", "in-progress")


class CannotCall(ValueError):
    """The case cannot be called about (the reason is the message)."""


def hand_to_dialer(rt: Runtime, invitation_id: int, now: datetime) -> None:
    """A voice invitation was claimed for sending: its first call is scheduled (the worker
    places it), and the invitation counts as sent from now."""
    with DbSession(rt.db) as db, db.begin():
        invitation = db.get_one(Invitation, invitation_id)
        invitation.status, invitation.sent_at, invitation.remind_at = "sent", now, None
        db.add(invitation)
        db.add(
            CallAttempt(
                invitation_id=invitation_id,
                attempt=1,
                status="scheduled",
                scheduled_at=call_time(rt, now),
            )
        )


def call_case(rt: Runtime, record_no: str, now: datetime) -> int:
    """Schedule a call about case ``record_no`` now (or when calling hours open): to rate it,
    or — a bad review whose citizen asked for one — to follow it up (回访). The attempt's id."""
    with DbSession(rt.db) as db, db.begin():
        record = db.exec(select(ServiceRecord).where(ServiceRecord.record_no == record_no)).first()
        if record is None or record.id is None:
            raise CannotCall(f"no service record {record_no!r}")
        if not record.phone_hash:
            raise CannotCall("the case has no phone number")
        if is_opted_out(db.connection(), record.phone_hash):
            raise CannotCall("the citizen opted out of invitations")
        if follow_up_due(db.connection(), record.id):
            purpose = "callback"
            db.exec(
                update(complaints)
                .where(complaints.c.rating_id == first_rating(record.id))
                .values(callback_at=now)
            )
        elif db.exec(select(ratings.c.id).where(ratings.c.record_id == record.id)).first():
            raise CannotCall("the case is rated (一事一评) and no callback is due")
        else:
            purpose = "invitation"
        under_way = db.exec(
            select(CallAttempt.id)
            .join(Invitation, col(Invitation.id) == CallAttempt.invitation_id)
            .where(Invitation.record_id == record.id, col(CallAttempt.status).in_(UNDER_WAY))
        ).first()
        if under_way is not None:
            raise CannotCall("a call about this case is already under way")
        return schedule_call(db, rt, record, purpose, now)


def schedule_call(
    db: DbSession, rt: Runtime, record: ServiceRecord, purpose: str, now: datetime
) -> int:
    """A voice invitation (sent: handed to the dialer) and its first call attempt."""
    assert record.id is not None
    invitation = Invitation(
        record_id=record.id,
        channel="voice",
        contact_hash=record.phone_hash,
        status="sent",
        sent_at=now,
        created_at=now,
    )
    db.add(invitation)
    db.flush()
    assert invitation.id is not None
    rollups.mark(db.connection(), now)  # an invitation sent (a callback's is not counted)
    attempt = CallAttempt(
        invitation_id=invitation.id,
        purpose=purpose,
        status="scheduled",
        scheduled_at=call_time(rt, now),
    )
    db.add(attempt)
    db.flush()
    assert attempt.id is not None
    return attempt.id


def first_rating(record_id: int) -> Any:
    return (
        sa.select(ratings.c.id)
        .where(ratings.c.record_id == record_id, ratings.c.evaluation_count == 1)
        .scalar_subquery()
    )


def due(rt: Runtime, now: datetime, limit: int) -> list[int]:
    """Attempts to place now. One a worker claimed but never placed (its process died) is marked
    failed: whether Twilio got it is unknown, and calling twice is worse than not at all."""
    with DbSession(rt.db) as db, db.begin():
        db.exec(
            update(CallAttempt)
            .where(
                col(CallAttempt.status) == "calling",
                col(CallAttempt.started_at) <= now - INTERRUPTED_AFTER,
            )
            .values(status="failed", error="interrupted", ended_at=now)
        )
        found = db.exec(
            select(CallAttempt.id)
            .where(CallAttempt.status == "scheduled", col(CallAttempt.scheduled_at) <= now)
            .order_by(col(CallAttempt.scheduled_at))
            .limit(limit)
        ).all()
    return [i for i in found if i is not None]


def place(rt: Runtime, attempt_id: int) -> Delivery | None:
    """Place a due attempt's call, if this worker wins the claim (None if another did, or the
    calling hours closed since — then it waits for them)."""
    now = rt.clock()
    with DbSession(rt.db, expire_on_commit=False) as db, db.begin():
        claimed = db.exec(
            update(CallAttempt)
            .where(
                col(CallAttempt.id) == attempt_id,
                col(CallAttempt.status) == "scheduled",
                col(CallAttempt.scheduled_at) <= now,
            )
            .values(status="calling", started_at=now)
        )
        if claimed.rowcount != 1:
            return None
        attempt = db.get_one(CallAttempt, attempt_id)
        if attempt.purpose == "callback":
            rollups.mark(db.connection(), now)  # a callback placed
        if (later := call_time(rt, now)) > now:
            attempt.status, attempt.scheduled_at = "scheduled", later
            db.add(attempt)
            return None
        invitation = db.get_one(Invitation, attempt.invitation_id)
        record = db.get_one(ServiceRecord, invitation.record_id)
        reason = _no_longer_wanted(db, record, attempt.purpose)
        if reason is not None:  # it changed while the call waited (STOP, a rating elsewhere)
            attempt.status, attempt.error, attempt.ended_at = "canceled", reason, now
            db.add(attempt)
            return None
    assert record.phone_enc, "a voice invitation without a phone is suppressed"
    phone = rt.privacy.decrypt(record.phone_enc)
    base = f"{rt.settings.public_url}/channels/voice"
    query = urlencode(
        {"record_no": record.record_no, "attempt": attempt_id}
        | ({"purpose": "callback"} if attempt.purpose == "callback" else {})
    )
    delivery = rt.caller.place_call(
        phone, answer_url=f"{base}?{query}", status_url=f"{base}/status?attempt={attempt_id}"
    )
    with DbSession(rt.db) as db, db.begin():
        # Only while still claimed: a worker that took the claim for dead must not be undone.
        db.exec(
            update(CallAttempt)
            .where(col(CallAttempt.id) == attempt_id, col(CallAttempt.status) == "calling")
            .values(
                call_sid=delivery.provider_id,
                status=delivery.status[:16],
                error=delivery.error,
                ended_at=now if delivery.status in ("failed", "not placed") else None,
            )
        )
    log.info("call %s placed to %s: %s", attempt_id, mask(phone), delivery.status)
    return delivery


def _no_longer_wanted(db: DbSession, record: ServiceRecord, purpose: str) -> str | None:
    """Why a waiting call should not be placed any more, if it should not."""
    assert record.id is not None
    if record.phone_hash and is_opted_out(db.connection(), record.phone_hash):
        return "opted_out"
    if purpose == "callback":
        return None if follow_up_due(db.connection(), record.id) else "not_due"
    rated = db.exec(select(ratings.c.id).where(ratings.c.record_id == record.id)).first()
    return "rated" if rated is not None else None


def _attempt(db: DbSession, attempt_id: str, call_sid: str) -> CallAttempt | None:
    """The attempt a callback names, if it is the one that call belongs to."""
    if not attempt_id.isdigit():
        return None
    attempt = db.get(CallAttempt, int(attempt_id))
    if attempt is None or attempt.call_sid not in (None, call_sid):
        log.warning("a call status for attempt %s that is not that call's; ignored", attempt_id)
        return None
    return attempt


def machine_answered(rt: Runtime, attempt_id: str, call_sid: str, answered_by: str) -> None:
    """An answering machine (or fax) picked up: the call is hung up and tried again later."""
    with DbSession(rt.db) as db, db.begin():
        attempt = _attempt(db, attempt_id, call_sid)
        if attempt is not None and attempt.ended_at is None:
            attempt.status, attempt.answered_by = "machine", answered_by[:32]
            db.add(attempt)


def record_call_status(rt: Runtime, attempt_id: str, call_sid: str, state: str) -> None:
    """Twilio's report on an outbound call. The report that ends the attempt (once, whatever
    Twilio repeats) schedules the next one when the line was busy, nobody answered or a machine
    did — if attempts are left."""
    now = rt.clock()
    with DbSession(rt.db) as db, db.begin():
        attempt = _attempt(db, attempt_id, call_sid)
        if attempt is None or attempt.ended_at is not None:
            return
        # Twilio reports an answering machine's call as in progress, then completed.
        state = attempt.status if attempt.status == "machine" else state
        call_sid = attempt.call_sid or call_sid
        if state not in ENDED and state != "machine":
            attempt.status, attempt.call_sid = state, call_sid
            db.add(attempt)
            return
        ended = db.exec(
            update(CallAttempt)
            .where(col(CallAttempt.id) == attempt.id, col(CallAttempt.ended_at).is_(None))
            .values(status=state, call_sid=call_sid, ended_at=now)
        )
        if ended.rowcount == 1 and state in RETRIED and attempt.attempt < rt.settings.call_attempts:
            db.add(
                CallAttempt(
                    invitation_id=attempt.invitation_id,
                    purpose=attempt.purpose,
                    attempt=attempt.attempt + 1,
                    status="scheduled",
                    scheduled_at=call_time(
                        rt, now + timedelta(minutes=rt.settings.call_retry_minutes)
                    ),
                )
            )


def attempts_view(db: DbSession, invitation_id: int) -> list[dict[str, Any]]:
    """An invitation's call attempts, for the service-record API."""
    rows = db.exec(
        select(CallAttempt)
        .where(CallAttempt.invitation_id == invitation_id)
        .order_by(col(CallAttempt.attempt))
    ).all()
    return [
        {
            "attempt": a.attempt,
            "status": a.status,
            "answered_by": a.answered_by,
            "error": a.error,
            "scheduled_at": a.scheduled_at,
            "started_at": a.started_at,
            "ended_at": a.ended_at,
        }
        for a in rows
    ]
