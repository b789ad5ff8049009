"""Provider webhooks: each checks the provider's signature, turns the request into an
InboundEvent, and answers in the provider's own format."""

from __future__ import annotations

import logging
from contextlib import suppress

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from bot.api import RuntimeDep, get_runtime
from bot.conversation import Conversations
from bot.invitations import record_delivery_status
from bot.privacy import InvalidPhone, normalize_phone
from bot.runtime import Runtime
from channels import sms
from channels.twilio import signature_is_valid
from locales import gettext, ids
from storage.base import ConversationBusy

log = logging.getLogger("ratebot.webhooks")
router = APIRouter(prefix="/channels")
FORM = "application/x-www-form-urlencoded"


def public_url(request: Request, base: str) -> str:
    """The URL the provider called, as it saw it: ``RATEBOT_PUBLIC_URL`` + path + query."""
    query = request.url.query
    return base + request.url.path + (f"?{query}" if query else "")


async def twilio_form(request: Request, rt: Runtime) -> FormData:
    """A Twilio webhook's form, once its signature is checked (404 when Twilio is not set up)."""
    token = rt.settings.twilio_auth_token
    if not token:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "SMS is not configured (RATEBOT_TWILIO_AUTH_TOKEN)"
        )
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"expected a {FORM} body")
    form = await request.form()
    signature = request.headers.get("x-twilio-signature", "")
    if not signature_is_valid(token, public_url(request, rt.settings.public_url), form, signature):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Twilio-Signature")
    return form


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
