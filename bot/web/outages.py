"""What a request answers while a store it needs is down: ``503`` with ``Retry-After``.

One place for every route. A webhook's turn that cannot reach Redis (the conversation store) or
PostgreSQL (the records) has written nothing the citizen's next message depends on — the turn's
database transaction rolls back, and the session is only written after it commits — so the
provider's retry (Twilio, WeChat and Telegram retry a 5xx) is handled afresh once the store is
back. The API answers the same status with the reason, so a client backs off instead of
reporting a bug; ``/readyz`` says which store is down (``bot/app.py``).
"""

from __future__ import annotations

import inspect
import logging

from fastapi import FastAPI, Request, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

log = logging.getLogger("ratebot.outages")

RETRY_AFTER = 5  # seconds: a restarted store is usually back within that; providers retry later
STATE_STORE = "state_store"
DATABASE = "database"
# The errors that mean "the store did not answer", with the part of /readyz they concern. A
# database error that is not about the connection (a constraint, a bad query) is not here: it is
# a bug, and stays a 500.
UNAVAILABLE: dict[type[Exception], str] = {
    RedisConnectionError: STATE_STORE,  # refused, reset, still loading its data after a restart
    RedisTimeoutError: STATE_STORE,  # no answer within the client's socket timeout
    OperationalError: DATABASE,  # refused, terminated, failed over
    InterfaceError: DATABASE,  # the connection was closed under the driver
    PoolTimeout: DATABASE,  # every connection of the pool busy past its timeout
}


def install(app: FastAPI) -> None:
    """Answer the errors of :data:`UNAVAILABLE` with 503, as the app answers an HTTP error (JSON
    for the API and the webhooks, an error page for a person's page)."""

    async def unavailable(request: Request, exc: Exception) -> Response:
        part = next(p for kind, p in UNAVAILABLE.items() if isinstance(exc, kind))
        log.warning(
            "%s unavailable on %s %s: %s",
            part,
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        http_error = HTTPException(
            503, f"{part} unavailable", headers={"Retry-After": str(RETRY_AFTER)}
        )
        answered = app.exception_handlers[HTTPException](request, http_error)
        response = await answered if inspect.isawaitable(answered) else answered
        assert isinstance(response, Response)
        response.headers["Retry-After"] = str(RETRY_AFTER)  # an error page keeps it too
        return response

    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, unavailable)
