"""Limits on what a client may send: body size, text a column can keep as it came, times as the
schema documents them."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BeforeValidator, StringConstraints
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024  # any route's body, but those below
# The whole list of staff contacts: up to 10,000 of each kind (bot/tickets/routes.py).
ROUTE_BODY_BYTES = {"/api/v1/staff-contacts": 2 * 1024 * 1024}
# Browsers send about 15, Twilio and WeChat fewer: a hundred is no honest client's (uvicorn's h11
# bounds their total size too, to 16 KiB).
MAX_HEADERS = 100
# What `ratebot serve` gives uvicorn, so that slow or idle clients cannot hold a worker: a kept
# alive connection closes after 5 s without a request; a request's line and headers may be at
# most 16 KiB (h11); a worker takes at most 500 connections and tasks at once and answers 503
# beyond (a slow client holds a connection, never the event loop); stopping waits 10 s for the
# requests under way. Reading a body slowly is not timed by uvicorn: a proxy in front does
# that (docs/reliability.md).
SERVER_LIMITS: dict[str, Any] = {
    "timeout_keep_alive": 5,
    "h11_max_incomplete_event_size": 16 * 1024,
    "limit_concurrency": 500,
    "timeout_graceful_shutdown": 10,
}

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Line = Annotated[Text, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]+$")]  # no control characters
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _iso_time(value: Any) -> Any:
    """pydantic also reads a number as seconds since 1970 (``?to=-3e-126`` was 1970-01-01); the
    schema says an ISO 8601 time with its offset, and that is all a time may be."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("a time in ISO 8601 with its offset, such as 2026-11-27T09:30:00+08:00")
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_iso_time)]


def refuse_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL: refuse it with a reason instead of failing to store it."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


class BodyLimit:
    """413 for a body over its route's limit (``ROUTE_BODY_BYTES``, else ``limit`` bytes), whether
    it declares its length or streams it; 431 for more than ``MAX_HEADERS`` headers.

    FastAPI's own ``max_body_size`` answers a declared length with plain text; every error of
    this API is JSON with a ``detail``.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope["headers"]) > MAX_HEADERS:
            response = JSONResponse({"detail": f"more than {MAX_HEADERS} headers"}, 431)
            await response(scope, receive, send)
            return
        limit = ROUTE_BODY_BYTES.get(scope["path"], self.limit)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = JSONResponse(
                {"detail": f"request body larger than {limit} bytes"}, status_code=413
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # a chunked body that declared no length
                raise HTTPException(413, f"request body larger than {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)
