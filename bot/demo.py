"""``ratebot serve --demo``: the service with what a first try needs, made inside the serving
process on its first start and reused on the next.

It runs in the serving process (not as a command of its own) because on the embedded defaults a
conversation lives in that process's memory: a sample case reported by another process would
open its conversation there and lose it, and the citizen's reply would start a rating about no
case. Made once, each with its audit row: a staff account (admin) for the pages, a platform key,
a hall that gives free parking for a rating, and a sample case reported through the API with the
key, whose invitation the console outbox prints. Quiet hours are off for the demo, so the
invitation goes out at whatever hour it is tried.
"""

from __future__ import annotations

import json
import secrets
import shlex
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlmodel import Session as DbSession
from starlette.concurrency import run_in_threadpool

from bot.app import create_app
from bot.pages.accounts import create_user, find_user
from bot.rewards.halls import HallIn, ParkingIn, save_halls
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.keys import create_api_key, list_api_keys
from storage.models import utcnow
from storage.tables import halls, invitations, ratings, records

ADMIN = "demo-admin"
KEY_NAME = "demo-platform"
HALL_CODE = "DEMO-HALL"
HALL_NAME = "示例市政务服务中心"
FREE_MINUTES = 120
RECORD_NO = "DEMO-0001"
PHONE = "+8613800138000"
SAMPLE_CASE = {
    "record_no": RECORD_NO,
    "item_code": "DEMO-ITEM-001",
    "item_name": "不动产登记",
    "department": "示例市自然资源局",
    "district": "370000",
    "hall": HALL_NAME,
    "window": "A1",
    "citizen": {"phone": PHONE},
}


@dataclass
class Made:
    """What the demo made this time and what it found already there, as lines to print."""

    lines: list[str] = field(default_factory=list)
    key: str | None = None  # the platform key, when made now (it is shown only once)
    reported: bool = False  # the sample case was reported now: its conversation is open here

    def say(self, what: str, text: str) -> None:
        self.lines.append(f"  {what:<14}{text}")


def demo_settings(settings: Settings) -> tuple[Settings, bool]:
    """The settings of the demo: no quiet hours (the invitation goes at any hour), and a Twilio
    auth token for the SMS webhook when none is set (``simulate-sms`` signs with it; with no
    account SID nothing is sent, the console outbox prints). True when the token was made."""
    made = not settings.twilio_auth_token
    token = settings.twilio_auth_token or "demo-" + secrets.token_urlsafe(16)
    return settings.model_copy(update={"quiet_hours": "", "twilio_auth_token": token}), made


def served_demo() -> FastAPI:
    """The app ``ratebot serve --demo`` runs (uvicorn's factory, in the serving process)."""
    settings, token_made = demo_settings(Settings())
    return demo_app(settings, token_made)


