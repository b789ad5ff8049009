"""``GET /``: what this service is, its version, and where to go from here — the API's
reference, the health check, the staff pages and the public results. A JSON client (``Accept:
application/json``) gets the same as a small JSON object."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bot import version
from bot.pages.web import Visitor, render

router = APIRouter()

# What a newcomer looks for first; the staff pages send whoever is not signed in to /login.
LINKS = {
    "docs": "/docs",
    "health": "/healthz",
    "ready": "/readyz",
    "login": "/login",
    "desk": "/desk",
    "review": "/review",
    "dashboard": "/dashboard",
    "results": "/results",
}


def service_facts() -> dict[str, Any]:
    return {"service": "ratebot", "version": version(), "links": LINKS}


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


@router.get("/", include_in_schema=False)
def home(request: Request, visitor: Visitor) -> Response:
    """The front page (or, for a JSON client, its facts)."""
    facts = service_facts()
    if _wants_json(request):
        return JSONResponse(facts)
    return render(request, "home.html", facts, headers={"Vary": "Accept"})
