"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from bot import version, worker
from bot.cases import routes as cases
from bot.pages import dashboard, desk, home, public, review, signin
from bot.pages import web as pages
from bot.results import export_routes, upstream_routes
from bot.results import routes as results
from bot.results.national import check_codes
from bot.results.scoring import results_rules
from bot.rewards import gate, halls, page
from bot.runtime import Runtime
from bot.settings import Settings
from bot.tickets import routes as tickets
from bot.tickets.rules import rules_for
from bot.web import outages
from bot.web.deps import RuntimeDep
from bot.web.limits import BodyLimit
from bot.webhooks import sms, telegram, voice, wechat
from storage.models import utcnow

log = logging.getLogger("ratebot")
READY_TIMEOUT = 3  # seconds for each store to answer /readyz


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
        rules_for(settings.tickets_file, settings.timezone)  # a bad tickets file stops the start
        results_rules(settings.results_file)  # so does a bad results file
        check_codes(settings.results_codes)  # a channel with no national code stops the start
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

    app = FastAPI(title="ratebot", version=version(), lifespan=lifespan)
    app.add_middleware(BodyLimit)
    # The conversation webhooks first: a request is matched against the routes in order, and a
    # citizen's turn is the hot path (the API's routes after them cost it nothing).
    app.include_router(sms.router)
    app.include_router(voice.router)
    if settings.voice_audio_dir is not None:  # the deployment's recorded prompts, for <Play>
        app.mount(
            "/channels/voice/audio",
            StaticFiles(directory=settings.voice_audio_dir),
            name="voice-audio",
        )
    app.include_router(telegram.router)  # its lifespan builds and closes the bot
    app.include_router(wechat.router)  # its lifespan builds and closes the WeChat client
    app.include_router(cases.router)
    app.include_router(results.router)
    app.include_router(upstream_routes.router)  # its lifespan checks the profile's code tables
    app.include_router(tickets.router)
    app.include_router(halls.router)  # its lifespan loads RATEBOT_HALLS_FILE
    app.include_router(gate.router)
    app.include_router(page.router)
    app.include_router(export_routes.router)
    pages.install(app)  # /static, and the pages' errors as pages (the API's stay JSON)
    outages.install(app)  # a store down: 503 with Retry-After, never a 500
    app.include_router(home.router)  # /, what this is and where to go from here
    app.include_router(signin.router)
    app.include_router(public.router)  # /results, the public results page
    app.include_router(dashboard.router)  # /dashboard, the supervisors' figures and charts
    app.include_router(desk.router)  # /desk, the departments' tickets and their acts
    app.include_router(review.router)  # /review, the reviewers' appeals and fraud flags

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(rt: RuntimeDep) -> Response:
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


def served_app() -> FastAPI:
    """The app as ``ratebot serve`` runs it, one per worker process: :func:`create_app`, then
    everything built so far (FastAPI, SQLAlchemy, pydantic, the catalogs: some 320,000 objects)
    frozen out of the garbage collector's sight. Without it every full collection walks them
    all, a 150–250 ms pause in whichever request happens to allocate past the threshold (seen
    as the slow half of the statistics reads). Tests make many apps and keep collecting."""
    app = create_app()
    gc.collect()
    gc.freeze()
    return app


def _ping_db(rt: Runtime) -> None:
    with rt.db.connect() as connection:
        connection.execute(text("SELECT 1"))
