"""Rating by phone: Twilio Voice webhooks.

A call (inbound to the rating line, a hotline transfer with ``?record_no=``, or one ratebot
placed) starts at ``POST /channels/voice``; every answer — keys, speech or a recording — comes
back to ``POST /channels/voice/answer?turn=N``, the ``action`` of the TwiML before it. The turn
number makes Twilio's retry of one request a re-delivery (the same TwiML again) rather than a
second answer. ``POST /channels/voice/status`` ends the conversation of a call that hung up
mid-survey, and records outbound attempts; ``POST /channels/voice/transcription`` keeps
Twilio's transcript of a spoken comment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlmodel import Session as DbSession
from starlette.concurrency import run_in_threadpool
from twilio.twiml.voice_response import VoiceResponse

from bot.cases import calls
from bot.cases.invitations import outbound_message
from bot.conversation.ratings import save_transcription
from bot.conversation.turn import Conversations, Render
from bot.runtime import Runtime
from bot.web.deps import get_runtime
from bot.webhooks.twilio import public_url, twilio_form
from channels import voice
from channels.voucher import voucher_text
from dialogs.events import Event, InboundEvent, Say, VoucherIssued
from locales import gettext, ids
from storage.base import ConversationBusy
from storage.models import UTCDateTime
from storage.privacy import InvalidPhone, mask, normalize_phone
from storage.tables import invitations, ratings, records

log = logging.getLogger("ratebot.voice")
router = APIRouter(prefix="/channels/voice")

ENDED = {"completed", "busy", "no-answer", "failed", "canceled"}  # a call's final statuses
# What an answer may carry: nothing a database column cannot keep as it came.
ANSWER_FIELDS = {"Digits": 64, "SpeechResult": 10_000, "RecordingUrl": 500}
TWIML = "application/xml"


def _field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"missing form field: {name}")
    if "\x00" in value:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name} contains a NUL character")
    return value


def _caller(rt: Runtime, form: Mapping[str, Any]) -> tuple[str, str]:
    """(call sid, keyed hash of the citizen's number). On a call ratebot placed the citizen is
    ``To``; an anonymous caller's conversation is the call's own."""
    call_sid = _field(form, "CallSid")
    _field(form, "To" if _outbound(form) else "From")
    phone = _number(form)
    return call_sid, rt.privacy.contact_hash(phone or f"call:{call_sid}")


def _outbound(form: Mapping[str, Any]) -> bool:
    return str(form.get("Direction", "inbound")).startswith("outbound")


def _number(form: Mapping[str, Any]) -> str | None:
    """The citizen's phone number on this call, if it is one (not an anonymous caller)."""
    try:
        return normalize_phone(str(form.get("To" if _outbound(form) else "From") or ""))
    except InvalidPhone:
        return None


def _renderer(
    rt: Runtime,
    turn: int,
    *,
    welcome: bool = False,
    vouchers: list[tuple[VoucherIssued, str]] | None = None,
    can_text: bool = True,
) -> Render:
    """TwiML for the engine's events, whose answer comes back as ``turn``. A voucher told in
    them is also put in ``vouchers`` (with the locale), to be sent by SMS."""
    action = f"{rt.settings.public_url}/channels/voice/answer?turn={turn}"

    def render(events: Sequence[Event], locale: str) -> str:
        if vouchers is not None:
            vouchers.extend((e, locale) for e in events if isinstance(e, VoucherIssued))
        said = [Say(ids.VOICE_WELCOME), *events] if welcome else events
        return voice.render(said, locale, action=action, style=rt.voice, can_text=can_text)

    return render


def _twiml(text: str) -> Response:
    return Response(text, media_type=TWIML)


def _busy(rt: Runtime, request: Request) -> Response:
    """The conversation stayed locked past the wait (a stuck turn): say so, and come back to the
    same URL (the same case, turn and attempt; an answer counts as none)."""
    log.warning("conversation busy; the caller is asked again")
    response = VoiceResponse()
    locale = rt.settings.default_locale
    response.say(gettext(locale, ids.ERROR_BUSY), language=voice.LANGUAGES.get(locale))
    response.redirect(public_url(request, rt.settings.public_url), method="POST")
    return _twiml(str(response))


@router.post("")
async def call_started(request: Request) -> Response:
    """A call begins: the caller hears a welcome and the first question of their case (the one
    in ``?record_no=``, else their number's pending invitation) or of an unsolicited rating."""
    rt = get_runtime(request)
    form = await twilio_form(request, rt)
    call_sid, contact_hash = _caller(rt, form)
    attempt = request.query_params.get("attempt")
    answered_by = str(form.get("AnsweredBy") or "")
    if answered_by.startswith("machine") or answered_by == "fax":
        if attempt is not None:
            await run_in_threadpool(calls.machine_answered, rt, attempt, call_sid, answered_by)
        response = VoiceResponse()
        response.hangup()
        return _twiml(str(response))
    event = InboundEvent(
        channel=voice.CHANNEL,
        sender=contact_hash,
        delivery_id=f"voice:{call_sid}:0",
        call_sid=call_sid,
    )
    vouchers: list[tuple[VoucherIssued, str]] = []
    render = _renderer(rt, 1, welcome=True, vouchers=vouchers, can_text=_number(form) is not None)
    conversations = Conversations(rt)
    record_no = request.query_params.get("record_no")
    try:
        if record_no:
            # A call ratebot placed (an attempt) is an invitation or a callback (回访); a call
            # put through with its case number, a hotline transfer.
            source = "transfer"
            if attempt is not None:
                callback = request.query_params.get("purpose") == "callback"
                source = "callback" if callback else "invitation"
            reply = await conversations.open_case(event, record_no, render, source=source)
        elif (pending := await run_in_threadpool(pending_case, rt, contact_hash)) is not None:
            reply = await conversations.open_case(event, pending, render, source="invitation")
        else:
            reply = await conversations.ask(event, render)
    except ConversationBusy:
        return _busy(rt, request)
    await _text_vouchers(rt, form, vouchers, reply.repeated)
    return _twiml(reply.text)


@router.post("/answer")
async def call_answered(request: Request) -> Response:
    """The caller answered (keys, speech, a recording) or stayed silent: the next question."""
    rt = get_runtime(request)
    form = await twilio_form(request, rt)
    try:
        turn = int(request.query_params.get("turn", ""))
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "turn must be a number") from None
    call_sid, contact_hash = _caller(rt, form)
    for name, limit in ANSWER_FIELDS.items():
        value = form.get(name)
        if isinstance(value, str) and ("\x00" in value or len(value) > limit):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                f"{name} has a NUL character or is longer than {limit} characters",
            )
    digits = str(form.get("Digits") or "")
    text, recording = _answer(rt, form, digits)
    if not (text or recording) and request.query_params.get("nothing") == "skip":
        text = voice.SKIP_KEY
    event = InboundEvent(
        channel=voice.CHANNEL,
        sender=contact_hash,
        text=text,
        recording=recording,
        delivery_id=f"voice:{call_sid}:{turn}",
        call_sid=call_sid,
    )
    vouchers: list[tuple[VoucherIssued, str]] = []
    render = _renderer(rt, turn + 1, vouchers=vouchers, can_text=_number(form) is not None)
    conversations = Conversations(rt)
    try:
        if digits == voice.REPEAT_KEY:
            reply = await conversations.ask(event, render)
        else:
            reply = await conversations.handle(event, render)
    except ConversationBusy:
        return _busy(rt, request)
    await _text_vouchers(rt, form, vouchers, reply.repeated)
    return _twiml(reply.text)


