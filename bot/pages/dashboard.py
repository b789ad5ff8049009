"""The supervisor dashboard, ``GET /dashboard``: a period's figures and charts for a district.

A period is a month (``2026-11``, the default: this month), a quarter (``2026Q4``) or a year
(``2026``), as ``bot.results.stats.Period`` reads it; a district is one of those that have figures
in it (default: all). Every number is one the JSON API gives for the same filters, computed by
the same functions:

- the headline figures — ratings counted, 好评率, 差评率, bad reviews answered on time — are
  ``stats.group_stats(group_by="total")`` (``GET /api/v1/stats?group_by=total``); 好评率 by day
  is ``group_by=day``;
- the rankings are ``stats.ranking`` (``GET /api/v1/rankings``); the windows of a chosen hall
  are the rows of the window ranking whose key is in that hall, with their ranks among all
  windows;
- tickets by state, overdue now by department and the appeals upheld are
  ``bot.tickets.figures.ticket_figures`` (``GET /api/v1/stats/tickets``).

Each figure but "overdue now" (a count at this moment) is shown beside its change against the
previous period. The download buttons give the exports (``/dashboard/exports/…``) and the monthly
report (``/dashboard/report.…``) through ``bot.results.downloads``, which the API's exports use:
audited as the signed-in account.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from bot.pages import charts
from bot.pages.web import PageError, page_locale, page_user, render
from bot.results import downloads, exports, report
from bot.results.counting import local_day
from bot.results.report_files import NOT_A_NUMBER
from bot.results.scoring import ResultsRules, bottom, results_rules
from bot.results.stats import BadPeriod, Period, Scope, group_stats, ranking
from bot.runtime import Runtime
from bot.tickets.figures import TicketFigures, Where, ticket_figures
from bot.web.audit import Actor
from bot.web.deps import RuntimeDep
from locales import N_, gettext

router = APIRouter()

Supervisor = Annotated[Actor, page_user("supervisor")]
PeriodText = Annotated[str | None, Query(max_length=16)]
Name = Annotated[str | None, Query(max_length=100)]

BAD_PERIOD = N_("page.dashboard.bad_period")
FIGURES = {  # the headline figures, in the page's order
    "counted": N_("page.dashboard.figure.counted"),
    "good_rate": N_("page.dashboard.figure.good_rate"),
    "bad_rate": N_("page.dashboard.figure.bad_rate"),
    "on_time_rate": N_("page.dashboard.figure.on_time_rate"),
    "overdue": N_("page.dashboard.figure.overdue"),
    "appeals_upheld": N_("page.dashboard.figure.appeals_upheld"),
}
RATES = frozenset({"good_rate", "bad_rate", "on_time_rate"})
DEPARTMENTS_TITLE = N_("chart.departments.title")
WINDOWS_TITLE = N_("chart.windows.title")


@dataclass(frozen=True)
class Headline:
    """One headline figure: its value now and in the previous period (``None``: nothing to
    divide by, or — for "overdue now" — no previous value)."""

    name: str
    value: float | int | None
    previous: float | int | None

    @property
    def change(self) -> float | int | None:
        if self.value is None or self.previous is None:
            return None
        change = self.value - self.previous
        return round(change, 2) if isinstance(change, float) else change


@dataclass(frozen=True)
class Figures:
    """What the dashboard shows for a period and a district, as the API computes it."""

    period: Period
    district: str | None
    hall: str | None
    districts: list[str]
    halls: list[str]
    total: dict[str, Any] | None  # the ``total`` group; None: no rating counted
    previous: dict[str, Any] | None
    days: list[dict[str, Any]]
    departments: dict[str, Any]  # stats.ranking by department
    windows: list[dict[str, Any]]  # the chosen hall's rows of the window ranking
    window_bottom: set[str]
    tickets: TicketFigures
    tickets_before: TicketFigures
    bottom_n: int

    def headlines(self) -> list[Headline]:
        now, before = self.total or {}, self.previous or {}

        def nought(name: str) -> int | None:  # no rating counted: a count of 0, no rate
            return 0 if name == "counted" else None

        found = [
            Headline(name, now.get(name, nought(name)), before.get(name, nought(name)))
            for name in ("counted", "good_rate", "bad_rate", "on_time_rate")
        ]
        found.append(Headline("overdue", self.tickets.overdue, None))
        found.append(
            Headline(
                "appeals_upheld",
                self.tickets.appeals_decided["upheld"],
                self.tickets_before.appeals_decided["upheld"],
            )
        )
        return found

    @property
    def department_bottom(self) -> set[str]:
        ranks = {row["key"]: row["rank"] for row in self.departments["ranked"]}
        return bottom(ranks, self.bottom_n)


def _total(conn: sa.Connection, period: Period, district: str | None) -> dict[str, Any] | None:
    found = group_stats(conn, "total", period.first, period.last, Scope(district=district))
    return found[0] if found else None


def dashboard_figures(
    conn: sa.Connection,
    actor: Actor,
    period: Period,
    *,
    district: str | None,
    hall: str | None,
    rules: ResultsRules,
    zone: str,
    now: datetime,
) -> Figures:
    """The period's figures for ``district`` (None: all) and the windows of ``hall``."""
    scope = Scope(district=district)
    previous = period.previous()
    districts = [
        g["key"] for g in group_stats(conn, "district", period.first, period.last, Scope())
    ]
    halls = [g["key"] for g in group_stats(conn, "hall", period.first, period.last, scope)]
    windows: list[dict[str, Any]] = []
    window_bottom: set[str] = set()
    if hall is not None:
        window_ranking = ranking(conn, "window", period, rules, district=district)
        windows = [r for r in window_ranking["ranked"] if r["key"].startswith(f"{hall}/")]
        ranks = {row["key"]: row["rank"] for row in window_ranking["ranked"]}
        window_bottom = bottom(ranks, rules.bottom) & {r["key"] for r in windows}
    where = Where(actor, district=district)
    return Figures(
        period=period,
        district=district,
        hall=hall,
        districts=sorted(set(districts) | ({district} if district else set())),
        halls=sorted(set(halls) | ({hall} if hall else set())),
        total=_total(conn, period, district),
        previous=_total(conn, previous, district),
        days=group_stats(conn, "day", period.first, period.last, scope),
        departments=ranking(conn, "department", period, rules, district=district),
        windows=windows,
        window_bottom=window_bottom,
        tickets=ticket_figures(conn, where, period.first, period.last, zone=zone, now=now),
        tickets_before=ticket_figures(
            conn, where, previous.first, previous.last, zone=zone, now=now
        ),
        bottom_n=rules.bottom,
    )


