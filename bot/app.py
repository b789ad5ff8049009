"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import api, halls, parking, telegram, voice, voucher_page, webhooks, wechat, worker
from bot.runtime import Runtime
from bot.settings import Settings
from storage.models import utcnow

log = logging.getLogger("ratebot")
MAX_BODY_BYTES = 64 * 1024
READY_TIMEOUT = 3  # seconds for each store to answer /readyz


class BodyLimit:
    """413 for a body over ``limit`` bytes, whether it declares its length or streams it.

    FastAPI's own ``max_body_size`` answers a declared length with plain text; every error of
    this API is JSON with a ``detail``.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse(
                {"detail": f"request body larger than {self.limit} bytes"}, status_code=413
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # a chunked body that declared no length
                raise HTTPException(413, f"request body larger than {self.limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    """A new app. Settings, engines and stores are built here, not at import time."""
    settings = settings or Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime.from_settings(settings, clock=clock)
        app.state.runtime = rt
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run_forever(rt, stop)) if settings.run_worker else None
        try:
            yield
        finally:
            stop.set()
            if loop is not None:
                with suppress(asyncio.CancelledError):
                    await loop
            await rt.close()

    app = FastAPI(title="ratebot", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodyLimit)
    app.include_router(api.router)
    app.include_router(halls.router)  # its lifespan loads RATEBOT_HALLS_FILE
    app.include_router(parking.router)
    app.include_router(voucher_page.router)
    app.include_router(webhooks.router)
    app.include_router(voice.router)
    if settings.voice_audio_dir is not None:  # the deployment's recorded prompts, for <Play>
        app.mount(
            "/channels/voice/audio",
            StaticFiles(directory=settings.voice_audio_dir),
            name="voice-audio",
        )
    app.include_router(telegram.router)  # its lifespan builds and closes the bot
    app.include_router(wechat.router)  # its lifespan builds and closes the WeChat client

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(rt: api.RuntimeDep) -> Response:
        """The database and the state store answer."""
        problems = {}
        for part, check in (
            ("database", run_in_threadpool(_ping_db, rt)),
            ("state_store", rt.store.ping()),
        ):
            try:
                await asyncio.wait_for(check, timeout=READY_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - readiness reports any failure
                problems[part] = type(exc).__name__
        if problems:
            return JSONResponse({"detail": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _ping_db(rt: Runtime) -> None:
    with rt.db.connect() as connection:
        connection.execute(text("SELECT 1"))
