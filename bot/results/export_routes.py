"""Exports over HTTP: ``GET /api/v1/exports/{ratings,tickets}.{csv,xlsx}``.

A period of local days (``from``, ``to``, both included, at most 400 days) and the filters; a
department key gets its own departments only (another's: 403). The language of the headers is
``lang``, else ``Accept-Language``, else ``RATEBOT_DEFAULT_LOCALE``. Each export is an audit
entry (entity ``export``), written in its own transaction before the first row goes out
(``bot.results.downloads``, which the staff pages' download buttons call too).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

import locales
from bot.results import downloads, exports
from bot.results.stats import BadPeriod, check_range
from bot.runtime import Runtime
from bot.web.audit import Actor
from bot.web.auth import require_actor
from bot.web.deps import RuntimeDep
from bot.web.problems import API_ERRORS

router = APIRouter(prefix="/api/v1/exports", responses=API_ERRORS)

Staff = Annotated[Actor, require_actor("department", "supervisor", "reviewer")]
Name = Annotated[str | None, Query(min_length=1, max_length=100)]
From = Annotated[date, Query(alias="from", description="the first local day")]
To = Annotated[date, Query(description="the last local day (included)")]
Lang = Annotated[str | None, Query(max_length=35, description="zh_Hans_CN, zh_Hant_TW or en")]
Format = downloads.Format


def caller_locale(request: Request, lang: str | None, default: str) -> str:
    """``lang`` (422 if it is no shipped language), else the first language of
    ``Accept-Language`` (by its q-values) that ratebot speaks, else ``default``."""
    if lang is not None:
        chosen = locales.normalize_locale(lang, default="")
        if not chosen:
            raise HTTPException(422, f"lang must be one of {', '.join(locales.LOCALES)}")
        return chosen
    weighted = []
    for n, part in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and q > 0:
            weighted.append((-q, n, tag))
    for _, _, tag in sorted(weighted):
        chosen = locales.normalize_locale(tag, default="")
        if chosen:
            return chosen
    return default


def departments_seen(actor: Actor, department: str | None) -> frozenset[str] | None:
    """The departments whose rows ``actor`` gets (``None``: all): the one asked for, if the
    actor may see it (403 if not), else all the actor sees."""
    seen = actor.departments_seen
    if seen is None:
        return None if department is None else frozenset({department})
    if department is None:
        return seen
    if department not in seen:
        raise HTTPException(403, "this key may not export another department's data")
    return frozenset({department})


def _export(
    rt: Runtime,
    actor: Actor,
    request: Request,
    scope: exports.Scope,
    *,
    what: Literal["ratings", "tickets"],
    fmt: Format,
    lang: str | None,
    layout: exports.Layout = "standard",
) -> Any:
    try:
        check_range(scope.first, scope.last)
    except BadPeriod as exc:
        raise HTTPException(422, str(exc)) from exc
    locale = caller_locale(request, lang, rt.settings.default_locale)
    return downloads.sheet_download(
        rt, actor, scope, what=what, fmt=fmt, locale=locale, layout=layout
    )


@router.get("/ratings.{fmt}", response_class=StreamingResponse)
def export_ratings(
    rt: RuntimeDep,
    actor: Staff,
    request: Request,
    fmt: Format,
    first: From,
    to: To,
    department: Name = None,
    district: Name = None,
    hall: Name = None,
    item_code: Name = None,
    channel: Annotated[str | None, Query(max_length=16)] = None,
    layout: exports.Layout = "standard",
    lang: Lang = None,
) -> Any:
    """The ratings submitted from ``from`` to ``to`` (local days), oldest first;
    ``layout=national``: GB/T 39046 table 9."""
    scope = exports.Scope(
        first,
        to,
        rt.settings.timezone,
        departments=departments_seen(actor, department),
        district=district,
        hall=hall,
        item_code=item_code,
        channel=channel,
    )
    return _export(rt, actor, request, scope, what="ratings", fmt=fmt, lang=lang, layout=layout)


@router.get("/tickets.{fmt}", response_class=StreamingResponse)
def export_tickets(
    rt: RuntimeDep,
    actor: Staff,
    request: Request,
    fmt: Format,
    first: From,
    to: To,
    department: Name = None,
    district: Name = None,
    hall: Name = None,
    item_code: Name = None,
    state: Literal["open", "acknowledged", "responded", "appealed", "closed"] | None = None,
    lang: Lang = None,
) -> Any:
    """The tickets opened from ``from`` to ``to`` (local days), oldest first, with their bad
    review."""
    scope = exports.Scope(
        first,
        to,
        rt.settings.timezone,
        departments=departments_seen(actor, department),
        district=district,
        hall=hall,
        item_code=item_code,
        state=state,
    )
    return _export(rt, actor, request, scope, what="tickets", fmt=fmt, lang=lang)
