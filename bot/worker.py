"""Timers that must survive a restart live in the database; this loop runs the due ones.

Several workers may run it at once (one per ``serve`` worker, or ``ratebot worker`` processes):
every job claims its row with a conditional UPDATE or takes the conversation's lock first, so
nothing is sent or finalized twice.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import datetime
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session as DbSession
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from bot.cases import calls, feedback
from bot.cases.invitations import dispatch_invitation, send_reminder, send_voucher
from bot.conversation.turn import Conversations, load_session, split_key
from bot.results import rollups, upstream
from bot.rewards.vouchers import expire_due
from bot.runtime import Runtime
from bot.tickets import jobs as tickets
from dialogs import engine
from dialogs.events import VoucherIssued
from storage.models import Invitation, Rating

log = logging.getLogger("ratebot.worker")
BATCH = 100


async def run_due(rt: Runtime) -> int:
    """Run every job that is due now; the number of jobs looked at."""
    now = rt.clock()
    invitations, reminders, expiring = await run_in_threadpool(_due, rt, now)
    for invitation_id in invitations:
        await dispatch_invitation(rt, invitation_id)
    for invitation_id in reminders:
        await send_reminder(rt, invitation_id)
    for rating_id, key, conversation_id in expiring:
        await expire_conversation(rt, rating_id, key, conversation_id)
    told = await feedback.send_due(rt)
    dialing = await run_in_threadpool(calls.due, rt, now, BATCH)
    for attempt_id in dialing:
        await run_in_threadpool(calls.place, rt, attempt_id)
    expired_vouchers = await run_in_threadpool(_expire_vouchers, rt, now)
    ticket_changes = await run_in_threadpool(tickets.run_due, rt, now)
    recounted = await run_in_threadpool(rollups.run_due, rt)
    pushed = await upstream.deliver_due(rt)
    return (
        len(invitations)
        + len(reminders)
        + len(expiring)
        + len(dialing)
        + expired_vouchers
        + ticket_changes
        + recounted
        + pushed
        + told
    )


def _due(rt: Runtime, now: datetime) -> tuple[list[int], list[int], list[tuple[int, str, str]]]:
    with DbSession(rt.db) as db:
        # A send that never finished (its process died between claim and provider): whether the
        # provider got it is unknown, so it is marked failed rather than sent a second time.
        db.exec(
            update(Invitation)
            .where(
                col(Invitation.status) == "sending",
                col(Invitation.scheduled_at) <= now - calls.INTERRUPTED_AFTER,
            )
            .values(status="failed", reason="interrupted")
        )
        db.commit()
        invitations = db.exec(
            select(Invitation.id)
            .where(Invitation.status == "scheduled", col(Invitation.scheduled_at) <= now)
            .order_by(col(Invitation.scheduled_at))
            .limit(BATCH)
        ).all()
        reminders = db.exec(
            select(Invitation.id)
            .where(
                Invitation.status == "sent",
                col(Invitation.remind_at) <= now,
                col(Invitation.reminded_at).is_(None),
            )
            .limit(BATCH)
        ).all()
        expiring = db.exec(
            select(Rating.id, Rating.conversation_key, Rating.conversation_id)
            .where(Rating.status == "in_progress", col(Rating.next_look_at) <= now)
            .limit(BATCH)
        ).all()
    return (
        [i for i in invitations if i is not None],
        [i for i in reminders if i is not None],
        [(r[0], r[1], r[2]) for r in expiring if r[0] is not None],
    )


async def expire_conversation(rt: Runtime, rating_id: int, key: str, conversation_id: str) -> None:
    """Close a conversation that went quiet, keeping its rating as incomplete."""
    now = rt.clock()
    channel, contact_hash = split_key(key)
    async with rt.store.turn(key) as turn:
        session = load_session(turn.session_json)
        if session is not None and session.id == conversation_id and session.step is not None:
            if session.expires_at > now:  # not done yet: look again later
                look_at = engine.look_again_at(rt.survey, session, now)
                await run_in_threadpool(_postpone, rt, rating_id, look_at)
                return
            sprint = engine.expire(rt.survey, session, now=now)
            told = await run_in_threadpool(
                Conversations(rt).apply, sprint, channel, contact_hash, now
            )
            turn.save(None, ttl=1)
            for voucher in (e for e in told.events if isinstance(e, VoucherIssued)):
                # Finished but for the optional comment: a voucher nobody has told yet.
                await send_voucher(rt, channel, session, voucher)
        else:
            # The state store lost the conversation (an in-memory store restarted): keep the
            # rating with what the database has.
            await run_in_threadpool(_close_as_is, rt, rating_id, now)


def _expire_vouchers(rt: Runtime, now: datetime) -> int:
    """Parking vouchers past their time become ``expired`` (the API and the page already treat
    them so; this keeps the stored state and the reports true)."""
    with rt.db.begin() as conn:
        return expire_due(conn, now)


def _postpone(rt: Runtime, rating_id: int, look_at: datetime) -> None:
    with DbSession(rt.db) as db, db.begin():
        rating = db.get_one(Rating, rating_id)
        rating.next_look_at = look_at
        db.add(rating)


def _close_as_is(rt: Runtime, rating_id: int, now: datetime) -> None:
    with DbSession(rt.db) as db, db.begin():
        rating = db.get_one(Rating, rating_id)
        if rating.status == "in_progress":
            rating.status, rating.submitted_at, rating.updated_at = "incomplete", now, now
            db.add(rating)


async def run_forever(rt: Runtime, stop: asyncio.Event, heartbeat: Path | None = None) -> None:
    """The worker loop: run what is due every ``RATEBOT_WORKER_INTERVAL_SECONDS`` until ``stop``.
    After each pass that ran without an error it touches ``heartbeat`` (when given), so that a
    process check (``ratebot worker --check``, a container's health check) sees it working."""
    interval = rt.settings.worker_interval_seconds
    while not stop.is_set():
        try:
            await run_due(rt)
        except Exception:  # noqa: BLE001 - one bad job must not stop the timers; it is logged
            log.exception("worker tick failed")
        else:
            if heartbeat is not None:
                heartbeat.touch()
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
