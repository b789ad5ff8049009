"""The push upward over HTTP (supervisor, admin): ``GET /api/v1/upstream`` lists the outbox
(``?state=dead``: what the platform never took), ``POST /api/v1/upstream/{id}/retry`` tries a
dead item again. With ``RATEBOT_UPSTREAM_URL`` set, a code table that cannot code every channel
stops the start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, HTTPException, Path, Query
from starlette.concurrency import run_in_threadpool

from bot.results import upstream
from bot.results.national import check_codes
from bot.runtime import Runtime
from bot.web.audit import Actor
from bot.web.auth import require_actor, require_role
from bot.web.deps import RuntimeDep
from bot.web.problems import API_ERRORS, errors
from storage.tables import upstream_outbox


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """A profile whose code tables lack a channel stops the start (the runtime exists: FastAPI
    runs an included router's lifespan inside the app's)."""
    settings = app.state.runtime.settings
    if settings.upstream_url:
        check_codes(upstream.CODES[settings.upstream_profile])
    yield


router = APIRouter(prefix="/api/v1", lifespan=lifespan, responses=API_ERRORS)

# A row id in a path: larger numbers are no row (and would overflow PostgreSQL's integer).
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Supervisor = Annotated[Actor, require_actor("supervisor")]


def item_view(row: sa.RowMapping) -> dict[str, Any]:
    return {**row, "idempotency_key": f"{row['rating_id']}-{row['version']}"}


@router.get("/upstream", dependencies=[require_role("supervisor")])
def list_items(
    rt: RuntimeDep,
    state: Literal["pending", "sending", "sent", "dead"] | None = None,
    rating_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Outbox items, oldest first, with their body, attempts and last error."""
    query = sa.select(upstream_outbox)
    if state is not None:
        query = query.where(upstream_outbox.c.state == state)
    if rating_id is not None:
        query = query.where(upstream_outbox.c.rating_id == rating_id)
    with rt.db.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
        rows = (
            conn.execute(
                query.order_by(upstream_outbox.c.id).offset((page - 1) * page_size).limit(page_size)
            )
            .mappings()
            .all()
        )
    return {
        "total": total,
        "page": page,
        "page_size": page_size,
        "items": [item_view(row) for row in rows],
    }


@router.post("/upstream/{item_id}/retry", responses=errors(404, 409))
async def retry_item(item_id: ItemId, rt: RuntimeDep, actor: Supervisor) -> dict[str, Any]:
    """A dead item, pending again from its first attempt (an audit entry): 404 unknown, 409
    not dead."""

    def run(rt: Runtime) -> sa.RowMapping:
        with rt.db.begin() as conn:
            upstream.retry(conn, actor, item_id, rt.clock())
            return (
                conn.execute(sa.select(upstream_outbox).where(upstream_outbox.c.id == item_id))
                .mappings()
                .one()
            )

    try:
        row = await run_in_threadpool(run, rt)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    except upstream.NotDead as exc:
        raise HTTPException(409, str(exc)) from exc
    return item_view(row)
