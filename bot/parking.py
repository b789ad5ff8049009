"""Parking rewards over HTTP: halls (admin), the gate's voucher API (parking keys, each good only
for its own halls), revoking (admin), the vouchers report (admin) and the citizen's voucher page.

Redeeming is exactly once: one conditional UPDATE (``state = 'issued'`` and not past its time)
moves a voucher to ``redeemed``, so of many concurrent redemptions the database lets one through;
the others find it redeemed (409, with when). With an ``Idempotency-Key`` the first answer is
stored with the redemption, in the same transaction, so a retry gets that answer again (a retry
racing the first waits for its row lock, then finds the stored answer through the unique key).

A code that is malformed or fails its check symbol is refused before any lookup. A key (or, on
the public page, an address) that keeps trying codes that do not exist is slowed down, one
request at a time with a growing delay, and logged by the key's name — never with the code.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import yaml
from fastapi import APIRouter, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from bot.api import RuntimeDep, get_runtime, require_role
from bot.privacy import mask
from bot.runtime import Runtime
from bot.settings import TimeZoneName
from bot.vouchers import (
    code_hash,
    current_state,
    display_code,
    halls,
    parse_code,
    ratings,
    vouchers,
)
from channels.voucher import EXPIRY_FORMAT, qr_svg
from locales import gettext, ids, normalize_locale
from storage.models import ApiKey, ApiKeyHall, Redemption, UTCDateTime

log = logging.getLogger("ratebot.parking")

key_halls = ApiKeyHall.__table__  # type: ignore[attr-defined]
redemptions = Redemption.__table__  # type: ignore[attr-defined]

HALL_CODE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_REPORT_DAYS = 366
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Line = Annotated[Text, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]+$")]  # no control characters


# --- guessing codes -------------------------------------------------------------------------


@dataclass
class Guesses:
    """Who keeps trying codes that do not exist, and how long to make them wait.

    Per process (with N workers a guesser gets N times as many tries; still exponentially slow):
    the first ``free`` misses in ``window`` seconds cost nothing, each further one doubles the
    delay up to ``max_delay``, and a slowed client's requests wait one at a time, so parallel
    requests do not share one delay.
    """

    free: int = 5
    window: float = 600.0
    base_delay: float = 0.25
    max_delay: float = 10.0
    tracked: int = 10_000  # clients remembered before the quiet ones are forgotten (memory)
    misses: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    locks: dict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def delay(self, who: str) -> float:
        recent = self.misses.get(who)
        if not recent:
            return 0.0
        while recent and recent[0] < time.monotonic() - self.window:
            recent.popleft()
        if len(recent) < self.free:
            if not recent:
                self._forget(who)
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (len(recent) - self.free)))

    async def wait(self, who: str) -> None:
        if self.delay(who) == 0:
            return
        async with self.locks[who]:
            await asyncio.sleep(self.delay(who))

    def missed(self, who: str, name: str, typed: str) -> None:
        if len(self.misses) >= self.tracked:
            cutoff = time.monotonic() - self.window
            for quiet in [w for w, times in self.misses.items() if times[-1] < cutoff]:
                self._forget(quiet)
        recent = self.misses[who]
        recent.append(time.monotonic())
        if len(recent) >= self.free:
            log.warning(
                "%s tried a voucher code that does not exist (%s…): %d misses in %d minutes, "
                "now slowed down",
                name,
                typed[:3],
                len(recent),
                self.window // 60,
            )

    def _forget(self, who: str) -> None:
        self.misses.pop(who, None)
        lock = self.locks.get(who)
        if lock is not None and not lock.locked():
            del self.locks[who]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the halls file (the runtime exists: FastAPI runs an included router's lifespan inside
    the app's) and keep this app's guess counters."""
    rt: Runtime = app.state.runtime
    if rt.settings.halls_file is not None:
        count = await run_in_threadpool(load_halls_file, rt, rt.settings.halls_file)
        log.info("loaded %d hall(s) from %s", count, rt.settings.halls_file)
    app.state.guesses = Guesses()
    yield