def demo_app(
    settings: Settings, token_made: bool, *, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    """The app of :func:`bot.app.create_app`, which makes (or finds) the demo's things once it
    has started, then prints them and the commands to try next."""
    app = create_app(settings, clock=clock)
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with started(app) as state:
            made = await make(app, app.state.runtime)
            print(summary(settings, made, token_made, app.state.runtime.clock()), flush=True)
            yield state

    app.router.lifespan_context = lifespan
    return app


async def make(app: FastAPI, rt: Runtime) -> Made:
    """Make what is missing, say what is there."""
    made = Made()
    await run_in_threadpool(_admin, rt, made)
    await run_in_threadpool(_platform_key, rt, made)
    await run_in_threadpool(_hall, rt, made)
    await _sample_case(app, rt, made)
    return made


def _admin(rt: Runtime, made: Made) -> None:
    with rt.db.begin() as conn:
        if find_user(conn, ADMIN) is not None:
            made.say(
                "staff account",
                f"{ADMIN} (admin) exists; a new password: ratebot user reset-password {ADMIN}",
            )
            return
        password = secrets.token_urlsafe(12)
        create_user(conn, name=ADMIN, role="admin", password=password, now=rt.clock())
    made.say("staff account", f"{ADMIN} (admin), password {password} (shown only now)")


def _platform_key(rt: Runtime, made: Made) -> None:
    with rt.db.connect() as conn:
        existing = [
            k
            for k in list_api_keys(conn)
            if k.name == KEY_NAME and k.role == "platform" and k.revoked_at is None
        ]
    if existing:
        made.say(
            "platform key",
            f"{KEY_NAME} exists (id {existing[0].id}; shown only when it was made); "
            f"a new one: ratebot apikey revoke {KEY_NAME}, then serve --demo again",
        )
        return
    with DbSession(rt.db) as db:
        made.key = create_api_key(db, role="platform", name=KEY_NAME, now=rt.clock())
    made.say("platform key", f"{KEY_NAME}: {made.key} (shown only now)")


def _hall(rt: Runtime, made: Made) -> None:
    with rt.db.connect() as conn:
        found = conn.execute(sa.select(halls).where(halls.c.code == HALL_CODE)).first()
    if found is None:
        hall = HallIn(
            name=HALL_NAME,
            timezone=rt.settings.timezone,
            parking=ParkingIn(enabled=True, free_minutes=FREE_MINUTES, valid_hours=72),
        )
        save_halls(rt, [(HALL_CODE, hall)])
        made.say("hall", f"{HALL_CODE} {HALL_NAME}: {FREE_MINUTES} min free parking per rating")
    else:
        parking = (
            f"{found.free_minutes} min free parking" if found.parking_enabled else "no parking"
        )
        made.say("hall", f"{HALL_CODE} {found.name} exists ({parking})")


async def _sample_case(app: FastAPI, rt: Runtime, made: Made) -> None:
    state = await run_in_threadpool(_case_state, rt)
    if state is not None:
        made.say("sample case", f"{RECORD_NO} exists ({state})")
        return
    if made.key is None:
        made.say(
            "sample case",
            f"{RECORD_NO} not reported: the platform key {KEY_NAME} was made earlier and is "
            "shown only once (revoke it and serve --demo again)",
        )
        return
    # Reported as the service platform would: through the API, with the platform key.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=rt.settings.public_url) as client:
        response = await client.post(
            "/api/v1/service-records",
            json=SAMPLE_CASE,
            headers={"Authorization": f"Bearer {made.key}"},
        )
    response.raise_for_status()  # the demo's own case: a refusal is a bug, not input
    [invitation] = response.json()["invitations"]
    made.reported = True
    made.say("sample case", f"{RECORD_NO} reported; invitation {invitation['status']} (above)")


def _case_state(rt: Runtime) -> str | None:
    """How the sample case stands, or None when it was never reported."""
    with rt.db.connect() as conn:
        record_id = conn.execute(
            sa.select(records.c.id).where(records.c.record_no == RECORD_NO)
        ).scalar()
        if record_id is None:
            return None
        status = conn.execute(
            sa.select(invitations.c.status, invitations.c.reason)
            .where(invitations.c.record_id == record_id)
            .order_by(invitations.c.id)
        ).first()
        level = conn.execute(
            sa.select(ratings.c.level)
            .where(ratings.c.record_id == record_id)
            .order_by(ratings.c.id.desc())
        ).scalar()
    invited = "no invitation" if status is None else f"invitation {status.status}"
    if status is not None and status.reason:
        invited += f": {status.reason}"
    return f"{invited}; rated {level}" if level is not None else f"{invited}; not rated yet"


def another_case(now: datetime) -> dict[str, Any]:
    """A case for a later try: its own number and phone (the cooldown holds a second invitation
    to the sample case's phone for a day), both taken from the time of day."""
    return {
        **SAMPLE_CASE,
        "record_no": f"DEMO-{now:%Y%m%d-%H%M%S}",
        "citizen": {"phone": f"+861380013{now:%H%M}"},
    }


def summary(settings: Settings, made: Made, token_made: bool, now: datetime) -> str:
    """What was made, and the commands to try next (exact, for another terminal)."""
    base = settings.public_url
    token = shlex.quote(settings.twilio_auth_token or "")
    url = "" if base == Settings.model_fields["public_url"].default else f" --url {base}"
    steps = [
        f"export RATEBOT_TWILIO_AUTH_TOKEN={token}"
        if token_made
        else "# the same RATEBOT_TWILIO_AUTH_TOKEN as this server's"
    ]
    if made.reported:
        record_no, phone = RECORD_NO, PHONE
        steps.append(f"export RATEBOT_KEY={made.key}")
        intro = "the citizen answers the invitation above by SMS"
    else:
        case = another_case(now)
        record_no, phone = case["record_no"], case["citizen"]["phone"]
        body = shlex.quote(json.dumps(case, ensure_ascii=False, separators=(",", ":")))
        steps += [
            "export RATEBOT_KEY=$(ratebot apikey create --role platform --name demo-try | tail -1)",
            f'curl -s -X POST -H "Authorization: Bearer $RATEBOT_KEY" '
            f"-H 'Content-Type: application/json' -d {body} {base}/api/v1/service-records",
        ]
        intro = (
            "a new case with a new phone (the sample case's conversation ended with the last run)"
        )
    sms = f"ratebot simulate-sms{url} --phone {phone}"
    steps += [
        f"{sms} 5455   # overall 5; attitude 4, efficiency 5, convenience 5",
        f"{sms} 0      # no comment: thanks, and the parking voucher",
        f'curl -s -H "Authorization: Bearer $RATEBOT_KEY" '
        f"{base}/api/v1/service-records/{record_no}",
    ]
    lines = [
        "",
        f"ratebot demo at {base}; quiet hours are off for the demo, so an invitation goes out at",
        "any hour (a deployment keeps RATEBOT_QUIET_HOURS: no messages at night):",
        *made.lines,
        "",
        f"Next, in another terminal in this directory ({intro}):",
        *(f"  {step}" for step in steps),
        "",
        f"Staff pages: {base}/login as {ADMIN}. The API's reference: {base}/docs.",
        "",
    ]
    return "\n".join(lines)
