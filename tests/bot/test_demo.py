"""``ratebot serve --demo``: on the embedded defaults and with no credentials it makes an admin
account, a platform key, a hall with parking and a sample case whose invitation goes out at any
hour; following the commands it prints ends with a rated case and a voucher; a second start
makes nothing twice and says what is there."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from bot import demo
from bot.cli import main
from bot.pages.accounts import find_user, password_matches
from storage.db import upgrade
from storage.tables import audit_log, halls, records, users
from tests.bot.conftest import PUBLIC_URL, FakeClock, make_settings

NIGHT = FakeClock()
NIGHT.advance(hours=13)  # 23:00 in Shanghai: inside the default quiet hours


@asynccontextmanager
async def started(url: str, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Any]:
    """The demo's app on ``url`` as ``serve --demo`` makes it (default quiet hours, no Twilio
    token), started; yields (client, what it printed, the settings)."""
    settings, token_made = demo.demo_settings(
        make_settings(url, twilio_auth_token=None, quiet_hours="21:00-08:00")
    )
    app = demo.demo_app(settings, token_made, clock=NIGHT)
    async with app.router.lifespan_context(app):
        printed = capsys.readouterr().out
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            yield client, printed, settings


async def sms(client: httpx.AsyncClient, token: str, phone: str, text: str, n: int) -> str:
    form = {"From": phone, "To": "", "Body": text, "MessageSid": f"SM-demo-{n}"}
    signature = RequestValidator(token).compute_signature(f"{PUBLIC_URL}/channels/sms", form)
    response = await client.post(
        "/channels/sms", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200, response.text
    return response.text


def engine_of(url: str) -> sa.Engine:
    return sa.create_engine(url)


def printed_commands(printed: str, start: str) -> list[str]:
    """The commands printed that start with ``start``, without their comments."""
    lines = [line.strip() for line in printed.splitlines()]
    return [line.split("   #")[0].strip() for line in lines if line.startswith(start)]


async def test_the_demo_ends_with_a_rated_case_at_night_and_makes_nothing_twice(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    upgrade(url)
    async with started(url, capsys) as (client, printed, settings):
        assert "[outbox sms] to +86 138****8000:" in printed  # the invitation, at 23:00
        assert "quiet hours are off for the demo" in printed
        password = re.search(r"demo-admin \(admin\), password (\S+)", printed)
        key = re.search(r"demo-platform: (rbk_\S+)", printed)
        assert password and key
        token = settings.twilio_auth_token
        assert printed_commands(printed, "export RATEBOT_TWILIO_AUTH_TOKEN=") == [
            f"export RATEBOT_TWILIO_AUTH_TOKEN={token}"
        ]
        replies = [c.split() for c in printed_commands(printed, "ratebot simulate-sms")]
        assert [r[:6] for r in replies] == [
            ["ratebot", "simulate-sms", "--url", PUBLIC_URL, "--phone", demo.PHONE]
        ] * 2
        # What the printed commands do, as simulate-sms does it:
        await sms(client, token, demo.PHONE, replies[0][6], 1)
        thanks = await sms(client, token, demo.PHONE, replies[1][6], 2)
        assert "免费停车120分钟" in thanks
        record = await client.get(
            f"/api/v1/service-records/{demo.RECORD_NO}",
            headers={"Authorization": f"Bearer {key.group(1)}"},
        )
        rating = record.json()["rating"]
        assert (rating["level"], rating["dimensions"]) == (
            5,
            {"attitude": 4, "efficiency": 5, "convenience": 5},
        )
        with engine_of(url).begin() as conn:  # the password printed is the account's
            assert password_matches(conn, find_user(conn, demo.ADMIN), password.group(1))

    async with started(url, capsys) as (client, again, settings):
        for said in (
            "demo-admin (admin) exists",
            "demo-platform exists (id 1",
            "DEMO-HALL 示例市政务服务中心 exists (120 min free parking)",
            "DEMO-0001 exists (invitation sent; rated 5)",
        ):
            assert said in again, again
        assert "[outbox sms]" not in again and "rbk_" not in again
        # The way to a second try: a new case for a new phone (the cooldown holds the first's).
        assert "export RATEBOT_KEY=$(ratebot apikey create --role platform" in again
        [post] = printed_commands(again, "curl -s -X POST")
        assert "+861380013" in post and '"record_no":"DEMO-' in post

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(halls)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(records)).scalar() == 1
        acts = conn.execute(sa.select(audit_log.c.action, audit_log.c.entity)).all()
    engine.dispose()
    assert {("create", "user"), ("create", "api_key")} <= set(acts)


@pytest.mark.parametrize(
    ("argv", "env", "refusal"),
    [
        (["--workers", "2"], {}, "one worker only"),
        ([], {"RATEBOT_ENVIRONMENT": "production", "RATEBOT_SECRET_KEY": "x" * 40}, "development"),
    ],
)
def test_serve_demo_refuses_what_it_is_not_for(
    cli_env: str,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    refusal: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as refused:
        main(["serve", "--demo", *argv])
    assert refusal in str(refused.value.code)
