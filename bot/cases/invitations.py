"""Invitations to rate a finished case: who gets one, when, and sending it.

A reported case gets one invitation (一事一评). It is suppressed — recorded with the reason, never
sent — when the citizen opted out, was invited within the cooldown window, or left no contact.
During quiet hours it waits, ``scheduled`` with the reason ``quiet_hours``, for the worker. Each
is logged with its reason (the console shows why no invitation went out). Sending claims the
invitation with a conditional UPDATE, so the request that created it and any number of workers
never send it twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from babel.dates import format_date
from sqlalchemy import update
from sqlmodel import Session as DbSession
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from bot.cases import calls
from bot.cases.hours import send_time
from bot.conversation.optouts import is_opted_out
from bot.conversation.turn import Conversations, conversation_key, load_session, session_ttl
from bot.results import rollups
from bot.runtime import Runtime
from channels import telegram, wechat
from channels.base import Delivery
from channels.sms import render_text
from channels.voucher import voucher_text
from channels.wechat import WeChatSender
from dialogs import engine
from dialogs.events import Event, Say, VoucherIssued
from dialogs.session import Session
from locales import gettext, ids
from storage.models import Invitation, OutboundMessage, ServiceRecord
from storage.privacy import mask

log = logging.getLogger("ratebot.invitations")

PENDING = ("scheduled", "sending", "sent")
# Where a record keeps each channel's contact: (keyed hash column, encrypted column).
CONTACTS = {
    "sms": ("phone_hash", "phone_enc"),
    "voice": ("phone_hash", "phone_enc"),
    "wechat": ("wechat_hash", "wechat_enc"),
    "telegram": ("telegram_hash", "telegram_enc"),
}
# WeChat refusals after which an invitation goes by SMS instead: out of the 48-hour window (a
# customer-service message without a template), and the citizen does not follow the account.
# In Telegram every refusal does (see _falls_back).
FALLBACK = (str(wechat.OUT_OF_WINDOW), str(wechat.NOT_SUBSCRIBED))


def new_invitation(
    db: DbSession, rt: Runtime, record: ServiceRecord, channel: str, now: datetime
) -> Invitation:
    """The invitation for a newly reported ``record``: scheduled, or suppressed with a reason."""
    contact_hash = getattr(record, CONTACTS[channel][0]) if channel in CONTACTS else None
    assert record.id is not None
    invitation = Invitation(
        record_id=record.id,
        channel=channel,
        contact_hash=contact_hash,
        status="scheduled",
        created_at=now,
    )
    if contact_hash is None:
        invitation.status, invitation.reason = "suppressed", "no_contact"
    elif is_opted_out(db.connection(), contact_hash):
        invitation.status, invitation.reason = "suppressed", "opted_out"
    elif _recently_invited(
        db, contact_hash, now - timedelta(hours=rt.settings.invite_cooldown_hours)
    ):
        invitation.status, invitation.reason = "suppressed", "cooldown"
    else:
        invitation.scheduled_at = send_time(rt, now)
        if invitation.scheduled_at <= now:
            # Due now: claimed by the request that reports the case, which sends it at once
            # (so no worker can take it in between).
            invitation.status = "sending"
        else:  # held until the quiet hours end; the worker sends it then (the reason clears)
            invitation.reason = "quiet_hours"
    if invitation.status == "suppressed":
        log.info("invitation of case %s suppressed: %s", record.record_no, invitation.reason)
    elif invitation.reason == "quiet_hours":
        assert invitation.scheduled_at is not None
        log.info(
            "invitation of case %s held: quiet_hours (RATEBOT_QUIET_HOURS=%s) until %s",
            record.record_no,
            rt.settings.quiet_hours,
            invitation.scheduled_at.astimezone(rt.settings.zone).isoformat(timespec="minutes"),
        )
    db.add(invitation)
    return invitation


def _recently_invited(db: DbSession, contact_hash: str, since: datetime) -> bool:
    return (
        db.exec(
            select(Invitation.id).where(
                Invitation.contact_hash == contact_hash,
                col(Invitation.status).in_(PENDING),
                col(Invitation.created_at) >= since,
            )
        ).first()
        is not None
    )


def invitation_params(record: ServiceRecord, rt: Runtime) -> dict[str, Any]:
    day = (
        (record.completed_at or record.created_at or rt.clock()).astimezone(rt.settings.zone).date()
    )
    return {
        "date": format_date(day, format="long", locale=record.locale),
        "hall": record.hall,
        "item": record.item_name,
    }


async def dispatch_invitation(rt: Runtime, invitation_id: int) -> None:
    """Send a scheduled invitation that has come due. Safe to call from several workers at once:
    only the one that claims it sends it."""
    if await run_in_threadpool(_claim, rt, invitation_id, rt.clock()):
        await deliver_invitation(rt, invitation_id)


async def deliver_invitation(rt: Runtime, invitation_id: int) -> None:
    """Send an invitation its caller has claimed (status ``sending``) and open its conversation.

    A WeChat invitation the account may not send (:data:`FALLBACK`: outside the 48-hour window
    and no template, or the citizen does not follow), and a Telegram invitation refused for
    whatever reason, fall back to SMS when the phone is known; every attempt is recorded.
    """
    now = rt.clock()
    invitation, record = await run_in_threadpool(_load_invitation, rt, invitation_id)
    assert invitation.id is not None
    if invitation.channel == "voice":  # the dialer calls, inside calling hours
        await run_in_threadpool(calls.hand_to_dialer, rt, invitation.id, now)
        return
    channels = [invitation.channel]
    if invitation.channel != "sms" and record.phone_enc:
        channels.append("sms")
    for channel in channels:
        delivery = await _invite(rt, invitation.id, record, channel, now)
        await run_in_threadpool(
            _record_sent, rt, invitation.id, record, delivery, "invitation", now, channel
        )
        if not _falls_back(channel, delivery):
            break


def _falls_back(channel: str, delivery: Delivery) -> bool:
    """Whether an invitation refused in ``channel`` goes on by SMS. In Telegram any refusal: the
    citizen blocked the bot, the chat is gone, Telegram did not answer — a chat that cannot be
    reached now (a send that timed out may have arrived: the SMS is then a second invitation).
    In WeChat only :data:`FALLBACK`: its other refusals (a wrong openid, a
    wrong template) would refuse every invitation alike and are for the operator to fix."""
    if delivery.status != "failed":
        return False
    return channel == telegram.CHANNEL or (delivery.error or "").startswith(FALLBACK)


async def _invite(
    rt: Runtime, invitation_id: int, record: ServiceRecord, channel: str, now: datetime
) -> Delivery:
    """Open the conversation about ``record`` in ``channel`` and send the invitation."""
    contact_hash, contact = _contact(rt, record, channel)
    key = conversation_key(channel, contact_hash)
    async with rt.store.turn(key) as turn:
        before = load_session(turn.session_json)
        if before is not None and before.step is not None:
            # A conversation about an earlier case is still open: close it, keeping its answers.
            closing = engine.expire(rt.survey, before, now=now, reason="replaced")
            await run_in_threadpool(Conversations(rt).apply, closing, channel, contact_hash, now)
        sprint = engine.start(
            rt.survey,
            session_id=str(uuid4()),
            now=now,
            locale=record.locale,
            record_no=record.record_no,
            invitation_id=invitation_id,
        )
        assert sprint.session is not None
        session = sprint.session.model_copy(update={"source": "invitation"})
        delivery = await _send(rt, channel, contact, record, ids.INVITATION_INTRO, sprint.events)
        if delivery.status != "failed":
            turn.save(session.model_dump(mode="json"), ttl=session_ttl(session, now))
    return delivery


def _contact(rt: Runtime, record: ServiceRecord, channel: str) -> tuple[str, str]:
    """(keyed hash, clear value) of the record's contact in ``channel``."""
    hash_column, encrypted_column = CONTACTS[channel]
    contact_hash, encrypted = getattr(record, hash_column), getattr(record, encrypted_column)
    assert contact_hash and encrypted, f"no {channel} contact: the invitation was suppressed"
    return contact_hash, rt.privacy.decrypt(encrypted)


