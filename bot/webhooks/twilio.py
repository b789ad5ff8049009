"""What Twilio's webhooks (SMS and voice) share: the URL Twilio signed and the checked form."""

from __future__ import annotations

from fastapi import HTTPException, Request, status
from starlette.datastructures import FormData

from bot.runtime import Runtime
from channels.twilio import signature_is_valid

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
