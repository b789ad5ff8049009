"""Telling the citizen what the department did about their bad review, and asking them to rate
the case again (再次评价, the case's second rating).

When a ticket is responded, the worker tells the citizen once — claimed by a conditional UPDATE
of ``tickets.feedback_at``, so of several workers one sends it — outside the quiet hours, on the
channel they rated on (a phone rating is answered by SMS), in their locale: the department's
answer (cut to fit an SMS) and the survey's first question, in a conversation opened for the
case's second rating. A citizen who asked for a callback gets the phone call instead.

A malicious review whose appeal was upheld earns its citizen one warning (劝诫), sent the same
way, once; a rating whose fraud flags were all cleared gets the voucher it was held back from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

import sqlalchemy as sa
from sqlmodel import Session as DbSession
from starlette.concurrency import run_in_threadpool

from bot.cases.calls import schedule_call
from bot.cases.hours import send_time
from bot.cases.invitations import CONTACTS, outbound_message
from bot.conversation.optouts import is_opted_out
from bot.conversation.turn import Conversations, conversation_key, load_session, session_ttl
from bot.rewards.vouchers import issue_voucher
from bot.runtime import Runtime
from channels import telegram
from channels.base import Delivery
from channels.sms import render_text
from dialogs import engine
from dialogs.events import Event, Say, VoucherIssued
from locales import ids
from storage.models import OutboundMessage, ServiceRecord
from storage.privacy import mask
from storage.tables import appeals, complaints, flags, ratings, tickets

log = logging.getLogger("ratebot.feedback")

BATCH = 50
MAX_ANSWER = 120  # characters of the department's answer that fit an SMS with the question
INTROS = {"rectified": ids.FEEDBACK_RECTIFIED, "explained": ids.FEEDBACK_EXPLAINED}


@dataclass(frozen=True, slots=True)
class Due:
    """A responded ticket whose citizen has not been told."""

    ticket_id: int
    record_id: int | None
    channel: str  # the conversation channel the citizen rated on
    locale: str
    outcome: str
    response: str
    wants_callback: bool


async def send_due(rt: Runtime) -> int:
    """Tell every citizen whose ticket was responded (outside the quiet hours), and warn every
    malicious reviewer whose appeal was upheld. How many were told."""
    now = rt.clock()
    if send_time(rt, now) > now:
        return 0  # the quiet hours: the worker comes back after them
    told = 0
    for due in await run_in_threadpool(_claim_feedback, rt, now):
        await _tell_feedback(rt, due, now)
        told += 1
    for record_id, channel, locale in await run_in_threadpool(_claim_warnings, rt, now):
        record = await run_in_threadpool(_record, rt, record_id)
        warning = Say(ids.WARNING_MALICIOUS, {"item": record.item_name})
        await _tell(rt, record_id, channel, locale, [warning], now, "warning")
        told += 1
    for record_id, channel, locale, voucher in await run_in_threadpool(_release_vouchers, rt, now):
        await _tell(rt, record_id, channel, locale, [voucher], now, "voucher")
        told += 1
    return told


def _release_vouchers(rt: Runtime, now: datetime) -> list[tuple[int, str, str, VoucherIssued]]:
    """The vouchers held back while a fraud flag was pending, issued once its ratings's flags
    are all cleared: (record id, channel, locale, voucher) of each, to be told."""
    released: list[tuple[int, str, str, VoucherIssued]] = []
    with rt.db.begin() as conn:
        rows = conn.execute(
            sa.select(
                flags.c.id,
                ratings.c.conversation_id,
                ratings.c.conversation_key,
                ratings.c.record_id,
                ratings.c.locale,
            )
            .join(ratings, ratings.c.id == flags.c.rating_id)
            .where(
                flags.c.state == "cleared",
                flags.c.released_at.is_(None),
                ratings.c.flagged.is_(False),
            )
            .limit(BATCH)
        ).all()
        for row in rows:
            won = conn.execute(
                sa.update(flags)
                .where(flags.c.id == row.id, flags.c.released_at.is_(None))
                .values(released_at=now)
            )
            if won.rowcount != 1 or row.record_id is None:
                continue
            voucher = issue_voucher(
                conn, rt.privacy, rt.settings.public_url, row.conversation_id, now
            )
            if voucher is not None:
                channel = row.conversation_key.partition(":")[0]
                released.append((row.record_id, channel, row.locale, voucher))
    return released


def _claim_feedback(rt: Runtime, now: datetime) -> list[Due]:
    claimed: list[Due] = []
    with rt.db.begin() as conn:
        rows = conn.execute(
            sa.select(
                tickets.c.id,
                tickets.c.record_id,
                tickets.c.outcome,
                tickets.c.response,
                ratings.c.conversation_key,
                ratings.c.locale,
                complaints.c.wants_callback,
            )
            .join(ratings, ratings.c.id == tickets.c.rating_id)
            .join(complaints, complaints.c.rating_id == ratings.c.id, isouter=True)
            .where(tickets.c.state == "responded", tickets.c.feedback_at.is_(None))
            .order_by(tickets.c.responded_at)
            .limit(BATCH)
        ).all()
        for row in rows:
            won = conn.execute(
                sa.update(tickets)
                .where(tickets.c.id == row.id, tickets.c.feedback_at.is_(None))
                .values(feedback_at=now)
            )
            if won.rowcount == 1:
                claimed.append(
                    Due(
                        ticket_id=row.id,
                        record_id=row.record_id,
                        channel=row.conversation_key.partition(":")[0],
                        locale=row.locale,
                        outcome=row.outcome or "rectified",
                        response=row.response or "",
                        wants_callback=bool(row.wants_callback),
                    )
                )
    return claimed


def _claim_warnings(rt: Runtime, now: datetime) -> list[tuple[int, str, str]]:
    """(record id, channel, locale) of each upheld malicious appeal whose warning is unsent."""
    claimed: list[tuple[int, str, str]] = []
    with rt.db.begin() as conn:
        rows = conn.execute(
            sa.select(
                appeals.c.id, tickets.c.record_id, ratings.c.conversation_key, ratings.c.locale
            )
            .join(tickets, tickets.c.id == appeals.c.ticket_id)
            .join(ratings, ratings.c.id == tickets.c.rating_id)
            .where(
                appeals.c.state == "upheld",
                appeals.c.ground == "malicious",
                appeals.c.warning_at.is_(None),
                tickets.c.record_id.is_not(None),
            )
            .limit(BATCH)
        ).all()
        for row in rows:
            won = conn.execute(
                sa.update(appeals)
                .where(appeals.c.id == row.id, appeals.c.warning_at.is_(None))
                .values(warning_at=now)
            )
            if won.rowcount == 1:
                claimed.append((row.record_id, row.conversation_key.partition(":")[0], row.locale))
    return claimed


async def _tell_feedback(rt: Runtime, due: Due, now: datetime) -> None:
    if due.record_id is None:
        log.info("ticket %s has no case: nothing to rate again, nobody to tell", due.ticket_id)
        return
    if due.wants_callback and await run_in_threadpool(_call_back, rt, due, now):
        return
    record = await run_in_threadpool(_record, rt, due.record_id)
    answer = (
        due.response if len(due.response) <= MAX_ANSWER else due.response[: MAX_ANSWER - 1] + "…"
    )
    intro = Say(
        INTROS.get(due.outcome, ids.FEEDBACK_RECTIFIED),
        {"department": record.department, "item": record.item_name, "text": answer},
    )
    await _tell(rt, due.record_id, due.channel, due.locale, [intro], now, "feedback", rerate=True)


def _call_back(rt: Runtime, due: Due, now: datetime) -> bool:
    """The callback (回访) the citizen asked for, placed now that the department answered:
    the call asks for the second rating. ``False`` when the case has no phone to call."""
    with DbSession(rt.db) as db, db.begin():
        record = db.get_one(ServiceRecord, due.record_id)
        if not record.phone_hash or is_opted_out(db.connection(), record.phone_hash):
            return False
        first = sa.select(ratings.c.id).where(
            ratings.c.record_id == record.id, ratings.c.evaluation_count == 1
        )
        db.execute(
            sa.update(complaints)
            .where(complaints.c.rating_id == first.scalar_subquery())
            .values(callback_at=now)
        )
        schedule_call(db, rt, record, "callback", now)
    return True


def _record(rt: Runtime, record_id: int) -> ServiceRecord:
    with DbSession(rt.db, expire_on_commit=False) as db:
        return db.get_one(ServiceRecord, record_id)


async def _tell(
    rt: Runtime,
    record_id: int,
    channel: str,
    locale: str,
    said: list[Event],
    now: datetime,
    purpose: str,
    *,
    rerate: bool = False,
) -> None:
    """Say ``said`` to the case's citizen on ``channel`` (else by SMS); with ``rerate``, open the
    conversation of the case's second rating there and ask its first question."""
    record = await run_in_threadpool(_record, rt, record_id)
    for via in dict.fromkeys([channel if channel != "voice" else "sms", "sms"]):
        hash_column, encrypted_column = CONTACTS[via]
        contact_hash, encrypted = getattr(record, hash_column), getattr(record, encrypted_column)
        if not contact_hash or not encrypted or (via == "telegram" and rt.telegram is None):
            continue
        if await run_in_threadpool(_opted_out, rt, contact_hash):
            log.info("case %s: its citizen opted out; not told (%s)", record.record_no, purpose)
            return
        contact = rt.privacy.decrypt(encrypted)
        events = list(said)
        session = None
        if rerate:
            opening = engine.start(
                rt.survey,
                session_id=str(uuid4()),
                now=now,
                locale=locale,
                record_no=record.record_no,
            )
            assert opening.session is not None
            session = opening.session.model_copy(
                update={"source": "feedback", "evaluation_count": 2}
            )
            events += [Say(ids.FEEDBACK_RERATE, {}), *opening.events]
        key = conversation_key(via, contact_hash)
        async with rt.store.turn(key) as turn:
            before = load_session(turn.session_json)
            if session is not None and before is not None and before.step is not None:
                # A conversation about another case is open there: closed, keeping its answers.
                closing = engine.expire(rt.survey, before, now=now, reason="replaced")
                await run_in_threadpool(Conversations(rt).apply, closing, via, contact_hash, now)
            delivery = await _send(rt, via, contact, events, locale)
            if session is not None and delivery.status != "failed":
                turn.save_json(session.model_dump_json(), ttl=session_ttl(session, now))
        to_mask = record.phone_mask if via == "sms" else mask(contact)
        message = outbound_message(purpose, via, to_mask or "", delivery, now)
        await run_in_threadpool(_store, rt, message)
        if delivery.status != "failed":
            return
    log.warning("case %s: no way to tell its citizen (%s)", record.record_no, purpose)


async def _send(
    rt: Runtime, channel: str, contact: str, events: list[Event], locale: str
) -> Delivery:
    if channel == "telegram":
        assert rt.telegram is not None
        return await telegram.send(rt.telegram, contact, telegram.render_messages(events, locale))
    sender = rt.senders[channel]
    return await run_in_threadpool(sender.send_text, contact, render_text(events, locale))


def _opted_out(rt: Runtime, contact_hash: str) -> bool:
    with rt.db.connect() as conn:
        return is_opted_out(conn, contact_hash)


def _store(rt: Runtime, message: OutboundMessage) -> None:
    with DbSession(rt.db) as db, db.begin():
        db.add(message)
