"""An app on a temporary database, a fake clock, Twilio-signed requests and API keys."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session as DbSession
from twilio.request_validator import RequestValidator

from bot.app import create_app
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.keys import create_api_key
from storage.db import upgrade
from tests.conftest import truncate_all
from tests.fakes.twilio_api import FakeTwilio
from tests.samples import PHONE, service_record

PUBLIC_URL = "https://ratebot.example.gov.cn"
AUTH_TOKEN = "test-auth-token"


class FakeClock:
    """The app's clock, moved by hand. Starts on a Friday at 10:00 in Shanghai (02:00 UTC)."""

    def __init__(self, now: datetime = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "public_url": PUBLIC_URL,
        "secret_key": "test-secret-key-0123456789abcdef0123456789",
        "twilio_auth_token": AUTH_TOKEN,
        "quiet_hours": "",
        "run_worker": False,
        "redis_url": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Harness:
    """Drives the app over HTTP as Twilio and the service platform would."""

    client: httpx.AsyncClient
    rt: Runtime
    clock: FakeClock
    sids: Iterator[int] = field(default_factory=lambda: count(1))
    app: FastAPI | None = None  # for a test that looks at the app's own state

    def signed(self, path: str, form: dict[str, str]) -> dict[str, str]:
        signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + path, form)
        return {"X-Twilio-Signature": signature}

    async def sms(self, body: str, *, phone: str = PHONE, sid: str | None = None) -> httpx.Response:
        form = {
            "From": phone,
            "To": "+8610690000",
            "Body": body,
            "MessageSid": sid or f"SM{next(self.sids):032d}",
        }
        return await self.client.post(
            "/channels/sms", data=form, headers=self.signed("/channels/sms", form)
        )

    async def reply_text(self, body: str, **kwargs: Any) -> str:
        """Send an SMS and return the text of the TwiML reply ("" for an empty <Response/>)."""
        import xml.etree.ElementTree as ET

        response = await self.sms(body, **kwargs)
        assert response.status_code == 200, response.text
        root = ET.fromstring(response.text)
        assert root.tag == "Response"
        return "\n".join(m.text or "" for m in root.iter("Message"))

    def api_key(self, role: str = "platform", *departments: str) -> dict[str, str]:
        with DbSession(self.rt.db) as db:
            key = create_api_key(
                db, role=role, name=f"test {role}", now=self.clock(), departments=departments
            )
        return {"Authorization": f"Bearer {key}"}

    async def report(
        self, record_no: str = "370200-2026-0001", *, phone: str | None = PHONE, **fields: Any
    ) -> httpx.Response:
        body = {**service_record(record_no, phone), **fields}
        if not hasattr(self, "_platform"):
            self._platform = self.api_key("platform")
        return await self.client.post("/api/v1/service-records", json=body, headers=self._platform)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli.db"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> str:
    """For in-process runs of ``bot.cli.main``: no RATEBOT_* but the database, and no .env in
    the working directory."""
    for name in list(os.environ):
        if name.startswith("RATEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RATEBOT_DATABASE_URL", sqlite_url)
    return sqlite_url


# The app tests' own Redis database, flushed before each test (another number for a second
# test run beside the first: RATEBOT_TEST_APP_REDIS_DB).
APP_REDIS_DB = int(os.environ.get("RATEBOT_TEST_APP_REDIS_DB", "13"))


@pytest.fixture(params=["embedded", "scaled"])
def backend(request: pytest.FixtureRequest, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Every app test runs twice: on the embedded defaults (SQLite file, in-process state) and on
    the scaled-out stores (PostgreSQL, Redis) that a province runs."""
    if request.param == "embedded":
        url = f"sqlite:///{tmp_path}/ratebot.db"
        upgrade(url)
        return {"database_url": url, "redis_url": None}
    import redis

    postgres_url = request.getfixturevalue("postgres_url")
    truncate_all(postgres_url)
    redis_url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + f"/{APP_REDIS_DB}"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return {"database_url": postgres_url, "redis_url": redis_url}


@pytest.fixture
def database_url(backend: dict[str, Any]) -> str:
    return str(backend["database_url"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the app's settings."""
    return {}


@asynccontextmanager
async def serving(settings: Settings, clock: FakeClock) -> AsyncIterator[Harness]:
    """An app on ``settings``, started (its lifespan run) and driven over HTTP in-process."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            yield Harness(client=client, rt=app.state.runtime, clock=clock, app=app)


@pytest.fixture
async def harness(
    backend: dict[str, Any], clock: FakeClock, settings_overrides: dict[str, Any]
) -> AsyncIterator[Harness]:
    async with serving(make_settings(**backend, **settings_overrides), clock) as h:
        yield h


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio()
    fake.url = fake.start()  # type: ignore[attr-defined]
    yield fake
    fake.stop()


@pytest.fixture
async def harness_quiet(backend: dict[str, Any], clock: FakeClock) -> AsyncIterator[Harness]:
    """An app with the default quiet hours (21:00-08:00 Shanghai)."""
    async with serving(make_settings(**backend, quiet_hours="21:00-08:00"), clock) as h:
        yield h


TWILIO_FROM = "+10005550100"


@pytest.fixture
async def twilio_harness(
    database_url: str, clock: FakeClock, fake_twilio: FakeTwilio
) -> AsyncIterator[Harness]:
    """An app that sends SMS and places calls through the real twilio client, to a fake Twilio
    API on 127.0.0.1."""
    settings = make_settings(
        database_url,
        twilio_account_sid=fake_twilio.account_sid,
        twilio_auth_token=fake_twilio.auth_token,
        twilio_from=TWILIO_FROM,
        twilio_api_url=fake_twilio.url,  # type: ignore[attr-defined]
    )
    async with serving(settings, clock) as h:
        yield h