def get_guesses(request: Request) -> Guesses:
    guesses: Guesses = request.app.state.guesses
    return guesses


router = APIRouter(prefix="/api/v1", lifespan=lifespan)
page_router = APIRouter()


# --- halls ----------------------------------------------------------------------------------


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


@router.put("/halls/{hall_code}", dependencies=[require_role("admin")])
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


# --- the gate's API -------------------------------------------------------------------------


class RedeemIn(BaseModel):
    """What the gate knows when the car leaves. The plate is kept only as a keyed hash."""

    model_config = ConfigDict(extra="forbid")

    plate: Annotated[Line, StringConstraints(max_length=16)]
    lot: Annotated[Line, StringConstraints(max_length=64)]
    entered_at: AwareDatetime
    exited_at: AwareDatetime

    @model_validator(mode="after")
    def _exit_after_entry(self) -> RedeemIn:
        if self.exited_at < self.entered_at:
            raise ValueError("exited_at is before entered_at")
        return self


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def _voucher_row(conn: sa.Connection, rt: Runtime, code: str) -> Any:
    return conn.execute(
        sa.select(vouchers, halls.c.name.label("hall_name"), halls.c.timezone)
        .join(halls, halls.c.code == vouchers.c.hall_code)
        .where(vouchers.c.code_hash == code_hash(rt.privacy, code))
    ).first()


def _may_use(conn: sa.Connection, key: ApiKey, hall_code: str) -> bool:
    if key.role == "admin":
        return True
    return (
        conn.execute(
            sa.select(key_halls.c.hall_code).where(
                key_halls.c.api_key_id == key.id, key_halls.c.hall_code == hall_code
            )
        ).first()
        is not None
    )


def voucher_view(row: Any, code: str, now: datetime) -> dict[str, Any]:
    """A voucher as the API shows it: no personal data (no contact, no plate, no case)."""
    return jsonable_encoder(
        {
            "code": display_code(code),
            "state": current_state(row.state, row.expires_at, now),
            "hall": {"code": row.hall_code, "name": row.hall_name},
            "free_minutes": row.free_minutes,
            "issued_at": row.issued_at,
            "expires_at": row.expires_at,
            "redeemed_at": row.redeemed_at,
            "minutes_granted": row.minutes_granted,
            "revoked_at": row.revoked_at,
            "revoke_reason": row.revoke_reason,
        }
    )


async def _checked_code(request: Request, key: ApiKey, typed: str) -> str:
    """The code in the path, after the key's wait; a malformed one is refused (422) unlooked-up."""
    guesses = get_guesses(request)
    await guesses.wait(f"key:{key.id}")
    code = parse_code(typed)
    if code is None:
        guesses.missed(f"key:{key.id}", f"API key {key.name!r}", typed)
        raise HTTPException(
            422, "malformed voucher code: 11 letters and digits (no 0, 1, I, O) with a valid check"
        )
    return code


def _not_found(request: Request, key: ApiKey, code: str) -> HTTPException:
    get_guesses(request).missed(f"key:{key.id}", f"API key {key.name!r}", code)
    return HTTPException(404, "no such voucher")


ParkingKey = Annotated[ApiKey, require_role("parking")]


@router.get("/parking/vouchers/{code}")
async def get_voucher(code: str, request: Request, key: ParkingKey) -> dict[str, Any]:
    """A voucher's state, hall, free minutes and times, for the gate."""
    rt = get_runtime(request)
    compact = await _checked_code(request, key, code)

    def find() -> tuple[Any, bool]:
        with rt.db.connect() as conn:
            row = _voucher_row(conn, rt, compact)
            return row, row is not None and _may_use(conn, key, row.hall_code)

    row, allowed = await run_in_threadpool(find)
    if row is None:
        raise _not_found(request, key, compact)
    if not allowed:
        raise HTTPException(403, f"this key is not for hall {row.hall_code}")
    return voucher_view(row, compact, rt.clock())


