"""Halls, finished ratings and their vouchers, for the parking tests."""

from __future__ import annotations

import re
from typing import Any

from bot.rewards.guesses import Guesses
from bot.rewards.vouchers import check_symbol, new_code
from tests.bot.conftest import PHONE, Harness

HALL = "YT-001"
HALL_NAME = "烟台市政务服务中心"  # what tests.samples.service_record reports as its hall
CODE = re.compile(r"\b[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{3}\b")


async def put_hall(
    h: Harness,
    code: str = HALL,
    *,
    name: str = HALL_NAME,
    enabled: bool = True,
    free_minutes: int = 120,
    valid_hours: int = 48,
    timezone: str = "Asia/Shanghai",
) -> dict[str, Any]:
    response = await h.client.put(
        f"/api/v1/halls/{code}",
        json={
            "name": name,
            "timezone": timezone,
            "parking": {
                "enabled": enabled,
                "free_minutes": free_minutes,
                "valid_hours": valid_hours,
            },
        },
        headers=admin(h),
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def admin(h: Harness) -> dict[str, str]:
    if not hasattr(h, "_admin"):
        h._admin = h.api_key("admin")  # type: ignore[attr-defined]
    return h._admin  # type: ignore[attr-defined,no-any-return]


async def finish_rating(
    h: Harness, record_no: str, *, phone: str = PHONE, level: int = 5, report: bool = True
) -> str:
    """Report the case (unless ``report`` is false), rate it to the end by SMS; the last reply."""
    if report:
        response = await h.report(record_no, phone=phone)
        assert response.status_code == 201, response.text
    if level >= 3:
        await h.reply_text(f"{level} 4 5 5", phone=phone)
        return await h.reply_text("0", phone=phone)  # skip the comment
    await h.reply_text(f"{level} 2 2 1", phone=phone)
    await h.reply_text("13", phone=phone)
    await h.reply_text("材料被要求补交了三次", phone=phone)
    return await h.reply_text("2", phone=phone)  # no callback


def voucher_code(text: str) -> str:
    found = CODE.search(text)
    assert found, f"no voucher code in {text!r}"
    return found.group(0)


async def earn_voucher(h: Harness, record_no: str, *, phone: str = PHONE) -> str:
    """A finished rating's voucher code (compact form)."""
    return voucher_code(await finish_rating(h, record_no, phone=phone)).replace("-", "")


def parking_key(h: Harness, *halls: str, name: str = "gate") -> dict[str, str]:
    """A parking key good for ``halls``."""
    from sqlmodel import Session as DbSession

    from bot.web.keys import create_api_key

    with DbSession(h.rt.db) as db:
        key = create_api_key(db, role="parking", name=name, now=h.clock(), halls=halls or (HALL,))
    return {"Authorization": f"Bearer {key}"}


def exit_body(minutes: int = 95, **changes: Any) -> dict[str, Any]:
    """What the gate posts when the car leaves after ``minutes``."""
    entered = "2026-11-27T09:00:00+08:00"
    hours, rest = divmod(minutes, 60)
    body = {
        "plate": "鲁F12345",
        "lot": "P1",
        "entered_at": entered,
        "exited_at": f"2026-11-27T{9 + hours:02d}:{rest:02d}:00+08:00",
    }
    return {**body, **changes}


def unknown_code() -> str:
    """A well-formed code (its check symbol right) that was never issued."""
    payload = new_code()[:-1]
    return payload + check_symbol(payload)


def recorded_waits(h: Harness) -> list[float]:
    """The delays the app's guess counters ask for from now on, recorded instead of slept."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    assert h.app is not None
    guesses: Guesses = h.app.state.guesses
    guesses.sleep = sleep
    return waits
