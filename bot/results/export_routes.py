"""Exports over HTTP: ``GET /api/v1/exports/{ratings,tickets}.{csv,xlsx}``.

A period of local days (``from``, ``to``, both included, at most 400 days) and the filters; a
department key gets its own departments only (another's: 403). The language of the headers is
``lang``, else ``Accept-Language``, else ``RATEBOT_DEFAULT_LOCALE``. Each export is an audit
entry (entity ``export``), written in its own transaction before the first row goes out.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

import locales
from bot.results import exports, national
from bot.runtime import Runtime
from bot.web import audit
from bot.web.audit import Actor
from bot.web.auth import require_actor
from bot.web.deps import RuntimeDep

router = APIRouter(prefix="/api/v1/exports")

MAX_DAYS = 400
# The roles that see every department; a department key sees its own (as for tickets).
CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

Staff = Annotated[Actor, require_actor("department", "supervisor", "reviewer")]
Name = Annotated[str | None, Query(min_length=1, max_length=100)]
From = Annotated[date, Query(alias="from", description="the first local day")]
To = Annotated[date, Query(description="the last local day (included)")]
Lang = Annotated[str | None, Query(max_length=35, description="zh_Hans_CN, zh_Hant_TW or en")]
Format = Literal["csv", "xlsx"]


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


def period(first: date, last: date) -> None:
    if first > last:
        raise HTTPException(422, f"from ({first}) is after to ({last})")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise HTTPException(422, f"the period is {days} days; at most {MAX_DAYS} at once")


def _audit(rt: Runtime, actor: Actor, what: str, fmt: Format, details: dict[str, Any]) -> None:
    with rt.db.begin() as conn:
        audit.write(
            conn,
            actor,
            f"export_{what}",
            "export",
            0,  # an export is no one row: what it held is in ``after``
            rt.clock(),
            after={"format": fmt, **details},
        )


def _respond(sheet: exports.Sheet, fmt: Format, filename: str) -> Any:
    if fmt == "csv":
        return StreamingResponse(
            exports.csv_chunks(sheet),
            media_type=CSV,
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    handle, name = tempfile.mkstemp(prefix="ratebot-export-", suffix=".xlsx")
    os.close(handle)
    path = Path(name)
    try:
        exports.write_xlsx(sheet, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type=XLSX,
        filename=f"{filename}.xlsx",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


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
    period(scope.first, scope.last)
    locale = caller_locale(request, lang, rt.settings.default_locale)
    if what == "ratings":
        sheet = exports.ratings_sheet(
            rt.db,
            scope,
            locale=locale,
            survey=rt.survey,
            layout=layout,
            codes=national.load_codes(rt.settings.results_codes),
        )
    else:
        sheet = exports.tickets_sheet(rt.db, scope, locale=locale, survey=rt.survey)
    details = {
        "from": scope.first,
        "to": scope.last,
        "departments": None if scope.departments is None else sorted(scope.departments),
        "district": scope.district,
        "hall": scope.hall,
        "item_code": scope.item_code,
        "channel": scope.channel,
        "state": scope.state,
        "layout": layout,
        "locale": locale,
    }
    _audit(rt, actor, what, fmt, details)
    return _respond(sheet, fmt, f"{what}-{scope.first}-{scope.last}")


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