@router.post("/parking/vouchers/{code}/redeem")
async def redeem_voucher(
    code: str,
    body: RedeemIn,
    request: Request,
    key: ParkingKey,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JSONResponse:
    """Redeem a voucher at the gate: 200 with the minutes granted, exactly once."""
    rt = get_runtime(request)
    compact = await _checked_code(request, key, code)
    answer = await run_in_threadpool(_redeem, rt, key, compact, body, idempotency_key)
    if answer is None:
        raise _not_found(request, key, compact)
    return answer.response()


def _redeem(
    rt: Runtime, key: ApiKey, code: str, body: RedeemIn, idempotency_key: str | None
) -> Answer | None:
    """The answer to one redemption (``None``: no such voucher)."""
    fingerprint = hashlib.sha256(
        json.dumps([code, body.model_dump(mode="json")], sort_keys=True).encode()
    ).hexdigest()
    now = rt.clock()
    with rt.db.connect() as conn:
        if idempotency_key is not None:
            first = _first_answer(conn, key, idempotency_key, fingerprint)
            conn.rollback()  # end the read's implicit transaction: the redemption has its own
            if first is not None:
                return first
        try:
            with conn.begin():
                answer = _redeem_once(conn, rt, key, code, body, now)
                if idempotency_key is not None and answer is not None and answer.status != 403:
                    conn.execute(
                        sa.insert(redemptions).values(
                            api_key_id=key.id,
                            idempotency_key=idempotency_key,
                            fingerprint=fingerprint,
                            status_code=answer.status,
                            response=answer.body,
                            created_at=now,
                        )
                    )
        except IntegrityError:  # the same Idempotency-Key, concurrently: it answered first
            assert idempotency_key is not None
            first = _first_answer(conn, key, idempotency_key, fingerprint)
            if first is None:
                raise
            return first
    return answer


def _first_answer(
    conn: sa.Connection, key: ApiKey, idempotency_key: str, fingerprint: str
) -> Answer | None:
    """The stored answer to the first request with this key's ``idempotency_key``, if any."""
    stored = conn.execute(
        sa.select(
            redemptions.c.fingerprint, redemptions.c.status_code, redemptions.c.response
        ).where(
            redemptions.c.api_key_id == key.id,
            redemptions.c.idempotency_key == idempotency_key,
        )
    ).first()
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        return Answer(422, {"detail": "this Idempotency-Key was used for a different request"})
    return Answer(stored.status_code, dict(stored.response))


def _redeem_once(
    conn: sa.Connection, rt: Runtime, key: ApiKey, code: str, body: RedeemIn, now: datetime
) -> Answer | None:
    """Redeem in one conditional UPDATE — the right code, still issued, in time, of one of the
    key's halls — and only when it changes nothing, find out why (``None``: no such voucher)."""
    digest = code_hash(rt.privacy, code)
    parked = math.ceil((body.exited_at - body.entered_at).total_seconds() / 60)
    conditions = [
        vouchers.c.code_hash == digest,
        vouchers.c.state == "issued",
        vouchers.c.expires_at > now,
    ]
    if key.role != "admin":
        conditions.append(
            vouchers.c.hall_code.in_(
                sa.select(key_halls.c.hall_code).where(key_halls.c.api_key_id == key.id)
            )
        )
    done = conn.execute(
        sa.update(vouchers)
        .where(*conditions)
        .values(
            state="redeemed",
            redeemed_at=now,
            closed_at=now,
            minutes_granted=sa.case(
                (vouchers.c.free_minutes < parked, vouchers.c.free_minutes), else_=parked
            ),
            lot=body.lot,
            plate_hash=rt.privacy.contact_hash(f"plate:{body.plate.upper()}"),
            entered_at=body.entered_at,
            exited_at=body.exited_at,
            redeemed_by=key.id,
        )
        .returning(vouchers.c.hall_code, vouchers.c.free_minutes, vouchers.c.minutes_granted)
    ).first()
    if done is not None:
        return Answer(
            200,
            jsonable_encoder(
                {
                    "code": display_code(code),
                    "state": "redeemed",
                    "hall": done.hall_code,
                    "free_minutes": done.free_minutes,
                    "minutes_granted": done.minutes_granted,
                    "redeemed_at": now,
                }
            ),
        )
    latest = conn.execute(sa.select(vouchers).where(vouchers.c.code_hash == digest)).first()
    if latest is None:
        return None
    if not _may_use(conn, key, latest.hall_code):
        return Answer(403, {"detail": f"this key is not for hall {latest.hall_code}"})
    state = current_state(latest.state, latest.expires_at, now)
    if state == "redeemed":
        return Answer(
            409,
            jsonable_encoder(
                {
                    "detail": "voucher already redeemed",
                    "state": state,
                    "redeemed_at": latest.redeemed_at,
                }
            ),
        )
    if state == "revoked":
        return Answer(
            409,
            jsonable_encoder(
                {
                    "detail": f"voucher revoked: {latest.revoke_reason}",
                    "state": state,
                    "reason": latest.revoke_reason,
                    "revoked_at": latest.revoked_at,
                }
            ),
        )
    if latest.state == "issued":  # past its time: mark it, as the worker would
        conn.execute(
            sa.update(vouchers)
            .where(vouchers.c.id == latest.id, vouchers.c.state == "issued")
            .values(state="expired", closed_at=latest.expires_at)
        )
    return Answer(
        410,
        jsonable_encoder(
            {"detail": "voucher expired", "state": "expired", "expires_at": latest.expires_at}
        ),
    )


# --- revoking -------------------------------------------------------------------------------


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Line, StringConstraints(max_length=255)]
    flag_citizen: bool = False  # the citizen's later ratings earn no voucher


