"""A request the API cannot read answers like every other error of the API: ``{"detail": "<one
readable sentence>"}`` — not FastAPI's list of pydantic errors. Malformed JSON says where it
broke (422); a body that is not declared JSON names the ``Content-Type`` header (415); a field,
query parameter or header that does not validate is named with pydantic's reason (422)."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import Message
from typing import Any

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

JSON = "application/json"
WHERE = {"query": "query parameter ", "header": "header ", "path": "path ", "cookie": "cookie "}


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters aside."""
    if not content_type:
        return False
    header = Message()
    header["content-type"] = content_type
    subtype = header.get_content_subtype()
    return header.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _where(loc: Sequence[Any]) -> str:
    source, *path = loc
    name = ".".join(str(part) for part in path)
    if source == "body":
        return name or "the body"
    return f"{WHERE.get(str(source), '')}{name}"


def invalid_detail(request: Request, exc: RequestValidationError) -> tuple[int, str]:
    """The status and the sentence for a request that did not validate."""
    errors = exc.errors()
    for error in errors:
        if error["type"] == "json_invalid":
            reason = error.get("ctx", {}).get("error", "malformed")
            return (
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"the body is not valid JSON: {reason} (at character {error['loc'][-1]})",
            )
    whole_body = [error for error in errors if tuple(error["loc"]) == ("body",)]
    content_type = request.headers.get("content-type")
    if whole_body and not is_json(content_type):
        # FastAPI reads a body as JSON only when the header says so; otherwise the model was
        # given the raw bytes, and pydantic's "a valid dictionary" would never name the header.
        got = f"Content-Type: {content_type}" if content_type else "no Content-Type header"
        return (
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send the body as JSON with the header Content-Type: {JSON} (this request has {got})",
        )
    if any(error["type"] == "missing" for error in whole_body):
        return status.HTTP_422_UNPROCESSABLE_CONTENT, "the request needs a JSON body"
    problems = [f"{_where(error['loc'])}: {error['msg']}" for error in errors]
    return status.HTTP_422_UNPROCESSABLE_CONTENT, "; ".join(problems)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    status_code, detail = invalid_detail(request, exc)
    return JSONResponse({"detail": detail}, status_code=status_code)
