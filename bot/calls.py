"""Outbound calls: an invitation by phone is handed to the dialer, which places a call inside
calling hours through Twilio's REST API; the call runs the same survey (its answer URL is
``/channels/voice?record_no=…&attempt=…``). A busy line, no answer or an answering machine
schedules the next attempt, ``RATEBOT_CALL_RETRY_MINUTES`` later, up to
``RATEBOT_CALL_ATTEMPTS`` in all; every attempt is a row of its own.

Placing claims the attempt with a conditional UPDATE, and a status report schedules the retry
only on the transition that ends the attempt, so concurrent workers and Twilio's retried
callbacks never place or schedule a call twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import update
from sqlmodel import Session as DbSession
from sqlmodel import col, select

from bot import invitations
from bot.privacy import mask
from bot.runtime import Runtime
from channels.base import Delivery
from storage.models import CallAttempt, Invitation, ServiceRecord

log = logging.getLogger("ratebot.calls")

# Twilio's final call statuses, and those worth calling again later.
ENDED = {"completed", "busy", "no-answer", "failed", "canceled"}
RETRIED = {"busy", "no-answer", "machine"}
INTERRUPTED_AFTER = timedelta(minutes=10)


def call_time(rt: Runtime, now: datetime) -> datetime:
    """``now``, or the next start of the calling hours when ``now`` is outside them."""
    window = rt.settings.calling_window
    if window is None:
        return now
    start, end = window
    return invitations.send_time(now, rt.settings.zone, (end, start))


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


def due(rt: Runtime, now: datetime, limit: int) -> list[int]:
    """Attempts to place now. One a worker claimed but never placed (its process died) is marked
    failed: whether Twilio got it is unknown, and calling twice is worse than not at all."""
    with DbSession(rt.db) as db, db.begin():
        db.exec(  # type: ignore[call-overload]
            update(CallAttempt)
            .where(
                col(CallAttempt.status) == "calling",
                col(CallAttempt.scheduled_at) <= now - INTERRUPTED_AFTER,
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
        claimed = db.exec(  # type: ignore[call-overload]
            update(CallAttempt)
            .where(
                col(CallAttempt.id) == attempt_id,
                col(CallAttempt.status) == "scheduled",
                col(CallAttempt.scheduled_at) <= now,
            )
            .values(status="calling")
        )
        if claimed.rowcount != 1:
            return None
        attempt = db.get_one(CallAttempt, attempt_id)
        if (later := call_time(rt, now)) > now:
            attempt.status, attempt.scheduled_at = "scheduled", later
            db.add(attempt)
            return None
        invitation = db.get_one(Invitation, attempt.invitation_id)
        record = db.get_one(ServiceRecord, invitation.record_id)
    assert record.phone_enc, "a voice invitation without a phone is suppressed"
    phone = rt.privacy.decrypt(record.phone_enc)
    base = f"{rt.settings.public_url}/channels/voice"
    query = urlencode({"record_no": record.record_no, "attempt": attempt_id})
    delivery = rt.caller.place_call(
        phone, answer_url=f"{base}?{query}", status_url=f"{base}/status?attempt={attempt_id}"
    )
    with DbSession(rt.db) as db, db.begin():
        attempt = db.get_one(CallAttempt, attempt_id)
        attempt.call_sid, attempt.started_at = delivery.provider_id, now
        attempt.status, attempt.error = delivery.status[:16], delivery.error
        if delivery.status in ("failed", "not placed"):
            attempt.ended_at = now
        db.add(attempt)
    log.info("call %s placed to %s: %s", attempt_id, mask(phone), delivery.status)
    return delivery


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
        ended = db.exec(  # type: ignore[call-overload]
            update(CallAttempt)
            .where(col(CallAttempt.id) == attempt.id, col(CallAttempt.ended_at).is_(None))
            .values(status=state, call_sid=call_sid, ended_at=now)
        )
        if ended.rowcount == 1 and state in RETRIED and attempt.attempt < rt.settings.call_attempts:
            db.add(
                CallAttempt(
                    invitation_id=attempt.invitation_id,
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