def _charts(figures: Figures, say: Callable[..., str]) -> list[charts.Chart]:
    found = [
        charts.good_rate_by_day(figures.days, figures.period.first, figures.period.last, say),
        charts.levels_histogram((figures.total or {}).get("levels", {}), say),
        charts.ranking_bars(
            "chart-departments",
            say(DEPARTMENTS_TITLE),
            figures.departments["ranked"],
            figures.department_bottom,
            say,
        ),
    ]
    if figures.hall is not None:
        found.append(
            charts.ranking_bars(
                "chart-windows",
                say(WINDOWS_TITLE, hall=figures.hall),
                figures.windows,
                figures.window_bottom,
                say,
            )
        )
    found.append(charts.tickets_by_state(figures.tickets.opened_by_state, say))
    found.append(charts.overdue_by_department(figures.tickets.overdue_by_department, say))
    return found


def _shown(value: float | int | None, name: str, say: Callable[..., str], *, sign: bool) -> str:
    if value is None:
        return NOT_A_NUMBER
    if name in RATES:
        return f"{value:+.2f}" if sign else f"{value:.2f}%"
    return f"{value:+d}" if sign and value else str(value)


def _period(rt: Runtime, text: str | None) -> Period:
    if text is None:
        today = local_day(rt.clock(), rt.settings.timezone)
        text = f"{today.year}-{today.month:02d}"
    try:
        return Period.parse(text.strip())
    except BadPeriod as exc:
        raise PageError(422, BAD_PERIOD, period=text, reason=str(exc)) from exc


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    rt: RuntimeDep,
    actor: Supervisor,
    period: PeriodText = None,
    district: Name = None,
    hall: Name = None,
) -> HTMLResponse:
    chosen = _period(rt, period)
    district, hall = district or None, hall or None  # the selects' "all" is an empty value
    locale = page_locale(request)

    def gather() -> Figures:
        with rt.db.connect() as conn:
            return dashboard_figures(
                conn,
                actor,
                chosen,
                district=district,
                hall=hall,
                rules=results_rules(rt.settings.results_file),
                zone=rt.settings.timezone,
                now=rt.clock(),
            )

    figures = await run_in_threadpool(gather)

    def say(message_id: str, **params: Any) -> str:
        return gettext(locale, message_id, **params)

    headlines = [
        {
            "name": h.name,
            "label": say(FIGURES[h.name]),
            "value": _shown(h.value, h.name, say, sign=False),
            "change": _shown(h.change, h.name, say, sign=True),
        }
        for h in figures.headlines()
    ]
    return render(
        request,
        "dashboard.html",
        {
            "figures": figures,
            "headlines": headlines,
            "charts": _charts(figures, say),
            "downloads": _download_query(figures),
            "report_month": _is_month(chosen),
        },
    )


def _download_query(figures: Figures) -> str:
    query = {"period": figures.period.label}
    if figures.district:
        query["district"] = figures.district
    return urlencode(query)


def _is_month(period: Period) -> bool:
    return (period.first.year, period.first.month) == (period.last.year, period.last.month)


# --- downloads ------------------------------------------------------------------------------


@router.get("/dashboard/exports/{what}.{fmt}")
def dashboard_export(
    request: Request,
    rt: RuntimeDep,
    actor: Supervisor,
    what: Literal["ratings", "tickets"],
    fmt: downloads.Format,
    period: PeriodText = None,
    district: Name = None,
) -> Any:
    """The period's ratings or tickets (of the district), as the API's exports give them."""
    chosen = _period(rt, period)
    scope = exports.Scope(
        chosen.first,
        chosen.last,
        rt.settings.timezone,
        departments=actor.departments_seen,
        district=district or None,
    )
    return downloads.sheet_download(
        rt, actor, scope, what=what, fmt=fmt, locale=page_locale(request)
    )


@router.get("/dashboard/report.{fmt}")
def dashboard_report(
    request: Request,
    rt: RuntimeDep,
    actor: Supervisor,
    fmt: downloads.ReportFormat,
    period: PeriodText = None,
) -> Any:
    """The month's report (``ratebot report``), ranked by department."""
    chosen = _period(rt, period)
    try:
        month = report.month(chosen.label)
    except BadPeriod as exc:
        raise PageError(422, BAD_PERIOD, period=chosen.label, reason=str(exc)) from exc
    return downloads.report_download(
        rt, actor, month, by="department", fmt=fmt, locale=page_locale(request)
    )
