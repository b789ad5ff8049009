"""Exports and the monthly report as HTTP downloads, for the API (``bot.results.export_routes``,
API keys) and the staff pages (``bot.pages.dashboard``, signed-in accounts) alike.

Each download is an audit entry (entity ``export``), written in its own transaction before the
first byte goes out. A CSV streams chunk by chunk; an XLSX (or the report) is written to a
temporary file, streamed, then deleted.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from bot.results import exports, national, report, report_files
from bot.results.scoring import results_rules
from bot.results.stats import Period, RankBy
from bot.runtime import Runtime
from bot.web import audit
from bot.web.audit import Actor

CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HTML = "text/html; charset=utf-8"
Format = Literal["csv", "xlsx"]
ReportFormat = Literal["html", "xlsx"]


def _audit(rt: Runtime, actor: Actor, action: str, details: dict[str, Any]) -> None:
    with rt.db.begin() as conn:
        audit.write(
            conn,
            actor,
            action,
            "export",
            0,  # an export is no one row: what it held is in ``after``
            rt.clock(),
            after=details,
        )


def _file(write: Callable[[Path], Any], suffix: str, media_type: str, filename: str) -> Any:
    """``write`` into a temporary file, answered as a download and deleted once sent."""
    handle, name = tempfile.mkstemp(prefix="ratebot-export-", suffix=suffix)
    os.close(handle)
    path = Path(name)
    try:
        write(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


def sheet_download(
    rt: Runtime,
    actor: Actor,
    scope: exports.Scope,
    *,
    what: Literal["ratings", "tickets"],
    fmt: Format,
    locale: str,
    layout: exports.Layout = "standard",
) -> Any:
    """The ratings or tickets of ``scope`` (its range checked by the caller) as a CSV or XLSX
    download, headed in ``locale``."""
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
        "format": fmt,
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
    _audit(rt, actor, f"export_{what}", details)
    filename = f"{what}-{scope.first}-{scope.last}"
    if fmt == "csv":
        return StreamingResponse(
            exports.csv_chunks(sheet),
            media_type=CSV,
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    return _file(lambda path: exports.write_xlsx(sheet, path), ".xlsx", XLSX, f"{filename}.xlsx")


def report_download(
    rt: Runtime, actor: Actor, period: Period, *, by: RankBy, fmt: ReportFormat, locale: str
) -> Any:
    """The monthly report of ``period`` (a month: ``report.month``), as ``ratebot report``
    writes it, as an HTML or XLSX download."""
    with rt.db.connect() as conn:
        month_report = report.monthly_report(
            conn,
            period=period,
            by=by,
            rules=results_rules(rt.settings.results_file),
            zone=rt.settings.timezone,
            now=rt.clock(),
        )
    details = {"format": fmt, "period": period.label, "by": by, "locale": locale}
    _audit(rt, actor, "export_report", details)
    return _file(
        lambda path: report_files.write(month_report, path, locale),
        f".{fmt}",
        HTML if fmt == "html" else XLSX,
        f"report-{period.label}-{by}.{fmt}",
    )
