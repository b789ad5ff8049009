"""Parking rewards over HTTP: the gate's voucher API (parking keys, each good only for its own
halls), revoking (admin) and the vouchers report (admin). Halls are ``bot.rewards.halls``; the
citizen's page is ``bot.rewards.page``.

Redeeming is exactly once: one conditional UPDATE (``state = 'issued'`` and not past its time)
moves a voucher to ``redeemed``, so of many concurrent redemptions the database lets one through;
the others find it redeemed (409, with when). With an ``Idempotency-Key`` the first answer is
stored with the redemption, in the same transaction, so a retry gets that answer again (a retry
racing the first waits for its row lock, then finds the stored answer through the unique key).

A code that is malformed or fails its check symbol is refused before any lookup. A key (or, on
the public page, an address) that keeps trying codes that do not exist is slowed down, one
request at a time with a growing delay, and logged by the key's name — never with the code. Its
misses are counted in the state store, so all workers share the count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    StringConstraints,
    model_validator,
)
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from bot.rewards.guesses import Guess, TooManyGuesses, get_guesses, lifespan
from bot.rewards.vouchers import (
    HALL_CODE,
    code_hash,
    current_state,
    display_code,
    parse_code,
    voucher_row,
)
from bot.runtime import Runtime
from bot.web import audit
from bot.web.audit import Actor
from bot.web.auth import require_actor, require_role
from bot.web.deps import RuntimeDep, get_runtime
from bot.web.limits import Line, Moment
from bot.web.problems import API_ERRORS, errors
from storage.models import ApiKey, UTCDateTime
from storage.tables import halls, key_halls, ratings, redemptions, vouchers

log = logging.getLogger("ratebot.parking")


MAX_REPORT_DAYS = 366
YEARS = (2000, 2100)  # the times a gate or a report may name: far from any calendar's edge
MAX_STAY = timedelta(days=366)


router = APIRouter(prefix="/api/v1", lifespan=lifespan, responses=API_ERRORS)


# --- the gate's API -------------------------------------------------------------------------


class RedeemIn(BaseModel):
    """What the gate knows when the car leaves. The plate is kept only as a keyed hash."""

    model_config = ConfigDict(extra="forbid")

    plate: Annotated[Line, StringConstraints(max_length=16)]
    lot: Annotated[Line, StringConstraints(max_length=64)]
    entered_at: Moment
    exited_at: Moment

    @model_validator(mode="after")
    def _exit_after_entry(self) -> RedeemIn:
        for moment in (self.entered_at, self.exited_at):
            if not YEARS[0] <= moment.year <= YEARS[1]:
                raise ValueError(f"times must be within the years {YEARS[0]}-{YEARS[1]}")
        if self.exited_at < self.entered_at:
            raise ValueError("exited_at is before entered_at")
        if self.exited_at - self.entered_at > MAX_STAY:
            raise ValueError(f"a stay longer than {MAX_STAY.days} days is not a parking visit")
        return self


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


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
    view: dict[str, Any] = jsonable_encoder(
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
    return view


@asynccontextmanager
async def _guess(request: Request, key: ApiKey, typed: str) -> AsyncIterator[tuple[str, Guess]]:
    """The code in the path, in the key's turn (after its wait): a malformed one is refused
    (422) unlooked-up, and counted as a miss; 429 when the key's earlier requests hold the turn
    too long."""
    guesses = get_guesses(request)
    try:
        async with guesses.turn(f"key:{key.id}") as guess:
            code = parse_code(typed)
            if code is None:
                await guess.missed(f"API key {key.name!r}", typed)
                raise HTTPException(
                    422,
                    "malformed voucher code: 11 letters and digits (no 0, 1, I, O) with a valid "
                    "check",
                )
            yield code, guess
    except TooManyGuesses:
        raise HTTPException(
            429,
            "too many unknown voucher codes tried: one request at a time, slowed down",
            headers={"Retry-After": str(int(guesses.max_delay))},
        ) from None


async def _not_found(key: ApiKey, guess: Guess, code: str) -> HTTPException:
    await guess.missed(f"API key {key.name!r}", code)
    return HTTPException(404, "no such voucher")


ParkingKey = Annotated[ApiKey, require_role("parking")]


@router.get("/parking/vouchers/{code}", responses=errors(404, 429))
async def get_voucher(code: str, request: Request, key: ParkingKey) -> dict[str, Any]:
    """A voucher's state, hall, free minutes and times, for the gate."""
    rt = get_runtime(request)
    async with _guess(request, key, code) as (compact, guess):

        def find() -> tuple[Any, bool]:
            with rt.db.connect() as conn:
                row = voucher_row(conn, rt.privacy, compact)
                return row, row is not None and _may_use(conn, key, row.hall_code)

        row, allowed = await run_in_threadpool(find)
        if row is None:
            raise await _not_found(key, guess, compact)
    if not allowed:
        raise HTTPException(403, f"this key is not for hall {row.hall_code}")
    return voucher_view(row, compact, rt.clock())


