"""The SMS webhooks (Twilio Messaging): inbound messages answered in TwiML, and delivery reports."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool

from bot.cases.invitations import record_delivery_status
from bot.conversation.turn import Conversations
from bot.web.deps import RuntimeDep, get_runtime
from bot.webhooks.replies import reply_or_busy
from bot.webhooks.twilio import twilio_form
from channels import sms
from channels.base import BadRequest

router = APIRouter(prefix="/channels")


@router.post("/sms")
async def sms_webhook(request: Request) -> Response:
    """Twilio Messaging: one inbound SMS → TwiML with the reply."""
    rt = get_runtime(request)  # not a Depends: dependency solving is a visible cost per turn
    form = await twilio_form(request, rt)
    try:
        sender, text, message_sid = sms.parse(form)
    except BadRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    locale = rt.settings.default_locale
    event = sms.inbound_event(rt.privacy.contact_hash(sender), text, message_sid, locale)
    reply = await reply_or_busy(
        Conversations(rt).handle(event, sms.render_reply),
        lambda: sms.busy_reply(locale),
        sms.CHANNEL,
    )
    # A retried delivery gets the same TwiML again.
    return Response(reply.text, media_type="application/xml")


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