async def _send(
    rt: Runtime,
    channel: str,
    contact: str,
    record: ServiceRecord,
    intro: str,
    events: list[Event],
) -> Delivery:
    """An invitation or reminder: the intro, the opening question, how to opt out. In Telegram
    the intro with the case's link as a button, then the question with its keyboard (through the
    runtime's aiogram bot; refused when Telegram is not configured); elsewhere through the
    channel's sender."""
    if channel != telegram.CHANNEL:
        return await run_in_threadpool(_send_by_sender, rt, channel, contact, record, intro, events)
    if rt.telegram is None:
        return Delivery(telegram.PROVIDER, None, "failed", "not configured: RATEBOT_TELEGRAM_TOKEN")
    params = invitation_params(record, rt)
    said = [Say(intro, params), Say(ids.TELEGRAM_INVITE_OPTOUT), *events]
    messages = telegram.render_messages(said, record.locale)
    button = gettext(record.locale, ids.TELEGRAM_INVITE_BUTTON)
    return await telegram.invite(rt.telegram, contact, record.record_no, messages, button)


def _send_by_sender(
    rt: Runtime,
    channel: str,
    contact: str,
    record: ServiceRecord,
    intro: str,
    events: list[Event],
) -> Delivery:
    """:func:`_send` by SMS or WeChat. In WeChat a template message when one is configured (it
    reaches followers outside the 48-hour window), its fields filled as
    ``RATEBOT_WECHAT_TEMPLATE_FIELDS`` maps them."""
    params = invitation_params(record, rt)
    sender = rt.senders[channel]
    template_id = rt.settings.wechat_template_id
    if channel == "wechat" and template_id and isinstance(sender, WeChatSender):
        values = {
            **params,
            "intro": gettext(record.locale, intro, **params),
            "question": render_text(events, record.locale),
            "optout": gettext(record.locale, ids.INVITATION_OPTOUT),
        }
        data = {
            field: {"value": values[name]}
            for field, name in rt.settings.wechat_template_fields.items()
        }
        return sender.send_template(contact, template_id, data)
    body = render_text([Say(intro, params), *events, Say(ids.INVITATION_OPTOUT)], record.locale)
    return sender.send_text(contact, body)


