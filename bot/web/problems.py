"""The errors of the API as its OpenAPI schema documents them: every one is JSON with a
``detail``, the reason in words (a request that fails validation too: bot/web/invalid.py makes
FastAPI's list of errors one sentence). The fuzz test (``tests/bot/web/test_fuzz_api.py``)
holds every answer to the schema, so an error a route answers must be listed here for it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

WHY = {
    400: "The request body cannot be read",
    401: "No API key, or an unknown or revoked one",
    403: "The key's role, halls or departments do not allow this",
    404: "No such thing",
    409: "Not in a state that allows this",
    413: "The request body is too large",
    415: "The body is not sent as JSON (`Content-Type: application/json`)",
    422: "The request is not valid (what is wrong: `detail`)",
    429: "Too many attempts: wait `Retry-After` seconds",
    502: "The provider did not answer as it should",
    503: "A store is unavailable: retry after `Retry-After` seconds",
}


class Problem(BaseModel):
    """An error's body."""

    detail: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route (or router) that may answer ``codes``."""
    return {code: {"model": Problem, "description": WHY[code]} for code in codes}


# What any route of the API may answer: a body that cannot be read, is over the limit or is not
# JSON, a key refused, a request that is not valid, a store down.
API_ERRORS = errors(400, 401, 403, 413, 415, 422, 503)
