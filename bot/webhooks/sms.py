"""The SMS webhooks (Twilio Messaging): inbound messages answered in TwiML, and delivery reports."""

from __future__ import annotations

import logging
from contextlib import suppress

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool

from bot.cases.invitations import record_delivery_status
from bot.conversation.turn import Conversations
from bot.web.deps import RuntimeDep, get_runtime
from bot.webhooks.twilio import twilio_form
from channels import sms
from locales import gettext, ids
from storage.base import ConversationBusy
from storage.privacy import InvalidPhone, normalize_phone

log = logging.getLogger("ratebot.webhooks")
router = APIRouter(prefix="/channels")


@router.post("/sms")
async def sms_webhook(request: Request) -> Response:
    """Twilio Messaging: one inbound SMS → TwiML with the reply."""
    rt = get_runtime(request)  # not a Depends: dependency solving is a visible cost per turn
    settings = rt.settings
    form = await twilio_form(request, rt)
    try:
        sender, text, message_sid = sms.parse_inbound(form)
    except sms.BadSmsRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    with suppress(InvalidPhone):  # short codes and alphanumeric senders are hashed as they come
        sender = normalize_phone(sender)
    event = sms.inbound_event(
        rt.privacy.contact_hash(sender), text, message_sid, settings.default_locale
    )
    try:
        answer = await Conversations(rt).handle(
            event, lambda events, locale: sms.twiml(sms.render_text(events, locale))
        )
        reply = answer.text  # a retried delivery gets the same TwiML again
    except ConversationBusy:
        # The conversation stayed locked past the wait (a stuck turn): ask the citizen to send
        # it again. Nothing was written or remembered, so the resend is handled as new.
        log.warning("conversation busy; asked the citizen to resend")
        reply = sms.twiml(gettext(settings.default_locale, ids.ERROR_BUSY))
    return Response(reply, media_type="application/xml")


@router.post("/sms/status", status_code=204)
async def sms_status(request: Request, rt: RuntimeDep) -> Response:
    """Twilio's delivery report for a message ratebot sent (queued → sent → delivered | failed)."""
    form = await twilio_form(request, rt)
    sid, state = form.get("MessageSid"), form.get("MessageStatus")
    if not isinstance(sid, str) or not isinstance(state, str) or not sid or not state:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "missing form field(s): MessageSid, MessageStatus"
        )
    error = form.get("ErrorCode")
    await run_in_threadpool(
        record_delivery_status, rt, sid, state[:32], str(error)[:255] if error else None
    )
    return Response(status_code=204)