def _load_invitation(rt: Runtime, invitation_id: int) -> tuple[Invitation, ServiceRecord]:
    with DbSession(rt.db, expire_on_commit=False) as db:
        invitation = db.get_one(Invitation, invitation_id)
        return invitation, db.get_one(ServiceRecord, invitation.record_id)


def _claim_row(db: DbSession, invitation_id: int, *conditions: Any, **values: Any) -> bool:
    """Take a timer job: a conditional UPDATE that only one of many concurrent workers wins."""
    claimed = db.exec(
        update(Invitation).where(col(Invitation.id) == invitation_id, *conditions).values(**values)
    )
    return bool(claimed.rowcount == 1)


def _claim(rt: Runtime, invitation_id: int, now: datetime) -> bool:
    with DbSession(rt.db) as db, db.begin():
        due = (col(Invitation.status) == "scheduled", col(Invitation.scheduled_at) <= now)
        if not _claim_row(db, invitation_id, *due, status="sending"):
            return False
        invitation = db.get_one(Invitation, invitation_id)
        if invitation.contact_hash and is_opted_out(db.connection(), invitation.contact_hash):
            # STOP arrived while it waited for the quiet hours to end.
            invitation.status, invitation.reason = "suppressed", "opted_out"
            db.add(invitation)
            return False
        return True


