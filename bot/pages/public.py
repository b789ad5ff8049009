"""The public results page, ``GET /results`` (结果公开): no sign-in, for anyone.

It shows only what a supervisor published, as it was published: the frozen rankings of
``published_rankings`` (``POST /api/v1/rankings/publish``) and the rectified cases of
``published_cases`` (``bot.tickets.publishing``), never a live figure — an exclusion made after
publication changes the statistics API, not this page. For each published ranking (by
department, hall, window, item or district; a clerk ranking names people and is never shown)
it shows the rank, the name, the ratings counted, 好评率, 差评率, the composite score, the
change of rank, and of the score's parts the one the public asks about: the share of bad reviews
due in the period that were answered on time (a published ranking carries that rate, not the
counts behind it, so the page shows the rate). A rectified case shows only its public text.

Cheap to serve: each worker keeps the rendered page per (period, language). Before it serves
one it asks the database one small question, how many rankings and cases were published and
withdrawn (they are only ever added to, never changed back), and drops what it kept when the
answer changed — so a publication shows at once on every worker. Responses are ``Cache-Control:
public, max-age=60`` with an ``ETag``; ``If-None-Match`` gets a 304. The page sets no cookie
(shared caches may keep it): its links carry ``?lang=`` instead.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from babel.dates import format_date, format_skeleton
from fastapi import APIRouter, Request
from fastapi.responses import Response

from bot.pages.web import PageError, page_locale, render, security_headers
from bot.results.stats import BadPeriod, Period
from bot.web.deps import get_runtime
from locales import N_
from storage.tables import published_cases, published_rankings, tickets

router = APIRouter()

MAX_AGE = 60  # seconds a browser or a shared cache may keep the page
# The published rankings shown, in this order. Never "clerk": those are the names of staff.
PUBLIC_BY = ("department", "hall", "window", "item", "district")
UNKNOWN_PERIOD = N_("page.results.unknown_period")


# --- what the page shows ------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicRanking:
    """One published ranking as the public reads it: names and rates, nothing about a person."""

    by: str
    published_at: datetime
    ranked: list[dict[str, Any]]
    too_few: list[dict[str, Any]]
    counted: int  # the ratings counted in it, ranked or not
    min_sample: int  # the ratings a group needed to be ranked, as published


@dataclass(frozen=True)
class PublicResults:
    period: Period
    rankings: list[PublicRanking]
    cases: list[str]  # the public texts of the rectified cases published


def published_periods(conn: sa.Connection) -> list[Period]:
    """The periods with a published ranking shown here, the most recently ended first (a month
    before the quarter and the year that end with it)."""
    labels = conn.execute(
        sa.select(published_rankings.c.period)
        .where(published_rankings.c.by.in_(PUBLIC_BY))
        .distinct()
    ).scalars()
    periods = []
    for label in labels:
        try:
            periods.append(Period.parse(label))
        except BadPeriod:  # not written by the publishing route; never shown
            continue
    return sorted(periods, key=lambda p: (p.last, p.first), reverse=True)


def _row(row: dict[str, Any]) -> dict[str, Any]:
    """A frozen ranking row, reduced to what the public reads (no keys: names only)."""
    return {
        "rank": row.get("rank"),
        "name": row["name"],
        "counted": row["counted"],
        "good_rate": row["good_rate"],
        "bad_rate": row["bad_rate"],
        "on_time": row.get("parts", {}).get("on_time"),
        "score": row["score"],
        "change": row.get("change"),
    }


def _rankings(conn: sa.Connection, period: Period) -> list[PublicRanking]:
    found = {
        row.by: row
        for row in conn.execute(
            sa.select(published_rankings).where(
                published_rankings.c.period == period.label,
                published_rankings.c.by.in_(PUBLIC_BY),
            )
        )
    }
    shown = []
    for by in PUBLIC_BY:
        if by not in found:
            continue
        frozen = found[by].ranking
        ranked = [_row(r) for r in frozen["ranked"]]
        too_few = [_row(r) for r in frozen["too_few_ratings"]]
        shown.append(
            PublicRanking(
                by=by,
                published_at=found[by].published_at,
                ranked=ranked,
                too_few=too_few,
                counted=sum(r["counted"] for r in (*ranked, *too_few)),
                min_sample=frozen["rules"]["min_sample"],
            )
        )
    return shown


def _utc_bounds(period: Period, zone: ZoneInfo) -> tuple[datetime, datetime]:
    def start(day: date) -> datetime:
        return datetime.combine(day, time(), zone).astimezone(UTC)

    return start(period.first), start(period.last + timedelta(days=1))


def _cases(conn: sa.Connection, period: Period, zone: ZoneInfo) -> list[str]:
    """The public texts of the rectified cases published (and not withdrawn) whose bad review
    came in the period (its ticket opened then, local time), oldest publication first."""
    since, until = _utc_bounds(period, zone)
    return list(
        conn.execute(
            sa.select(published_cases.c.text)
            .join(tickets, tickets.c.id == published_cases.c.ticket_id)
            .where(
                published_cases.c.withdrawn_at.is_(None),
                tickets.c.opened_at >= since,
                tickets.c.opened_at < until,
            )
            .order_by(published_cases.c.published_at, published_cases.c.id)
        ).scalars()
    )


def public_results(conn: sa.Connection, period: Period, zone: ZoneInfo) -> PublicResults:
    """Everything the page shows for ``period``: its published rankings and cases."""
    return PublicResults(period, _rankings(conn, period), _cases(conn, period, zone))


def publications(conn: sa.Connection) -> tuple[int, int, int]:
    """How many rankings and cases were published and cases withdrawn: rows are only added
    (and withdrawn once), so any publication or withdrawal changes this."""
    counts = sa.select(
        sa.select(sa.func.count()).select_from(published_rankings).scalar_subquery(),
        sa.select(sa.func.count()).select_from(published_cases).scalar_subquery(),
        sa.select(sa.func.count(published_cases.c.withdrawn_at)).scalar_subquery(),
    )
    ranked, cases, withdrawn = conn.execute(counts).one()
    return int(ranked), int(cases), int(withdrawn)


# --- the cache ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedPage:
    body: bytes
    etag: str


@dataclass
class PageCache:
    """The rendered pages of one worker, good while :func:`publications` says the same."""

    stamp: tuple[int, int, int] | None = None
    periods: list[Period] = field(default_factory=list)
    pages: dict[tuple[str, str], CachedPage] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, conn: sa.Connection) -> tuple[tuple[int, int, int], list[Period]]:
        """What is published now and its periods, re-read (and every page dropped) if anything
        was published or withdrawn since the last look."""
        stamp = publications(conn)
        with self.lock:
            if stamp != self.stamp:
                self.stamp, self.periods, self.pages = stamp, published_periods(conn), {}
            return stamp, self.periods

    def keep(self, stamp: tuple[int, int, int], key: tuple[str, str], page: CachedPage) -> None:
        """Keep ``page``, made from what ``stamp`` saw, unless something was published since
        (a page of older rows must not outlive a newer look)."""
        with self.lock:
            if stamp == self.stamp:
                self.pages[key] = page


def _cache(request: Request) -> PageCache:
    state = request.app.state
    if not hasattr(state, "results_page"):
        state.results_page = PageCache()
    cache: PageCache = state.results_page
    return cache


# --- the page -----------------------------------------------------------------------------------


def period_name(period: Period, locale: str) -> str:
    """2026-11 as 2026年11月 / November 2026; a quarter and a year likewise."""
    if "Q" in period.label:
        return format_skeleton("yQQQ", period.first, locale=locale)
    if "-" in period.label:
        return format_skeleton("yMMMM", period.first, locale=locale)
    return format_skeleton("y", period.first, locale=locale)


def _context(
    request: Request, results: PublicResults | None, periods: list[Period], locale: str
) -> dict[str, Any]:
    zone = get_runtime(request).settings.zone

    def period_url(period: Period) -> str:
        # The page's language always: one kept page serves ?lang= and cookie visitors alike.
        return f"/results?{urlencode({'period': period.label, 'lang': locale})}"

    def day(at: datetime) -> str:
        return format_date(at.astimezone(zone).date(), format="long", locale=locale)

    return {
        "results": results,
        "periods": [(p, period_name(p, locale), period_url(p)) for p in periods],
        "period_name": period_name(results.period, locale) if results else None,
        "day": day,
    }


def _page(request: Request, results: PublicResults | None, periods: list[Period]) -> CachedPage:
    locale = page_locale(request)
    # render() is the one way a page is made; its cookies are not kept (see the module's note).
    body = bytes(render(request, "results.html", _context(request, results, periods, locale)).body)
    return CachedPage(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _served(request: Request, page: CachedPage) -> Response:
    headers = {
        **security_headers(),
        "Cache-Control": f"public, max-age={MAX_AGE}",
        "ETag": page.etag,
        "Vary": "Accept-Language, Cookie",
    }
    if page.etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/results")
def results_page(request: Request) -> Response:
    """The published results of a period (``?period=2026-11``; by default the latest
    published), in the visitor's language. An unpublished or unknown period: the 404 page."""
    rt = get_runtime(request)
    cache = _cache(request)
    with rt.db.connect() as conn:
        stamp, periods = cache.refresh(conn)
        asked = request.query_params.get("period")
        period = next((p for p in periods if p.label == asked), None) if asked else None
        if asked and period is None:
            raise PageError(404, UNKNOWN_PERIOD)
        if period is None and periods:
            period = periods[0]
        key = (period.label if period else "", page_locale(request))
        page = cache.pages.get(key)
        if page is None:
            results = public_results(conn, period, rt.settings.zone) if period else None
            page = _page(request, results, periods)
            cache.keep(stamp, key, page)
    return _served(request, page)
