"""Fault tests: an app on a PostgreSQL cluster and a Redis of their own, which the tests stop,
start and cut off, and citizens on every channel (SMS, voice, WeChat, Telegram) to talk to it.

The servers are the tests' own (``tests/faults/servers.py``); the shared test servers stay up.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bot.runtime import Runtime
from storage.db import normalize_url, upgrade
from storage.state import conversation_store_from_url
from tests.bot.conftest import PUBLIC_URL, FakeClock, Harness, make_settings, serving
from tests.bot.webhooks.test_telegram import TG, message_update, telegram_settings
from tests.bot.webhooks.test_voice import Call, _next_action, spoken
from tests.bot.webhooks.test_wechat import WX, message_xml, wechat_settings
from tests.conftest import truncate_all
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.wechat_api import FakeWeChat
from tests.faults.servers import PostgresCluster, RedisServer

# A turn that outlived its process holds the conversation's lock this long (30 s in production:
# the provider's retry meanwhile gets the busy reply); short here so the retry is handled.
LOCK_EXPIRY = 1.0


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.create()
        upgrade(cluster.url)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg(pg_cluster: PostgresCluster) -> PostgresCluster:
    """The cluster, running, its tables empty."""
    if not pg_cluster.running:
        pg_cluster.start()
    truncate_all(normalize_url(pg_cluster.url))
    return pg_cluster


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    server.start()
    yield server
    server.close()


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    fake.url = fake.start()  # type: ignore[attr-defined]
    yield fake
    fake.stop()


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChat]:
    fake = FakeWeChat()
    fake.url = fake.start()  # type: ignore[attr-defined]
    yield fake
    fake.stop()


# --- citizens on every channel --------------------------------------------------------------


def twiml_text(response: httpx.Response) -> str:
    root = ET.fromstring(response.text)
    assert root.tag == "Response", response.text
    return "\n".join(m.text or "" for m in root.iter("Message")) or spoken(root)


@dataclass
class Citizen:
    """One citizen's conversation on one channel. ``send`` posts one message exactly as the
    provider would (``delivery``: the provider's id of it, the same again on a retry) and
    returns the HTTP response; ``reply`` reads the answer the citizen got from it."""

    channel: str
    post: Callable[[str, str], Any]  # (text, delivery) -> awaitable Response
    read: Callable[[httpx.Response, int], str]  # (response, Bot API calls before) -> text
    sent: Callable[[], int] = lambda: 0  # Bot API calls so far (Telegram sends its replies)
    call: Call | None = None  # a caller's phone call
    deliveries: Iterator[int] = field(default_factory=lambda: count(1))

    def next_delivery(self) -> str:
        return str(next(self.deliveries))

    async def send(self, text: str, delivery: str) -> tuple[httpx.Response, str | None]:
        """Post; the response and, when it is a 200, the citizen's answer."""
        before = self.sent()
        response = await self.post(text, delivery)
        if response.status_code not in (200, 204):
            return response, None
        return response, self.read(response, before)

    async def say(self, text: str) -> str:
        response, answer = await self.send(text, self.next_delivery())
        assert response.status_code == 200 and answer is not None, response.text
        return answer


def sms_citizen(h: Harness, phone: str) -> Citizen:
    async def post(text: str, delivery: str) -> httpx.Response:
        return await h.sms(text, phone=phone, sid=f"SM{phone[-8:]}{int(delivery):024d}")

    return Citizen("sms", post, lambda r, _: twiml_text(r))


def voice_citizen(h: Harness, phone: str) -> Citizen:
    """A caller who is asked the first question on calling; ``say`` presses keys (the delivery is
    the call and its turn: a retry posts the same action URL again)."""
    call = Call(h, phone=phone)
    actions: dict[str, str] = {}

    async def post(text: str, delivery: str) -> httpx.Response:
        if text == "" and delivery == "0":
            return await call.post(f"{PUBLIC_URL}/channels/voice")
        if delivery not in actions:
            assert call.action is not None
            actions[delivery] = call.action
        return await call.post(actions[delivery], Digits=text)

    def read(response: httpx.Response, _: int) -> str:
        root = ET.fromstring(response.text)
        call.twiml = root
        call.action = _next_action(root)
        return spoken(root)

    return Citizen("voice", post, read, call=call)


def wechat_citizen(wx: WX, openid: str) -> Citizen:
    times = count(1_790_000_000)

    async def post(text: str, delivery: str) -> httpx.Response:
        xml = message_xml(
            "text",
            openid=openid,
            create_time=next(times),
            Content=text,
            MsgId=int(f"{abs(hash(openid)) % 10_000}{int(delivery):08d}"),
        )
        return await wx.post(xml)

    def read(response: httpx.Response, _: int) -> str:
        import xmltodict

        return (
            ""
            if response.text == "success"
            else str(xmltodict.parse(response.text)["xml"]["Content"])
        )

    return Citizen("wechat", post, read)


def telegram_citizen(tg: TG, chat_id: int) -> Citizen:
    async def post(text: str, delivery: str) -> httpx.Response:
        update = message_update(chat_id * 1000 + int(delivery), text, chat_id=chat_id)
        return await tg.post(update)

    def read(response: httpx.Response, before: int) -> str:
        calls = tg.fake.calls[before:]
        return "\n".join(str(c.params.get("text", "")) for c in calls if c.method == "sendMessage")

    return Citizen("telegram", post, read, sent=lambda: len(tg.fake.calls))


@dataclass
class Deployment:
    """One app process on the fault tests' PostgreSQL and Redis, with every channel set up."""

    h: Harness
    tg: TG
    wx: WX

    @property
    def rt(self) -> Runtime:
        return self.h.rt

    def citizens(self, n: int = 1) -> list[Citizen]:
        """One citizen per channel (the n-th of each)."""
        return [
            sms_citizen(self.h, f"+86138000{n:05d}"),
            voice_citizen(self.h, f"+86139000{n:05d}"),
            wechat_citizen(self.wx, f"oFault{n:022d}"),
            telegram_citizen(self.tg, 700_000_000 + n),
        ]

    def count(self, sql: str) -> int:
        with self.rt.db.connect() as db:
            return int(db.execute(sa.text(sql)).scalar_one())


@asynccontextmanager
async def deployment(
    pg: PostgresCluster,
    redis_server: RedisServer,
    clock: FakeClock,
    fake_telegram: FakeTelegram,
    fake_wechat: FakeWeChat,
    **overrides: Any,
) -> AsyncIterator[Deployment]:
    wechat = {k: v for k, v in wechat_settings(fake_wechat).items() if k != "wechat_secret"}
    settings = make_settings(
        pg.url,
        redis_url=redis_server.url,
        **telegram_settings(fake_telegram),
        **wechat,  # passive replies: the answer is in the response
        **overrides,
    )
    async with serving(settings, clock) as h:
        await h.rt.store.close()
        h.rt.store = conversation_store_from_url(
            redis_server.url, lock_expiry=LOCK_EXPIRY, lock_timeout=3 * LOCK_EXPIRY
        )
        yield Deployment(h, TG(h, fake_telegram), WX(h, fake_wechat))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def app(
    pg: PostgresCluster,
    redis_server: RedisServer,
    clock: FakeClock,
    fake_telegram: FakeTelegram,
    fake_wechat: FakeWeChat,
) -> AsyncIterator[Deployment]:
    async with deployment(pg, redis_server, clock, fake_telegram, fake_wechat) as d:
        yield d