def _record_sent(
    rt: Runtime,
    invitation_id: int,
    record: ServiceRecord,
    delivery: Delivery,
    purpose: str,
    now: datetime,
    channel: str,
) -> None:
    with DbSession(rt.db) as db, db.begin():
        invitation = db.get_one(Invitation, invitation_id)
        if purpose == "invitation":
            failed = delivery.status == "failed"
            invitation.status = "failed" if failed else "sent"
            if not failed:  # the channel it went out on (after a fallback: SMS)
                invitation.channel = channel
            # the provider's own words are kept on the outbound message
            invitation.reason = "send_failed" if failed else None
            if not failed:
                invitation.sent_at = now
                rollups.mark(db.connection(), now)
                delay = rt.survey.reminder_after_hours  # None: this survey sends no reminder
                invitation.remind_at = now + timedelta(hours=delay) if delay else None
        else:
            invitation.reminded_at = invitation.reminded_at or now
        db.add(invitation)
        db.add(
            outbound_message(
                purpose, channel, _contact_mask(rt, record, channel), delivery, now, invitation_id
            )
        )


def outbound_message(
    purpose: str,
    channel: str,
    to_mask: str,
    delivery: Delivery,
    now: datetime,
    invitation_id: int | None = None,
) -> OutboundMessage:
    """The record of one message ratebot sent on its own initiative, with the provider's answer."""
    return OutboundMessage(
        invitation_id=invitation_id,
        purpose=purpose,
        channel=channel,
        to_mask=to_mask,
        provider=delivery.provider,
        provider_id=delivery.provider_id,
        status=delivery.status,
        error=delivery.error,
        created_at=now,
        updated_at=now,
    )


async def send_voucher(rt: Runtime, channel: str, session: Session, voucher: VoucherIssued) -> None:
    """Tell a voucher earned when conversation ``session`` in ``channel`` closed without the
    citizen there (it expired, the call had ended). In a chat app, in the chat the citizen rated
    in (the voucher and its QR code); else to the case's contact in that channel; else by SMS
    (as after a call). A way that fails gives way to the next — WeChat refuses a
    customer-service message 48 hours after the citizen last wrote. Every attempt is recorded as
    an outbound message."""
    assert session.record_no is not None  # only a case's rating earns one
    now = rt.clock()
    record = await run_in_threadpool(_load_record, rt, session.record_no)
    ways = _voucher_ways(rt, channel, session, record)
    if not ways:
        log.warning("voucher of case %s earned, but no contact to tell it", session.record_no)
    for via, contact in ways:
        delivery = await _tell_voucher(rt, via, contact, voucher, session.locale)
        message = outbound_message("voucher", via, mask(contact), delivery, now)
        await run_in_threadpool(_store_outbound, rt, message)
        if delivery.status != "failed":
            return


def _voucher_ways(
    rt: Runtime, channel: str, session: Session, record: ServiceRecord
) -> list[tuple[str, str]]:
    """(channel, clear contact) to tell a voucher by, best first, each once: the chat the
    citizen rated in, the case's contact in that channel, the case's phone."""
    encrypted = [(channel, session.reply_to)]
    encrypted += [(via, getattr(record, CONTACTS[via][1])) for via in (channel, "sms")]
    ways = [
        (via, rt.privacy.decrypt(contact))
        for via, contact in encrypted
        if contact and (via in rt.senders or (via == "telegram" and rt.telegram is not None))
    ]
    return list(dict.fromkeys(ways))


async def _tell_voucher(
    rt: Runtime, channel: str, contact: str, voucher: VoucherIssued, locale: str
) -> Delivery:
    """The voucher in ``channel``: in a chat its text and its QR code's picture, by SMS its text
    (the page it links to shows the QR code)."""
    if channel == "telegram":
        assert rt.telegram is not None
        messages = telegram.render_messages([voucher], locale)
        return await telegram.send(rt.telegram, contact, messages)
    sender = rt.senders[channel]
    if isinstance(sender, WeChatSender):
        pictured = wechat.render_messages([voucher], locale)
        return await run_in_threadpool(_send_wechat, sender, contact, pictured)
    return await run_in_threadpool(sender.send_text, contact, voucher_text(voucher, locale))


