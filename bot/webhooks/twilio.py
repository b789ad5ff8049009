"""What Twilio's webhooks (SMS and voice) share: the URL Twilio signed and the checked form."""

from __future__ import annotations

from typing import cast
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request, status
from starlette.datastructures import FormData, UploadFile

from bot.runtime import Runtime
from channels.twilio import signature_is_valid

FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 1000  # Twilio sends about 20; as many as Starlette's own form parser allows


def public_url(request: Request, base: str) -> str:
    """The URL the provider called, as it saw it: ``RATEBOT_PUBLIC_URL`` + path + query (read
    from the ASGI scope: building ``request.url`` costs more than the rest of this)."""
    query = request.scope["query_string"]
    path: str = request.scope["path"]
    return base + path + (f"?{query.decode('latin-1')}" if query else "")


async def twilio_form(request: Request, rt: Runtime) -> FormData:
    """A Twilio webhook's form, once its signature is checked (404 when Twilio is not set up).
    The body is parsed once, with the standard library's URL-encoded parser (a quarter of the
    cost of Starlette's streaming form parser, which a few kilobytes do not need)."""
    token = rt.settings.twilio_auth_token
    if not token:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "SMS is not configured (RATEBOT_TWILIO_AUTH_TOKEN)"
        )
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"expected a {FORM} body")
    body = await request.body()
    try:
        fields = parse_qsl(
            body.decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict"
        )
    except UnicodeDecodeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the form is not UTF-8") from exc
    except ValueError as exc:  # more fields than MAX_FIELDS
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"more than {MAX_FIELDS} form fields"
        ) from exc
    form = FormData(cast("list[tuple[str, str | UploadFile]]", fields))  # text fields only
    signature = request.headers.get("x-twilio-signature", "")
    if not signature_is_valid(token, public_url(request, rt.settings.public_url), form, signature):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Twilio-Signature")
    return form
