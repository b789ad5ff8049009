"""The baseline for ``bench/webhook.py``: the least a Twilio SMS webhook on this stack can do.

One POST route that parses the same form (``await request.form()``), does one Redis GET and one
Redis SET (``redis.asyncio``) keyed by the sender, and answers a tiny TwiML string. No signature
check, no dialog engine, no database. It is served exactly like ``ratebot serve`` serves the real
app (uvicorn, one worker, same host/port/log-level/proxy-headers settings), so the gap between
the two is what ratebot's own work costs.

Run by hand::

    BENCH_REDIS_URL=redis://127.0.0.1:6379/14 .venv/bin/python -m bench.bare_app --port 8001
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from redis.asyncio import Redis

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Message>ok</Message></Response>'


def create_app() -> FastAPI:
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = Redis.from_url(redis_url)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/channels/sms")
    async def sms(request: Request) -> Response:
        form = await request.form()
        redis: Redis = request.app.state.redis
        key = f"bench:bare:{form.get('From')}"
        await redis.get(key)
        await redis.set(key, str(form.get("Body") or ""), px=3_600_000)
        return Response(TWIML, media_type="application/xml")

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    # The same uvicorn.run arguments as bot/cli.py's cmd_serve.
    uvicorn.run(
        "bench.bare_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
