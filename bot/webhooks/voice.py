"""Rating by phone: Twilio Voice webhooks.

A call (inbound to the rating line, a hotline transfer with ``?record_no=``, or one ratebot
placed) starts at ``POST /channels/voice``; every answer — keys, speech or a recording — comes
back to ``POST /channels/voice/answer?turn=N``, the ``action`` of the TwiML before it. The turn
number makes Twilio's retry of one request a re-delivery (the same TwiML again) rather than a
second answer. ``POST /channels/voice/status`` ends the conversation of a call that hung up
mid-survey, and records outbound attempts; ``POST /channels/voice/transcription`` keeps
Twilio's transcript of a spoken comment.

Reading Twilio's forms and writing TwiML is ``channels.voice``'s; here are the routes and the glue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import suppress

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlmodel import Session as DbSession
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from bot.cases import calls
from bot.cases.invitations import outbound_message
from bot.cases.open_cases import invited_case
from bot.conversation.ratings import save_transcription
from bot.conversation.turn import Conversations, Render
from bot.runtime import Runtime
from bot.web.deps import get_runtime
from bot.webhooks.replies import Busy, reply_or_busy
from bot.webhooks.twilio import public_url, twilio_form
from channels import voice
from channels.base import BadRequest
from channels.voucher import voucher_text
from dialogs.events import Event, Say, VoucherIssued
from locales import ids
from storage.base import ConversationBusy
from storage.privacy import mask

log = logging.getLogger("ratebot.voice")
router = APIRouter(prefix="/channels/voice")

TWIML = "application/xml"


async def _call(request: Request, rt: Runtime) -> tuple[FormData, voice.Call]:
    """The checked form of a call's request, and who is on the call."""
    form = await twilio_form(request, rt)
    try:
        return form, voice.parse_call(form)
    except BadRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


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
        return voice.render_reply(said, locale, action=action, style=rt.voice, can_text=can_text)

    return render


def _busy(rt: Runtime, request: Request) -> Callable[[], str]:
    """The busy reply of this request: the call comes back to the same URL."""
    return lambda: voice.busy_reply(
        rt.settings.default_locale, retry_url=public_url(request, rt.settings.public_url)
    )


def _twiml(text: str) -> Response:
    return Response(text, media_type=TWIML)


@router.post("")
async def call_started(request: Request) -> Response:
    """A call begins: the caller hears a welcome and the first question of their case (the one
    in ``?record_no=``, else their number's pending invitation) or of an unsolicited rating."""
    rt = get_runtime(request)
    _, call = await _call(request, rt)
    contact_hash = rt.privacy.contact_hash(call.contact)
    attempt = request.query_params.get("attempt")
    if call.by_machine:
        if attempt is not None:
            await run_in_threadpool(calls.machine_answered, rt, attempt, call.sid, call.answered_by)
        return _twiml(voice.hang_up())
    event = voice.inbound_event(contact_hash, call.sid, 0)
    vouchers: list[tuple[VoucherIssued, str]] = []
    render = _renderer(rt, 1, welcome=True, vouchers=vouchers, can_text=call.phone is not None)
    conversations = Conversations(rt)
    record_no = request.query_params.get("record_no")
    if record_no:
        # A call ratebot placed (an attempt) is an invitation or a callback (回访); a call put
        # through with its case number, a hotline transfer.
        source = "transfer"
        if attempt is not None:
            callback = request.query_params.get("purpose") == "callback"
            source = "callback" if callback else "invitation"
        opening = conversations.open_case(event, record_no, render, source=source)
    elif (invited := await run_in_threadpool(invited_case, rt, contact_hash)) is not None:
        opening = conversations.open_case(event, invited, render, source="invitation")
    else:
        opening = conversations.ask(event, render)
    reply = await reply_or_busy(opening, _busy(rt, request), voice.CHANNEL)
    if not isinstance(reply, Busy):
        await _text_vouchers(rt, call, vouchers, reply.repeated)
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
    try:
        call = voice.parse_call(form)
        answer = voice.parse_answer(
            form,
            min_confidence=rt.settings.voice_min_confidence,
            nothing_skips=request.query_params.get("nothing") == "skip",
        )
    except BadRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    event = voice.inbound_event(rt.privacy.contact_hash(call.contact), call.sid, turn, answer)
    vouchers: list[tuple[VoucherIssued, str]] = []
    render = _renderer(rt, turn + 1, vouchers=vouchers, can_text=call.phone is not None)
    conversations = Conversations(rt)
    if answer.repeat:
        asked = conversations.ask(event, render, joining=False)
    else:
        asked = conversations.handle(event, render)
    reply = await reply_or_busy(asked, _busy(rt, request), voice.CHANNEL)
    if not isinstance(reply, Busy):
        await _text_vouchers(rt, call, vouchers, reply.repeated)
    return _twiml(reply.text)


async def _text_vouchers(
    rt: Runtime, call: voice.Call, vouchers: list[tuple[VoucherIssued, str]], repeated: bool
) -> None:
    """A voucher read out on the call also goes by SMS, to show at the gate — once: a retried
    request (the same TwiML again) sends nothing."""
    if repeated:
        return
    for voucher, locale in vouchers:
        await run_in_threadpool(_text_voucher, rt, call, voucher, locale)


def _text_voucher(rt: Runtime, call: voice.Call, voucher: VoucherIssued, locale: str) -> None:
    """Text a voucher to the caller's number, taken from the request (it is never stored)."""
    if call.phone is None:
        return  # an anonymous caller: the code was read out, there is nowhere to text it
    delivery = rt.senders["sms"].send_text(call.phone, voucher_text(voucher, locale))
    with DbSession(rt.db) as db, db.begin():
        db.add(outbound_message("voucher", "sms", mask(call.phone), delivery, rt.clock()))


@router.post("/status", status_code=204)
async def call_status(request: Request) -> Response:
    """Twilio's call status callback. A call that ended mid-survey closes its conversation
    (an overall level is kept as an incomplete rating); an outbound attempt is recorded and,
    busy or unanswered, retried later."""
    rt = get_runtime(request)
    form, call = await _call(request, rt)
    try:
        state = voice.parse_status(form)
    except BadRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    attempt = request.query_params.get("attempt")
    if attempt is not None:
        await run_in_threadpool(calls.record_call_status, rt, attempt, call.sid, state)
    if state in voice.ENDED:
        event = voice.inbound_event(rt.privacy.contact_hash(call.contact), call.sid, "end")
        with suppress(ConversationBusy):  # the expiry timer closes it instead
            # Hung up at "any comment?": finished, and a voucher it earned goes by SMS.
            for voucher, locale in await Conversations(rt).hang_up(event):
                await run_in_threadpool(_text_voucher, rt, call, voucher, locale)
    return Response(status_code=204)


@router.post("/transcription", status_code=204)
async def transcription(request: Request) -> Response:
    """Twilio's transcript of a recorded answer, kept beside its recording."""
    rt = get_runtime(request)
    form = await twilio_form(request, rt)
    try:
        url, text = voice.parse_transcription(form)
    except BadRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    if text is not None and not await run_in_threadpool(_save_transcription, rt, url, text):
        log.info("a transcript for a recording no rating holds; dropped")
    return Response(status_code=204)


def _save_transcription(rt: Runtime, url: str, text: str) -> bool:
    with rt.db.begin() as db:
        return save_transcription(db, url, text)