async def _text_vouchers(
    rt: Runtime,
    form: Mapping[str, Any],
    vouchers: list[tuple[VoucherIssued, str]],
    repeated: bool,
) -> None:
    """A voucher read out on the call also goes by SMS, to show at the gate — once: a retried
    request (the same TwiML again) sends nothing."""
    if repeated:
        return
    for voucher, locale in vouchers:
        await run_in_threadpool(_text_voucher, rt, form, voucher, locale)


def _text_voucher(
    rt: Runtime, form: Mapping[str, Any], voucher: VoucherIssued, locale: str
) -> None:
    """Text a voucher to the caller's number, taken from the form (it is never stored)."""
    phone = _number(form)
    if phone is None:
        return  # an anonymous caller: the code was read out, there is nowhere to text it
    delivery = rt.senders["sms"].send_text(phone, voucher_text(voucher, locale))
    with DbSession(rt.db) as db, db.begin():
        db.add(outbound_message("voucher", "sms", mask(phone), delivery, rt.clock()))


def _answer(rt: Runtime, form: Mapping[str, Any], digits: str) -> tuple[str, str | None]:
    """(text, recording URL) of an answer. Keys win over speech; speech Twilio is not sure of
    counts as no answer (the question is asked again); a recording ended by 0, or none at all
    on an optional question (``?nothing=skip``), skips it."""
    recording = form.get("RecordingUrl")
    if isinstance(recording, str) and recording:
        if digits == voice.SKIP_KEY:
            return voice.SKIP_KEY, None
        return "", recording
    if digits and digits != "hangup":
        return digits, None
    speech = str(form.get("SpeechResult") or "")
    if speech:
        try:
            confidence = float(form.get("Confidence") or 0)
        except ValueError:
            confidence = 0.0
        if confidence >= rt.settings.voice_min_confidence:
            return speech, None
        log.info("speech below the confidence floor (%.2f); asked again", confidence)
    return "", None