def _send_wechat(sender: WeChatSender, openid: str, messages: list[wechat.Outgoing]) -> Delivery:
    """The voucher's text, then its QR code's picture. Told once the text went: it has the code
    and the link to the voucher's page (a refused picture is logged by the sender)."""
    text, *pictures = messages
    delivery = sender.send(openid, text)
    if delivery.status != "failed":
        for picture in pictures:
            sender.send(openid, picture)
    return delivery


def _load_record(rt: Runtime, record_no: str) -> ServiceRecord:
    with DbSession(rt.db, expire_on_commit=False) as db:
        return db.exec(select(ServiceRecord).where(ServiceRecord.record_no == record_no)).one()


def _store_outbound(rt: Runtime, message: OutboundMessage) -> None:
    with DbSession(rt.db) as db, db.begin():
        db.add(message)


async def send_reminder(rt: Runtime, invitation_id: int) -> None:
    """The one reminder for an invitation still unanswered after the survey's reminder delay."""
    now = rt.clock()
    claimed = await run_in_threadpool(_claim_reminder, rt, invitation_id, now)
    if claimed is None:
        return
    invitation, record = claimed
    contact_hash, contact = _contact(rt, record, invitation.channel)
    async with rt.store.turn(conversation_key(invitation.channel, contact_hash)) as turn:
        session = load_session(turn.session_json)
        if (
            session is None
            or session.invitation_id != invitation_id
            or session.answers
            or session.step != rt.survey.start
        ):
            return  # answered (or replaced) since: no reminder
        opening = engine.start(rt.survey, session_id=session.id, now=now, locale=session.locale)
        delivery = await _send(
            rt, invitation.channel, contact, record, ids.REMINDER_INTRO, opening.events
        )
    await run_in_threadpool(
        _record_sent, rt, invitation_id, record, delivery, "reminder", now, invitation.channel
    )


def _claim_reminder(
    rt: Runtime, invitation_id: int, now: datetime
) -> tuple[Invitation, ServiceRecord] | None:
    with DbSession(rt.db) as db, db.begin():
        due = (
            col(Invitation.status) == "sent",
            col(Invitation.remind_at) <= now,
            col(Invitation.reminded_at).is_(None),
        )
        if not _claim_row(db, invitation_id, *due, reminded_at=now):
            return None
        invitation = db.get_one(Invitation, invitation_id)
        record = db.get_one(ServiceRecord, invitation.record_id)
        if invitation.contact_hash and is_opted_out(db.connection(), invitation.contact_hash):
            return None
        db.expunge_all()
        return invitation, record


# Twilio may report a status out of order; never move a message back to an earlier state.
STATUS_ORDER = {
    "accepted": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "undelivered": 4,
    "failed": 4,
}


def record_delivery_status(rt: Runtime, provider_id: str, state: str, error: str | None) -> None:
    """Update an outbound message from the provider's delivery report (unknown ids are ignored)."""
    with DbSession(rt.db) as db, db.begin():
        message = db.exec(
            select(OutboundMessage).where(OutboundMessage.provider_id == provider_id)
        ).first()
        if message is None:
            return
        if STATUS_ORDER.get(state, 9) >= STATUS_ORDER.get(message.status, 0):
            message.status, message.error, message.updated_at = (
                state,
                error or message.error,
                rt.clock(),
            )
            db.add(message)


def _contact_mask(rt: Runtime, record: ServiceRecord, channel: str) -> str:
    if channel == "sms":
        return record.phone_mask or ""
    encrypted = getattr(record, CONTACTS[channel][1])
    return mask(rt.privacy.decrypt(encrypted)) if encrypted else ""