@router.post("/parking/vouchers/{code}/redeem", responses=errors(404, 409, 429))
async def redeem_voucher(
    code: str,
    body: RedeemIn,
    request: Request,
    key: ParkingKey,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JSONResponse:
    """Redeem a voucher at the gate: 200 with the minutes granted, exactly once."""
    rt = get_runtime(request)
    async with _guess(request, key, code) as (compact, guess):
        answer = await run_in_threadpool(_redeem, rt, key, compact, body, idempotency_key)
        if answer is None:
            raise await _not_found(key, guess, compact)
    return answer.response()


def _redeem(
    rt: Runtime, key: ApiKey, code: str, body: RedeemIn, idempotency_key: str | None
) -> Answer | None:
    """The answer to one redemption (``None``: no such voucher)."""
    # Keyed by the code's HMAC, never the code: what is stored must not lead back to it.
    fingerprint = hashlib.sha256(
        json.dumps(
            [code_hash(rt.privacy, code), body.model_dump(mode="json")], sort_keys=True
        ).encode()
    ).hexdigest()
    now = rt.clock()
    with rt.db.connect() as conn:
        if idempotency_key is not None:
            first = _first_answer(conn, key, idempotency_key, fingerprint, code)
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
                            # the code blanked: it is kept only hashed (put back on replay)
                            response=answer.body
                            | ({"code": None} if "code" in answer.body else {}),
                            created_at=now,
                        )
                    )
        except IntegrityError:  # the same Idempotency-Key, concurrently: it answered first
            assert idempotency_key is not None
            first = _first_answer(conn, key, idempotency_key, fingerprint, code)
            if first is None:
                raise
            return first
    return answer


def _first_answer(
    conn: sa.Connection, key: ApiKey, idempotency_key: str, fingerprint: str, code: str
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
    body = dict(stored.response)
    if "code" in body:
        body["code"] = display_code(code)
    return Answer(stored.status_code, body)


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


@router.post("/vouchers/{code}/revoke", responses=errors(404, 409))
def revoke_voucher(
    code: str, body: RevokeIn, rt: RuntimeDep, actor: Annotated[Actor, require_actor()]
) -> dict[str, Any]:
    """Withdraw an unused voucher (e.g. an appeal showed the rating was fraudulent); with
    ``flag_citizen`` the rating's citizen earns no further vouchers. 409 once redeemed."""
    compact = parse_code(code)
    if compact is None:
        raise HTTPException(422, "malformed voucher code")
    now = rt.clock()
    with rt.db.begin() as conn:  # an HTTPException inside rolls everything back
        row = voucher_row(conn, rt.privacy, compact)
        if row is None:
            raise HTTPException(404, "no such voucher")
        revoked = conn.execute(
            sa.update(vouchers)
            .where(vouchers.c.id == row.id, vouchers.c.state.in_(("issued", "expired")))
            .values(state="revoked", revoked_at=now, revoke_reason=body.reason, closed_at=now)
        )
        before = row.state
        row = voucher_row(conn, rt.privacy, compact)
        if row.state == "redeemed":  # before, or by a gate at this very moment
            raise HTTPException(409, f"voucher already redeemed at {row.redeemed_at.isoformat()}")
        if revoked.rowcount == 1:
            audit.write(
                conn,
                actor,
                "revoked",
                "voucher",
                row.id,
                now,
                before={"state": before},
                after={"state": "revoked", "citizen_flagged": body.flag_citizen},
                reason=body.reason,
            )
        if body.flag_citizen:
            citizen = conn.execute(
                sa.select(ratings.c.citizen_hash).where(ratings.c.id == row.rating_id)
            ).scalar()
            if citizen is not None:
                conn.execute(FLAG_CITIZEN, {"citizen": citizen, "reason": body.reason, "now": now})
    return {**voucher_view(row, compact, now), "citizen_flagged": body.flag_citizen}


# --- the report -----------------------------------------------------------------------------

COUNTS = ("issued", "redeemed", "expired", "revoked")


@router.get("/reports/vouchers", dependencies=[require_role("admin")], responses=errors(404))
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
    if any(day is not None and not YEARS[0] <= day.year <= YEARS[1] for day in (since, until)):
        # before the default is worked out: 0001-01-01 minus 29 days is no date (a 500)
        raise HTTPException(422, f"from and to must be within the years {YEARS[0]}-{YEARS[1]}")
    until = until or now.astimezone(rt.settings.zone).date()
    since = since or until - timedelta(days=29)
    if not (YEARS[0] <= since.year and until.year <= YEARS[1]):
        raise HTTPException(422, f"from and to must be within the years {YEARS[0]}-{YEARS[1]}")
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
    body: dict[str, Any] = jsonable_encoder({"from": since, "to": until, "halls": report})
    return body
