"""Service halls and their parking reward: ``PUT``/``GET /api/v1/halls`` (admin), and
``RATEBOT_HALLS_FILE`` loaded when the service starts. A voucher takes its minutes, validity and
time zone from its hall when it is issued; changing a hall changes only later vouchers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import yaml
from fastapi import APIRouter, FastAPI
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from bot.rewards.vouchers import HALL_CODE
from bot.runtime import Runtime
from bot.settings import TimeZoneName
from bot.web.auth import require_role
from bot.web.deps import RuntimeDep
from bot.web.limits import Line
from bot.web.problems import API_ERRORS
from storage.models import UTCDateTime
from storage.tables import halls

log = logging.getLogger("ratebot.halls")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the halls file (the runtime exists: FastAPI runs an included router's lifespan inside
    the app's)."""
    rt: Runtime = app.state.runtime
    if rt.settings.halls_file is not None:
        count = await run_in_threadpool(load_halls_file, rt, rt.settings.halls_file)
        log.info("loaded %d hall(s) from %s", count, rt.settings.halls_file)
    yield


router = APIRouter(prefix="/api/v1", lifespan=lifespan, responses=API_ERRORS)


class ParkingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    free_minutes: int = Field(ge=0, le=24 * 60)
    valid_hours: int = Field(ge=1, le=24 * 366)  # how long after issue a voucher can be used

    @model_validator(mode="after")
    def _minutes_when_enabled(self) -> ParkingIn:
        if self.enabled and self.free_minutes == 0:
            raise ValueError("free_minutes must be at least 1 when parking is enabled")
        return self


class HallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[Line, StringConstraints(max_length=100)]
    timezone: TimeZoneName
    parking: ParkingIn


class HallFileEntry(HallIn):
    code: Annotated[str, StringConstraints(pattern=HALL_CODE)]


UPSERT_HALL = sa.text(
    """
    INSERT INTO halls (code, name, timezone, parking_enabled, free_minutes, valid_hours,
                       updated_at)
    VALUES (:code, :name, :timezone, :enabled, :free_minutes, :valid_hours, :now)
    ON CONFLICT (code) DO UPDATE SET
        name = excluded.name, timezone = excluded.timezone,
        parking_enabled = excluded.parking_enabled, free_minutes = excluded.free_minutes,
        valid_hours = excluded.valid_hours, updated_at = excluded.updated_at
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime), sa.bindparam("enabled", type_=sa.Boolean))


def save_halls(rt: Runtime, entries: Iterable[tuple[str, HallIn]]) -> None:
    """Create or update halls. A voucher already issued keeps its minutes and expiry."""
    now = rt.clock()
    with rt.db.begin() as conn:
        for code, hall in entries:
            conn.execute(
                UPSERT_HALL,
                {
                    "code": code,
                    "name": hall.name,
                    "timezone": hall.timezone,
                    "now": now,
                    **hall.parking.model_dump(),
                },
            )


def load_halls_file(rt: Runtime, path: Path) -> int:
    """Create or update the halls listed in ``path`` (YAML or JSON: a list of halls as the API
    takes them, each with its ``code``); the number of halls. A bad file stops the start."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        entries = TypeAdapter(list[HallFileEntry]).validate_python(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"RATEBOT_HALLS_FILE {path}: {exc}") from exc
    save_halls(rt, [(entry.code, entry) for entry in entries])
    return len(entries)


def hall_view(row: Any) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name,
        "timezone": row.timezone,
        "parking": {
            "enabled": row.parking_enabled,
            "free_minutes": row.free_minutes,
            "valid_hours": row.valid_hours,
        },
        "updated_at": row.updated_at,
    }


HallCode = Annotated[str, PathParam(pattern=HALL_CODE)]


@router.put(
    "/halls/{hall_code}",
    dependencies=[require_role("admin")],
    responses={201: {"description": "A new hall"}},
)
def put_hall(hall_code: HallCode, body: HallIn, rt: RuntimeDep) -> JSONResponse:
    """Create (201) or update (200) a hall and its parking reward."""
    with rt.db.connect() as conn:
        existed = conn.execute(sa.select(halls.c.code).where(halls.c.code == hall_code)).first()
    save_halls(rt, [(hall_code, body)])
    with rt.db.connect() as conn:
        row = conn.execute(sa.select(halls).where(halls.c.code == hall_code)).one()
    return JSONResponse(jsonable_encoder(hall_view(row)), status_code=200 if existed else 201)


@router.get("/halls", dependencies=[require_role("admin")])
def list_halls(rt: RuntimeDep) -> dict[str, Any]:
    with rt.db.connect() as conn:
        rows = conn.execute(sa.select(halls).order_by(halls.c.code)).all()
    return {"items": [hall_view(row) for row in rows]}