@router.post("/status", status_code=204)
async def call_status(request: Request) -> Response:
    """Twilio's call status callback. A call that ended mid-survey closes its conversation
    (an overall level is kept as an incomplete rating); an outbound attempt is recorded and,
    busy or unanswered, retried later."""
    rt = get_runtime(request)
    form = await twilio_form(request, rt)
    call_sid, contact_hash = _caller(rt, form)
    state = _field(form, "CallStatus")[:16]
    attempt = request.query_params.get("attempt")
    if attempt is not None:
        await run_in_threadpool(calls.record_call_status, rt, attempt, call_sid, state)
    if state in ENDED:
        event = InboundEvent(
            channel=voice.CHANNEL,
            sender=contact_hash,
            delivery_id=f"voice:{call_sid}:end",
            call_sid=call_sid,
        )
        with suppress(ConversationBusy):  # the expiry timer closes it instead
            # Hung up at "any comment?": finished, and a voucher it earned goes by SMS.
            for voucher, locale in await Conversations(rt).hang_up(event):
                await run_in_threadpool(_text_voucher, rt, form, voucher, locale)
    return Response(status_code=204)


@router.post("/transcription", status_code=204)
async def transcription(request: Request) -> Response:
    """Twilio's transcript of a recorded answer, kept beside its recording."""
    rt = get_runtime(request)
    form = await twilio_form(request, rt)
    url = _field(form, "RecordingUrl")
    if form.get("TranscriptionStatus") == "completed":
        text = str(form.get("TranscriptionText") or "").replace("\x00", "")
        if not await run_in_threadpool(_save_transcription, rt, url, text):
            log.info("a transcript for a recording no rating holds; dropped")
    return Response(status_code=204)


def _save_transcription(rt: Runtime, url: str, text: str) -> bool:
    with rt.db.begin() as db:
        return save_transcription(db, url, text)


# Built once: every call start asks it, and building it cost more than running it.
PENDING_CASE = (
    sa.select(records.c.record_no)
    .join(invitations, invitations.c.record_id == records.c.id)
    .where(
        invitations.c.contact_hash == sa.bindparam("contact_hash"),
        invitations.c.status == "sent",
        invitations.c.sent_at >= sa.bindparam("since", type_=UTCDateTime),
        ~sa.select(ratings.c.id).where(ratings.c.record_id == records.c.id).exists(),
    )
    .order_by(invitations.c.sent_at.desc())
    .limit(1)
)


def pending_case(rt: Runtime, contact_hash: str) -> str | None:
    """The case of the number's latest invitation that is still open: sent within the survey's
    expiry and not rated in any channel."""
    since = rt.clock() - timedelta(hours=rt.survey.expires_after_hours)
    with rt.db.connect() as db:
        return db.execute(PENDING_CASE, {"contact_hash": contact_hash, "since": since}).scalar()
