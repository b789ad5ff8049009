"""Reading ratings: ``GET /api/v1/ratings``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime
from sqlmodel import col, func, select

from bot.results.views import rating_views
from bot.web.auth import require_role
from bot.web.deps import DbDep
from storage.models import Rating, ServiceRecord

router = APIRouter(prefix="/api/v1")


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
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to")] = None,
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
