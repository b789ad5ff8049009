"""Reading results: ratings (``/api/v1/ratings``), statistics (``/stats``), rankings
(``/rankings``, published with ``/rankings/publish``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from bot.results.counting import local_day
from bot.results.scoring import results_rules
from bot.results.stats import BadPeriod, GroupBy, Period, RankBy, Scope, group_stats, ranking
from bot.results.views import rating_views
from bot.web import audit
from bot.web.audit import Actor
from bot.web.auth import require_actor, require_role
from bot.web.deps import DbDep, RuntimeDep
from bot.web.limits import Moment
from bot.web.problems import API_ERRORS, errors
from storage.models import Rating, ServiceRecord
from storage.tables import published_rankings

router = APIRouter(prefix="/api/v1", responses=API_ERRORS)


@router.get("/ratings", dependencies=[require_role("admin")])
def list_ratings(
    db: DbDep,
    department: str | None = None,
    item_code: str | None = None,
    hall: str | None = None,
    district: str | None = None,
    channel: str | None = None,
    level: Annotated[int | None, Query(ge=1, le=5)] = None,
    status_: Annotated[
        Literal["in_progress", "complete", "incomplete"] | None, Query(alias="status")
    ] = None,
    since: Annotated[Moment | None, Query(alias="from")] = None,
    until: Annotated[Moment | None, Query(alias="to")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Ratings, newest first, filtered; ``from``/``to`` bound the time the rating began."""
    query = select(Rating, ServiceRecord).join(ServiceRecord, isouter=True)
    for column, value in (
        (ServiceRecord.department, department),
        (ServiceRecord.item_code, item_code),
        (ServiceRecord.hall, hall),
        (ServiceRecord.district, district),
        (Rating.channel, channel),
        (Rating.level, level),
        (Rating.status, status_),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(col(Rating.created_at) >= since)
    if until is not None:
        query = query.where(col(Rating.created_at) < until)
    total = db.exec(select(func.count()).select_from(query.subquery())).one()
    rows = db.exec(
        query.order_by(col(Rating.created_at).desc(), col(Rating.id).desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    records = {rec.id: rec for _, rec in rows if rec is not None and rec.id is not None}
    return {
        "total": total,
        "page": page,
        "page_size": page_size,
        "items": rating_views(db, [r for r, _ in rows], records),
    }


# --- statistics and rankings ----------------------------------------------------------------------

Reader = Annotated[Actor, require_actor("department", "supervisor", "reviewer")]
Supervisor = Annotated[Actor, require_actor("supervisor")]
Department = Annotated[str | None, Query(min_length=1, max_length=100)]
District = Annotated[str | None, Query(min_length=1, max_length=32)]


def _refused(exc: BadPeriod) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


def _scope(actor: Actor, department: str | None, district: str | None) -> Scope:
    """A department key sees its own departments only (another one asked for: 403)."""
    seen = actor.departments_seen
    if seen is None:
        return Scope(department=department, district=district)
    if department is not None and department not in seen:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"not a department of this key: {department}"
        )
    return Scope(departments=seen, department=department, district=district)


@router.get("/stats")
def get_stats(
    rt: RuntimeDep,
    actor: Reader,
    group_by: GroupBy,
    since: Annotated[date | None, Query(alias="from")] = None,
    until: Annotated[date | None, Query(alias="to")] = None,
    department: Department = None,
    district: District = None,
) -> dict[str, Any]:
    """Each group's figures over local days ``from``..``to`` (default: this month so far), from
    the rollups."""
    today = local_day(rt.clock(), rt.settings.timezone)
    first, last = since or today.replace(day=1), until or today
    scope = _scope(actor, department, district)
    try:
        with rt.db.connect() as conn:
            groups = group_stats(conn, group_by, first, last, scope)
    except BadPeriod as exc:
        raise _refused(exc) from exc
    return {
        "group_by": group_by,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "evaluation": rt.settings.results_evaluation,
        "groups": groups,
    }


def _period(period: str | None, quarter: str | None, year: str | None) -> Period:
    given = [p for p in (period, quarter, year) if p is not None]
    if len(given) != 1:
        raise BadPeriod("give one of period (2026-11), quarter (2026Q4) or year (2026)")
    return Period.parse(given[0])


PeriodText = Annotated[str | None, Query(max_length=16)]


@router.get("/rankings")
def get_ranking(
    rt: RuntimeDep,
    _actor: Reader,
    by: RankBy,
    period: PeriodText = None,
    quarter: PeriodText = None,
    year: PeriodText = None,
    district: District = None,
) -> dict[str, Any]:
    """The live ranking of a month, quarter or year by the composite score."""
    try:
        chosen = _period(period, quarter, year)
        with rt.db.connect() as conn:
            return ranking(
                conn, by, chosen, results_rules(rt.settings.results_file), district=district
            )
    except BadPeriod as exc:
        raise _refused(exc) from exc


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: Annotated[str, StringConstraints(max_length=16)]
    by: RankBy


@router.post("/rankings/publish", status_code=201, responses=errors(409))
def publish_ranking(body: PublishIn, rt: RuntimeDep, actor: Supervisor) -> dict[str, Any]:
    """Freeze a closed period's ranking as published: later exclusions change the live figures,
    not this."""
    now = rt.clock()
    try:
        period = Period.parse(body.period)
    except BadPeriod as exc:
        raise _refused(exc) from exc
    if period.last >= local_day(now, rt.settings.timezone):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"period {period.label} has not closed yet"
        )
    try:
        with rt.db.begin() as conn:
            frozen = ranking(conn, body.by, period, results_rules(rt.settings.results_file))
            published_id = conn.execute(
                sa.insert(published_rankings)
                .values(
                    period=period.label,
                    by=body.by,
                    published_at=now,
                    published_by=actor.name,
                    ranking=frozen,
                )
                .returning(published_rankings.c.id)
            ).scalar_one()
            audit.write(
                conn,
                actor,
                "published",
                "ranking",
                published_id,
                now,
                after={"period": period.label, "by": body.by},
            )
    except IntegrityError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"the {body.by} ranking of {period.label} is published already",
        ) from exc
    return _published(frozen, now, actor.name)


def _published(frozen: dict[str, Any], at: datetime, by: str) -> dict[str, Any]:
    return {**frozen, "published_at": at.isoformat(), "published_by": by}


@router.get("/rankings/published", responses=errors(404))
def get_published_ranking(
    rt: RuntimeDep, _actor: Reader, by: RankBy, period: Annotated[str, Query(max_length=16)]
) -> dict[str, Any]:
    """A ranking as it was published."""
    with rt.db.connect() as conn:
        row = conn.execute(
            sa.select(published_rankings).where(
                published_rankings.c.period == period, published_rankings.c.by == by
            )
        ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {by} ranking of {period} is published")
    return _published(row.ranking, row.published_at, row.published_by)