FLAG_CITIZEN = sa.text(
    """
    INSERT INTO flagged_citizens (citizen_hash, reason, created_at)
    VALUES (:citizen, :reason, :now)
    ON CONFLICT DO NOTHING
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime))


@router.post("/vouchers/{code}/revoke", dependencies=[require_role("admin")])
def revoke_voucher(code: str, body: RevokeIn, rt: RuntimeDep) -> dict[str, Any]:
    """Withdraw an unused voucher (e.g. an appeal showed the rating was fraudulent); with
    ``flag_citizen`` the rating's citizen earns no further vouchers. 409 once redeemed."""
    compact = parse_code(code)
    if compact is None:
        raise HTTPException(422, "malformed voucher code")
    now = rt.clock()
    with rt.db.begin() as conn:  # an HTTPException inside rolls everything back
        row = _voucher_row(conn, rt, compact)
        if row is None:
            raise HTTPException(404, "no such voucher")
        conn.execute(
            sa.update(vouchers)
            .where(vouchers.c.id == row.id, vouchers.c.state.in_(("issued", "expired")))
            .values(state="revoked", revoked_at=now, revoke_reason=body.reason, closed_at=now)
        )
        row = _voucher_row(conn, rt, compact)
        if row.state == "redeemed":  # before, or by a gate at this very moment
            raise HTTPException(409, f"voucher already redeemed at {row.redeemed_at.isoformat()}")
        if body.flag_citizen:
            citizen = conn.execute(
                sa.select(ratings.c.citizen_hash).where(ratings.c.id == row.rating_id)
            ).scalar()
            if citizen is not None:
                conn.execute(FLAG_CITIZEN, {"citizen": citizen, "reason": body.reason, "now": now})
    return {**voucher_view(row, compact, now), "citizen_flagged": body.flag_citizen}


# --- the report -----------------------------------------------------------------------------

COUNTS = ("issued", "redeemed", "expired", "revoked")


@router.get("/reports/vouchers", dependencies=[require_role("admin")])
def vouchers_report(
    rt: RuntimeDep,
    hall: Annotated[str | None, Query(pattern=HALL_CODE)] = None,
    since: Annotated[date | None, Query(alias="from")] = None,
    until: Annotated[date | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """Per hall and local day (the hall's time zone), ``from``–``to`` inclusive (default: the
    last 30 days): vouchers issued, redeemed, expired and revoked; and the redemption rate, the
    share of the vouchers issued in the period that were redeemed."""
    now = rt.clock()
    until = until or now.astimezone(rt.settings.zone).date()
    since = since or until - timedelta(days=29)
    if since > until:
        raise HTTPException(422, "from is after to")
    if (until - since).days >= MAX_REPORT_DAYS:
        raise HTTPException(422, f"at most {MAX_REPORT_DAYS} days at once")
    # UTC bounds wide enough for any time zone; each event is then placed on its hall's day.
    low = datetime.combine(since, datetime.min.time(), ZoneInfo("UTC")) - timedelta(days=1)
    high = datetime.combine(until, datetime.min.time(), ZoneInfo("UTC")) + timedelta(days=2)
    with rt.db.connect() as conn:
        hall_rows = conn.execute(
            sa.select(halls).where(halls.c.code == hall if hall else sa.true())
        ).all()
        rows = conn.execute(
            sa.select(
                vouchers.c.hall_code,
                vouchers.c.state,
                vouchers.c.issued_at,
                vouchers.c.expires_at,
                vouchers.c.closed_at,
            ).where(
                vouchers.c.hall_code == hall if hall else sa.true(),
                sa.or_(
                    vouchers.c.issued_at.between(low, high),
                    vouchers.c.closed_at.between(low, high),
                    sa.and_(vouchers.c.state == "issued", vouchers.c.expires_at.between(low, high)),
                ),
            )
        ).all()
    if hall and not hall_rows:
        raise HTTPException(404, f"no hall {hall!r}")
    zones = {h.code: ZoneInfo(h.timezone) for h in hall_rows}
    days: dict[str, dict[date, dict[str, int]]] = {h.code: {} for h in hall_rows}
    issued_in_period: dict[str, int] = defaultdict(int)
    redeemed_of_those: dict[str, int] = defaultdict(int)

    def count(hall_code: str, what: str, at: datetime | None) -> bool:
        if at is None or at > now:
            return False
        day = at.astimezone(zones[hall_code]).date()
        if not since <= day <= until:
            return False
        per_day = days[hall_code].setdefault(day, dict.fromkeys(COUNTS, 0))
        per_day[what] += 1
        return True

    for v in rows:
        state = current_state(v.state, v.expires_at, now)
        if count(v.hall_code, "issued", v.issued_at):
            issued_in_period[v.hall_code] += 1
            redeemed_of_those[v.hall_code] += state == "redeemed"
        if state != "issued":
            count(v.hall_code, state, v.closed_at if v.state == state else v.expires_at)
    report = []
    for h in hall_rows:
        per_day = days[h.code]
        totals = {what: sum(d[what] for d in per_day.values()) for what in COUNTS}
        issued = issued_in_period[h.code]
        report.append(
            {
                "hall": h.code,
                "name": h.name,
                "timezone": h.timezone,
                "days": [{"date": day, **per_day[day]} for day in sorted(per_day)],
                "totals": totals,
                "redemption_rate": round(redeemed_of_those[h.code] / issued, 4) if issued else None,
            }
        )
    return jsonable_encoder({"from": since, "to": until, "halls": report})


# --- the citizen's page ---------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; padding: 1.5rem; background: #f4f6f8;
       color: #1d2733; text-align: center; }}
main {{ max-width: 24rem; margin: 0 auto; background: #fff; border-radius: 12px;
        padding: 1.5rem; box-shadow: 0 1px 4px rgba(0,0,0,.1); }}
h1 {{ font-size: 1.3rem; margin: 0 0 .5rem; }}
.hall {{ font-size: 1.1rem; margin: .25rem 0; }}
.minutes {{ font-size: 1.6rem; font-weight: bold; margin: .5rem 0; }}
.state {{ display: inline-block; padding: .2rem .8rem; border-radius: 1rem; background: #e8f5e9;
          color: #1b5e20; }}
.state.closed {{ background: #fdecea; color: #8a1c12; }}
.qr svg {{ width: 70%; height: auto; margin: 1rem auto; display: block; }}
.code {{ font-family: ui-monospace, monospace; font-size: 1.6rem; letter-spacing: .1em; }}
.hint {{ color: #5b6775; font-size: .9rem; }}
</style>
</head>
<body><main>{content}</main></body>
</html>
"""
LANG = {"zh_Hans_CN": "zh-Hans", "zh_Hant_TW": "zh-Hant", "en": "en"}


def page_locale(request: Request) -> str:
    """``?lang=`` if given, else the browser's first language, else the deployment's."""
    rt = get_runtime(request)
    chosen = request.query_params.get("lang")
    if not chosen:
        accept = request.headers.get("accept-language", "")
        chosen = accept.split(",")[0].split(";")[0].strip()
    return normalize_locale(chosen or None, rt.settings.default_locale)


def _page(locale: str, content: str, status_code: int = 200) -> HTMLResponse:
    title = html.escape(gettext(locale, ids.VOUCHER_PAGE_TITLE))
    body = PAGE.format(lang=LANG.get(locale, "zh"), title=title, content=content)
    # No cache: the state changes when it is redeemed; no referrer: the URL holds the code.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(body, status_code=status_code, headers=headers)


def _unknown_page(locale: str) -> HTMLResponse:
    title = html.escape(gettext(locale, ids.VOUCHER_PAGE_TITLE))
    unknown = html.escape(gettext(locale, ids.VOUCHER_PAGE_UNKNOWN))
    return _page(locale, f"<h1>{title}</h1><p>{unknown}</p>", 404)


@page_router.get("/v/{code}", response_class=HTMLResponse)
async def voucher_page(code: str, request: Request) -> HTMLResponse:
    """The citizen's voucher: hall, minutes, state, expiry, the code and its QR code. No
    personal data. Linked from the message that gave the voucher."""
    rt = get_runtime(request)
    locale = page_locale(request)
    guesses = get_guesses(request)
    who = f"ip:{request.client.host if request.client else '?'}"
    await guesses.wait(who)
    compact = parse_code(code)
    row = None
    if compact is not None:
        row = await run_in_threadpool(_find_for_page, rt, compact)
    if compact is None or row is None:
        guesses.missed(who, f"address {mask(who[3:])}", code)
        return _unknown_page(locale)
    zone = ZoneInfo(row.timezone)
    now = rt.clock()
    state = current_state(row.state, row.expires_at, now)

    def local(at: datetime) -> str:
        return at.astimezone(zone).strftime(EXPIRY_FORMAT)

    state_text = {
        "issued": gettext(locale, ids.VOUCHER_STATE_ISSUED),
        "redeemed": gettext(
            locale,
            ids.VOUCHER_STATE_REDEEMED,
            time=local(row.redeemed_at) if row.redeemed_at else "",
        ),
        "expired": gettext(locale, ids.VOUCHER_STATE_EXPIRED),
        "revoked": gettext(locale, ids.VOUCHER_STATE_REVOKED),
    }[state]
    e = html.escape
    shown = display_code(compact)
    content = (
        f"<h1>{e(gettext(locale, ids.VOUCHER_PAGE_TITLE))}</h1>"
        f'<p class="hall">{e(row.hall_name)}</p>'
        f'<p class="minutes">'
        f"{e(gettext(locale, ids.VOUCHER_PAGE_MINUTES, minutes=row.free_minutes))}</p>"
        f'<p class="state{"" if state == "issued" else " closed"}" data-state="{state}">'
        f"{e(state_text)}</p>"
    )
    if state == "issued":
        content += (
            f'<div class="qr">{qr_svg(compact, title=shown)}</div>'
            f"<p>{e(gettext(locale, ids.VOUCHER_PAGE_CODE))}</p>"
            f'<p class="code">{e(shown)}</p>'
            f"<p>{e(gettext(locale, ids.VOUCHER_PAGE_EXPIRES, expires=local(row.expires_at)))}</p>"
            f'<p class="hint">{e(gettext(locale, ids.VOUCHER_PAGE_HINT))}</p>'
        )
    return _page(locale, content)


def _find_for_page(rt: Runtime, code: str) -> Any:
    with rt.db.connect() as conn:
        return _voucher_row(conn, rt, code)
