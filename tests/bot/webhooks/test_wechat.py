"""The WeChat official-account channel end to end: pushes signed as WeChat signs them (plaintext),
or encrypted by wechatpy's own ``WeChatCrypto`` (safe mode), go into the app over HTTP; replies
are read (and decrypted) with wechatpy; every API call lands on a fake WeChat API on 127.0.0.1
(tests/fakes/wechat_api.py). On both backends, like every app test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import xmltodict
from pydantic import ValidationError
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from bot.app import create_app
from bot.cli import main
from bot.conversation.turn import conversation_key
from bot.settings import Settings
from channels import wechat
from tests.bot.conftest import PUBLIC_URL, FakeClock, Harness, make_settings, serving
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChat
from tests.samples import PHONE

TOKEN = "ratebotToken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
OPENID = "oAbCdEfGhIjKlMnOpQrStUvWxYz0"
ACCOUNT = "gh_0123456789ab"
RECORD = "370200-2026-0001"
OVERALL = "总体评价"
ALREADY_RATED = "您已完成对本次服务的评价"
THANKS = "评价已提交"


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def message_xml(msg_type: str, *, openid: str = OPENID, create_time: int, **fields: Any) -> str:
    body = {
        "ToUserName": ACCOUNT,
        "FromUserName": openid,
        "CreateTime": str(create_time),
        "MsgType": msg_type,
        **{k: str(v) for k, v in fields.items()},
    }
    return str(xmltodict.unparse({"xml": body}, full_document=False))


def cs_text(call: Any) -> str:
    """The text a customer-service message shows: text, or a menu's head, items and tail."""
    if call.body["msgtype"] == "msgmenu":
        menu = call.body["msgmenu"]
        items = [item["content"] for item in menu["list"]]
        return "\n".join([menu["head_content"], *items, menu["tail_content"]])
    return str(call.body["text"]["content"])


@dataclass
class WX:
    """Drives the app as WeChat's servers would."""

    h: Harness
    fake: FakeWeChat
    safe: bool = False
    crypto: WeChatCrypto = field(default_factory=lambda: WeChatCrypto(TOKEN, AES_KEY, APPID))
    ids: Iterator[int] = field(default_factory=lambda: count(7_000_000_000))
    times: Iterator[int] = field(default_factory=lambda: count(1_790_000_000))

    async def post(
        self, xml: str | bytes, *, safe: bool | None = None, query: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST a push, signed (and encrypted in safe mode) as WeChat does."""
        timestamp, nonce = str(int(time.time())), f"n{next(self.ids)}"
        params = {"timestamp": timestamp, "nonce": nonce, "openid": OPENID}
        params["signature"] = sign(TOKEN, timestamp, nonce)
        content = xml.encode() if isinstance(xml, str) else xml
        if self.safe if safe is None else safe:
            envelope = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, timestamp))["xml"]
            params.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
            content = xmltodict.unparse(
                {"xml": {"ToUserName": ACCOUNT, "Encrypt": envelope["Encrypt"]}}
            ).encode()
        params.update(query or {})
        return await self.h.client.post(
            "/channels/wechat", params=params, content=content, headers={"Content-Type": "text/xml"}
        )

    async def reply(self, xml: str, **kwargs: Any) -> dict[str, Any] | None:
        """POST a push; the passive reply's fields (decrypted in safe mode), None for success."""
        response = await self.post(xml, **kwargs)
        assert response.status_code == 200, response.text
        if response.text == "success":
            return None
        fields = dict(xmltodict.parse(response.text)["xml"])
        if "Encrypt" in fields:
            assert self.safe
            plain = self.crypto.decrypt_message(
                response.text, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"]
            )
            fields = dict(xmltodict.parse(plain)["xml"])
        else:
            assert not self.safe, "a safe-mode push got a reply in clear"
        sender = xmltodict.parse(xml)["xml"]["FromUserName"]
        assert fields["ToUserName"] == sender and fields["FromUserName"] == ACCOUNT
        assert fields["MsgType"] == "text"
        return fields

    async def answer(self, xml: str, **kwargs: Any) -> str | None:
        """POST a push; the passive reply's text, else the text of the customer-service messages
        it sent (None for neither)."""
        before = len(self.fake.custom)
        fields = await self.reply(xml, **kwargs)
        if fields is not None:
            return str(fields["Content"])
        sent = self.fake.custom[before:]
        return "\n".join(cs_text(call) for call in sent) if sent else None

    async def say(
        self,
        text: str,
        *,
        msg_id: int | None = None,
        openid: str = OPENID,
        menu_id: str | None = None,
    ) -> str:
        """The citizen types ``text`` (or taps the menu item ``menu_id`` reading ``text``); the
        reply's text, passive or sent."""
        extra = {"bizmsgmenuid": menu_id} if menu_id is not None else {}
        xml = message_xml(
            "text",
            openid=openid,
            create_time=next(self.times),
            Content=text,
            MsgId=msg_id or next(self.ids),
            **extra,
        )
        reply = await self.answer(xml)
        assert reply is not None
        return reply

    def last_menu(self) -> dict[str, Any]:
        """The last message menu sent."""
        menus = [c.body for c in self.fake.custom if c.body["msgtype"] == "msgmenu"]
        assert menus, "no message menu was sent"
        return dict(menus[-1]["msgmenu"])

    async def tap(self, value: str, *, msg_id: int | None = None) -> str:
        """The citizen taps item ``value`` of the last menu: its content comes back as text."""
        [content] = [i["content"] for i in self.last_menu()["list"] if i["id"] == value]
        return await self.say(content, menu_id=value, msg_id=msg_id)

    async def event(
        self, event: str, key: str | None = None, *, openid: str = OPENID, create_time: int = 0
    ) -> str | None:
        extra = {"EventKey": key} if key is not None else {}
        xml = message_xml(
            "event",
            openid=openid,
            create_time=create_time or next(self.times),
            Event=event,
            **extra,
        )
        return await self.answer(xml)

    async def ratings(self) -> list[dict[str, Any]]:
        response = await self.h.client.get("/api/v1/ratings", headers=self.h.api_key("admin"))
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    async def session(self, openid: str = OPENID) -> dict[str, Any] | None:
        key = conversation_key("wechat", self.h.rt.privacy.contact_hash(openid))
        return await self.h.rt.store.get(key)


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChat]:
    fake = FakeWeChat()
    fake.url = fake.start()  # type: ignore[attr-defined]
    yield fake
    fake.stop()


def wechat_settings(fake: FakeWeChat) -> dict[str, Any]:
    return {
        "wechat_token": TOKEN,
        "wechat_aes_key": AES_KEY,
        "wechat_appid": APPID,
        "wechat_secret": SECRET,
        "wechat_api_url": fake.url,  # type: ignore[attr-defined]
    }


@pytest.fixture
async def wx(
    backend: dict[str, Any], clock: FakeClock, fake_wechat: FakeWeChat
) -> AsyncIterator[WX]:
    settings = make_settings(**backend, **wechat_settings(fake_wechat))
    async with serving(settings, clock) as harness:
        yield WX(harness, fake_wechat)


# --- server verification ---------------------------------------------------------------------


async def test_server_verification_echoes_echostr(wx: WX) -> None:
    params = {"timestamp": "1790000000", "nonce": "abc", "echostr": "echo-42"}
    good = await wx.h.client.get(
        "/channels/wechat", params={**params, "signature": sign(TOKEN, "1790000000", "abc")}
    )
    assert good.status_code == 200 and good.text == "echo-42"
    assert good.headers["content-type"].startswith("text/plain")
    bad = await wx.h.client.get("/channels/wechat", params={**params, "signature": "0" * 40})
    assert bad.status_code == 403
    missing = await wx.h.client.get("/channels/wechat", params=params)
    assert missing.status_code == 403


async def test_not_configured_is_404(harness: Harness) -> None:
    for response in (
        await harness.client.get("/channels/wechat", params={"echostr": "x"}),
        await harness.client.post("/channels/wechat", content=b"<xml/>"),
    ):
        assert response.status_code == 404
        assert "RATEBOT_WECHAT_TOKEN" in response.json()["detail"]


# --- whole ratings ------------------------------------------------------------------------------


@pytest.mark.parametrize("safe", [False, True], ids=["plaintext", "safe_mode"])
async def test_a_whole_rating_typed(wx: WX, safe: bool) -> None:
    wx.safe = safe
    opening = await wx.say("你好")
    assert OVERALL in opening and "请回复数字1-5" in opening
    assert "服务态度" in await wx.say("5")
    await wx.say("4 5 5")
    assert THANKS in await wx.say("窗口服务很耐心")
    [rating] = await wx.ratings()
    assert rating["status"] == "complete" and rating["level"] == 5
    assert rating["dimensions"] == {"attitude": 4, "efficiency": 5, "convenience": 5}
    assert rating["comment"] == "窗口服务很耐心"
    assert rating["channel"] == "mobile" and rating["provider"] == "wechat"
    assert rating["unsolicited"] is True
    with wx.h.rt.db.connect() as db:  # the openid is never stored in clear
        for row in db.execute(sa.text("SELECT * FROM ratings")):
            assert OPENID not in " ".join(map(str, row))


async def test_a_voice_message_is_heard_and_a_picture_is_asked_again(wx: WX) -> None:
    await wx.say("评价")
    xml = message_xml(
        "voice",
        create_time=next(wx.times),
        MediaId="m1",
        Format="amr",
        Recognition="五星",
        MsgId=next(wx.ids),
    )
    reply = await wx.answer(xml)
    assert reply is not None and "服务态度" in reply
    picture = message_xml(
        "image", create_time=next(wx.times), PicUrl="http://x/y.jpg", MediaId="m2", MsgId=1
    )
    reply = await wx.answer(picture)
    assert reply is not None and "服务态度" in reply  # the same question again
    session = await wx.session()
    assert session is not None and session["step"] == "attitude" and session["retries"] == 1


# --- QR codes, the menu, unsubscribe ------------------------------------------------------------


async def test_scanning_a_case_code_rates_that_case(wx: WX) -> None:
    assert (await wx.h.report(RECORD, phone=None)).status_code == 201
    assert (await wx.h.report("370200-2026-0002", phone=None)).status_code == 201
    opening = await wx.event("subscribe", f"qrscene_{RECORD}")  # scan to follow
    assert opening is not None and OVERALL in opening
    await wx.say("5455")
    assert THANKS in await wx.say("0")
    # Already following: the SCAN event carries the bare scene.
    other = "oOtherCitizen000000000000000"
    opening = await wx.event("SCAN", "370200-2026-0002", openid=other)
    assert opening is not None and OVERALL in opening
    await wx.say("2", openid=other)
    ratings = {r["record_no"]: r for r in await wx.ratings()}
    assert ratings[RECORD]["status"] == "complete" and ratings[RECORD]["unsolicited"] is False
    for rating in ratings.values():
        assert rating["channel"] == "qr_code" and rating["provider"] == "wechat"
    assert ratings["370200-2026-0002"]["bad_review"] is True
    again = await wx.event("SCAN", RECORD)  # 一事一评
    assert again is not None and ALREADY_RATED in again
    unknown = await wx.event("SCAN", "NO-SUCH-CASE")
    assert unknown is not None and "未找到该办件" in unknown


async def test_a_case_rated_by_sms_is_not_rated_again(wx: WX) -> None:
    assert (await wx.h.report(RECORD)).status_code == 201  # invited by SMS
    await wx.h.reply_text("5")  # the citizen answers the SMS
    reply = await wx.event("SCAN", RECORD)
    assert reply is not None and ALREADY_RATED in reply
    assert len(await wx.ratings()) == 1


async def test_a_new_follower_is_welcomed_and_asked(wx: WX) -> None:
    reply = await wx.event("subscribe")
    assert reply is not None and reply.startswith("感谢关注") and OVERALL in reply
    assert "服务态度" in await wx.say("5")


async def test_the_rate_button_opens_the_latest_unrated_case(wx: WX) -> None:
    citizen = {"citizen": {"wechat_openid": OPENID}}
    assert (await wx.h.report(RECORD, phone=None, **citizen)).status_code == 201
    reply = await wx.event("CLICK", "RATE")
    assert reply is not None and OVERALL in reply
    await wx.say("4")
    [rating] = await wx.ratings()
    assert rating["record_no"] == RECORD and rating["channel"] == "mobile"
    # Nothing left to rate for another follower: the opening question of an unsolicited rating.
    other = "oOtherCitizen000000000000000"
    reply = await wx.event("CLICK", "RATE", openid=other)
    assert reply is not None and OVERALL in reply
    assert await wx.event("CLICK", "SOMETHING_ELSE") is None  # other menu keys: success


async def test_unsubscribing_mid_survey_keeps_an_incomplete_rating(wx: WX) -> None:
    await wx.say("评价")
    await wx.say("4")
    assert await wx.event("unsubscribe") is None  # "success", nothing said
    [rating] = await wx.ratings()
    assert rating["status"] == "incomplete" and rating["level"] == 4
    assert await wx.session() is None
    reply = await wx.event("subscribe")  # back again: a fresh start
    assert reply is not None and OVERALL in reply


# --- retries ----------------------------------------------------------------------------------


async def test_a_retried_push_gets_the_same_reply_and_changes_nothing(wx: WX) -> None:
    await wx.say("评价")
    first = await wx.say("5", msg_id=42)
    assert "服务态度" in first
    before, sent = await wx.session(), len(wx.fake.custom)
    # Its reply went as a message menu: the retry is answered "success" and sends nothing.
    assert await wx.reply(message_xml("text", create_time=1, Content="5", MsgId=42)) is None
    assert len(wx.fake.custom) == sent
    assert await wx.session() == before
    assert before is not None and before["answers"] == {"level": 5}
    # An event is deduplicated by sender, CreateTime and event.
    await wx.say("5")
    created = next(wx.times)
    one = await wx.event("CLICK", "RATE", create_time=created)
    between = await wx.session()
    two = await wx.event("CLICK", "RATE", create_time=created)
    assert one is not None and "工作效率" in one and two is None  # sent once
    assert await wx.session() == between
    assert between is not None and between["step"] == "efficiency"


# --- message menus ------------------------------------------------------------------------------


async def test_a_whole_rating_by_tapping_message_menus(wx: WX) -> None:
    opening = await wx.say("你好")
    menu = wx.last_menu()
    assert OVERALL in menu["head_content"] and opening.startswith(menu["head_content"])
    assert [(i["id"], i["content"]) for i in menu["list"]] == [
        ("5", "5 非常满意"),
        ("4", "4 满意"),
        ("3", "3 基本满意"),
        ("2", "2 不满意"),
        ("1", "1 非常不满意"),
    ]
    assert "请回复数字1-5" in menu["tail_content"]  # the typed fallback
    assert "服务态度" in await wx.tap("5")
    # The engine gets the item's id, whatever the text reads.
    assert "工作效率" in await wx.say("还行吧", menu_id="4")
    assert "便民" in await wx.tap("5")
    sent = len(wx.fake.custom)
    comment = await wx.say("5", menu_id="5")  # the comment asks for text: a passive reply
    assert len(wx.fake.custom) == sent and "请回复数字1-5" not in comment
    assert THANKS in await wx.say("0")  # skipped, typed
    [rating] = await wx.ratings()
    assert rating["status"] == "complete" and rating["level"] == 5
    assert rating["dimensions"] == {"attitude": 4, "efficiency": 5, "convenience": 5}
    assert rating["comment"] is None
    for call in wx.fake.custom:
        assert call.body["touser"] == OPENID


async def test_a_redelivered_tap_sends_nothing_twice(wx: WX) -> None:
    await wx.say("评价")
    assert "服务态度" in await wx.tap("5", msg_id=900)
    before, sent = await wx.session(), len(wx.fake.custom)
    xml = message_xml("text", create_time=1, Content="5 非常满意", MsgId=900, bizmsgmenuid="5")
    for _ in range(2):  # WeChat retries up to three times
        assert await wx.reply(xml) is None
    assert len(wx.fake.custom) == sent and await wx.session() == before


async def test_a_refused_customer_service_message_falls_back_to_the_passive_reply(
    wx: WX,
) -> None:
    wx.fake.fail["message/custom/send"] = (45015, "response out of time limit")
    fields = await wx.reply(message_xml("text", create_time=1, Content="评价", MsgId=31))
    assert fields is not None
    assert OVERALL in fields["Content"] and "请回复数字1-5" in fields["Content"]
    [refused] = wx.fake.custom  # one attempt, refused: nothing else tried
    assert refused.body["msgtype"] == "msgmenu"
    del wx.fake.fail["message/custom/send"]
    assert "服务态度" in await wx.tap("5")  # WeChat lets us send again: menus again
    assert wx.fake.custom[-1].body["msgtype"] == "msgmenu"


@pytest.fixture
async def wx_passive(
    backend: dict[str, Any], clock: FakeClock, fake_wechat: FakeWeChat
) -> AsyncIterator[WX]:
    """WeChat without sending (no AppSecret): every reply is passive."""
    settings = {k: v for k, v in wechat_settings(fake_wechat).items() if k != "wechat_secret"}
    app = create_app(make_settings(**backend, **settings), clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://x.example") as client:
            yield WX(Harness(client=client, rt=app.state.runtime, clock=clock), fake_wechat)


@pytest.mark.parametrize("safe", [False, True], ids=["plaintext", "safe_mode"])
async def test_without_sending_questions_are_passive_text(wx_passive: WX, safe: bool) -> None:
    wx = wx_passive
    wx.safe = safe
    opening = await wx.reply(message_xml("text", create_time=1, Content="你好", MsgId=50))
    assert opening is not None and OVERALL in opening["Content"]
    assert "请回复数字1-5" in opening["Content"]
    first = await wx.reply(message_xml("text", create_time=2, Content="5", MsgId=51))
    again = await wx.reply(message_xml("text", create_time=2, Content="5", MsgId=51))
    assert first is not None and again is not None and "服务态度" in first["Content"]
    assert again["Content"] == first["Content"]  # a re-delivery: the same passive reply
    assert "工作效率" in await wx.say("4", menu_id="4")  # an old menu's tap still counts
    assert wx.fake.calls == []


# --- the gate -------------------------------------------------------------------------------------


async def test_a_wrong_signature_is_403(wx: WX) -> None:
    xml = message_xml("text", create_time=1, Content="5", MsgId=1)
    wrong = await wx.post(xml, query={"signature": "0" * 40})
    assert wrong.status_code == 403
    missing = await wx.post(xml, query={"signature": ""})
    assert missing.status_code == 403
    safe_wrong = await wx.post(xml, safe=True, query={"msg_signature": "f" * 40})
    assert safe_wrong.status_code == 403
    assert await wx.session() is None


async def test_bad_bodies_are_400(wx: WX) -> None:
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><Content>&b;</Content></xml>'
    )
    xxe = '<!doctype xml [<!entity x SYSTEM "file:///etc/passwd">]><xml><C>&x;</C></xml>'
    cases = {
        "<xml><ToUserName>": "well-formed",
        laughs: "DOCTYPE",
        xxe: "DOCTYPE",
        "<xml><ToUserName>gh</ToUserName></xml>": "FromUserName, CreateTime, MsgType",
        "<other>text</other>": "root",
        "<xml>just text</xml>": "root",
        message_xml("text", create_time=1, Content="5", MsgId="x"): "MsgId",
        message_xml("event", create_time=1): "Event",
        message_xml("text", create_time=1, Content="a\x00b", MsgId=1): "",
    }
    for body, reason in cases.items():
        for safe in (False, True):
            if "\x00" in body and safe:
                continue
            response = await wx.post(body, safe=safe)
            assert response.status_code == 400, (body, safe, response.text)
            assert reason in response.json()["detail"], (body, response.json())
    not_utf8 = await wx.post("<xml>é</xml>".encode("latin-1"))
    assert not_utf8.status_code == 400
    # Safe mode: an envelope that is not XML, and an Encrypt that is not WeChat's ciphertext.
    garbage = await wx.post(b"\x00garbage", query={"encrypt_type": "aes", "msg_signature": "x"})
    assert garbage.status_code == 400
    timestamp, nonce, junk = "1790000000", "n1", "bm90IGEgY2lwaGVydGV4dA=="
    response = await wx.h.client.post(
        "/channels/wechat",
        params={
            "timestamp": timestamp,
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": sign(TOKEN, timestamp, nonce, junk),
        },
        content=f"<xml><Encrypt>{junk}</Encrypt></xml>".encode(),
    )
    assert response.status_code == 400 and "decrypted" in response.json()["detail"]
    other = await wx.post("<xml/>", query={"encrypt_type": "rot13"})
    assert other.status_code == 400
    assert wx.fake.calls == []


# --- the 5-second budget, the API client --------------------------------------------------------


async def test_a_slow_turn_is_answered_by_a_customer_service_message(wx: WX) -> None:
    await wx.say("评价")
    assert wx.h.app is not None
    channel = wx.h.app.state.wechat
    channel.reply_budget = 0.2
    key = conversation_key("wechat", wx.h.rt.privacy.contact_hash(OPENID))
    before = len(wx.fake.custom)  # the opening question's menu
    async with wx.h.rt.store.turn(key):  # another turn holds the conversation
        assert await wx.reply(message_xml("text", create_time=5, Content="5", MsgId=77)) is None
        assert len(wx.fake.custom) == before
    for _ in range(100):  # the held turn is over: the reply goes out through the API
        if len(wx.fake.custom) > before:
            break
        await asyncio.sleep(0.05)
    [sent] = wx.fake.custom[before:]
    assert sent.body["touser"] == OPENID and sent.body["msgtype"] == "msgmenu"
    assert "服务态度" in sent.body["msgmenu"]["head_content"]
    assert len(wx.fake.of("token")) == 1
    session = await wx.session()
    assert session is not None and session["answers"] == {"level": 5}


async def test_the_access_token_is_fetched_once_and_shared(
    wx: WX, backend: dict[str, Any], fake_wechat: FakeWeChat
) -> None:
    settings = make_settings(**backend, **wechat_settings(fake_wechat))
    if settings.redis_url:  # two workers: two clients on the same Redis
        first, second = (
            wechat.make_client(
                APPID, SECRET, api_url=settings.wechat_api_url, redis_url=settings.redis_url
            )
            for _ in range(2)
        )
    else:  # one process: its clients share one memory storage
        storage = wechat.token_storage(None)
        first, second = (
            wechat.RatebotWeChatClient(APPID, SECRET, api_url=fake_wechat.url, session=storage)  # type: ignore[attr-defined]
            for _ in range(2)
        )
    try:
        for client in (first, second):
            delivery = wechat.WeChatSender(client).send_text(OPENID, "你好")
            assert delivery.status == "sent" and delivery.error is None
    finally:
        for client in (first, second):
            client.close()  # and its token storage's Redis client
    assert len(fake_wechat.of("token")) == 1
    assert len(fake_wechat.custom) == 2


def test_the_sender_records_wechat_errors(fake_wechat: FakeWeChat) -> None:
    client = wechat.RatebotWeChatClient(APPID, SECRET, api_url=fake_wechat.url)  # type: ignore[attr-defined]
    sender = wechat.WeChatSender(client)
    try:
        data = {"thing1": {"value": "不动产登记"}}
        ok = sender.send_template(OPENID, "TPL-1", data, url="https://x.example/r")
        assert ok.status == "sent" and ok.provider == "wechat" and ok.provider_id
        [template] = fake_wechat.of("message/template/send")
        assert template.body["template_id"] == "TPL-1" and template.body["data"] == data
        fake_wechat.fail["message/custom/send"] = (45015, "response out of time limit")
        late = sender.send_text(OPENID, "你好")
        assert late.status == "failed" and late.error is not None and "45015" in late.error
        fake_wechat.fail["message/template/send"] = (43004, "require subscribe")
        gone = sender.send_template(OPENID, "TPL-1", data)
        assert gone.error is not None and gone.error.startswith("43004")
    finally:
        client.close()
    unreachable = wechat.RatebotWeChatClient(APPID, SECRET, api_url="http://127.0.0.1:9")
    try:
        failed = wechat.WeChatSender(unreachable).send_text(OPENID, "x")
        assert failed.status == "failed" and failed.error is not None
    finally:
        unreachable.close()


# --- settings and the command line ------------------------------------------------------------


def test_settings_check_the_shapes_and_never_echo_them() -> None:
    base = {"secret_key": "x" * 40}
    bad = {
        "wechat_token": ("a b", "RATEBOT_WECHAT_TOKEN"),
        "wechat_aes_key": ("short-secret-value", "RATEBOT_WECHAT_AES_KEY"),
    }
    for name, (value, variable) in bad.items():
        extra = {"wechat_token": TOKEN, "wechat_appid": APPID, name: value}
        with pytest.raises(ValidationError, match=variable) as raised:
            Settings(_env_file=None, **base, **extra)  # type: ignore[arg-type]
        assert value not in str(raised.value).replace("input_value", "")
    with pytest.raises(
        ValidationError, match="needs RATEBOT_WECHAT_TOKEN and RATEBOT_WECHAT_APPID"
    ):
        Settings(_env_file=None, wechat_token=TOKEN, wechat_aes_key=AES_KEY, **base)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="RATEBOT_WECHAT_SECRET needs RATEBOT_WECHAT_APPID"):
        Settings(_env_file=None, wechat_secret=SECRET, **base)  # type: ignore[call-arg]
    ok = Settings(  # type: ignore[call-arg]
        _env_file=None,
        wechat_token=TOKEN,
        wechat_aes_key=AES_KEY,
        wechat_appid=APPID,
        wechat_secret=SECRET,
        **base,
    )
    assert ok.wechat_enabled and ok.wechat_sending_enabled
    assert not Settings(_env_file=None, wechat_token="", **base).wechat_enabled  # type: ignore[call-arg]


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("RATEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RATEBOT_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")


def test_chat_in_the_wechat_form(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = iter(["5"])

    def fake_input(prompt: str = "") -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    main(["chat", "--channel", "wechat", "--record-no", RECORD])
    out = capsys.readouterr().out
    assert OVERALL in out and "请回复数字1-5" in out and "服务态度" in out


def test_qrcode_command(
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
    fake_wechat: FakeWeChat,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in wechat_settings(fake_wechat).items():
        monkeypatch.setenv(f"RATEBOT_{name.upper()}", value)
    image = tmp_path / "code.png"
    main(["wechat", "qrcode", "--record-no", RECORD, "--save", str(image)])
    [call] = fake_wechat.of("qrcode/create")
    assert call.body["action_name"] == "QR_LIMIT_STR_SCENE"
    assert call.body["action_info"]["scene"]["scene_str"] == RECORD
    out = capsys.readouterr().out
    assert f"TICKET-{RECORD}" in out and "weixin.qq.com/q/" in out
    assert image.read_bytes().startswith(b"\x89PNG")
    main(["wechat", "qrcode", "--record-no", RECORD, "--expire-seconds", "3600"])
    temporary = fake_wechat.of("qrcode/create")[-1].body
    assert temporary["action_name"] == "QR_STR_SCENE" and temporary["expire_seconds"] == 3600


# --- the API for a case's QR code ---------------------------------------------------------------


async def qrcode_call(wx: WX, record_no: str = RECORD, **body: Any) -> httpx.Response:
    return await wx.h.client.post(
        f"/api/v1/service-records/{record_no}/wechat-qrcode",
        json=body or None,
        headers=wx.h.api_key("platform"),
    )


async def test_the_api_creates_a_case_qrcode(wx: WX) -> None:
    assert (await wx.h.report(RECORD, phone=None)).status_code == 201
    response = await qrcode_call(wx)
    assert response.status_code == 200, response.text
    code = response.json()
    assert code["ticket"] == f"TICKET-{RECORD}" and "weixin.qq.com/q/" in code["url"]
    assert code["image_url"].startswith(wx.fake.url)  # type: ignore[attr-defined]
    assert "showqrcode?ticket=" in code["image_url"] and code["expire_seconds"] is None
    [call] = wx.fake.of("qrcode/create")
    assert call.body["action_name"] == "QR_LIMIT_STR_SCENE"
    assert call.body["action_info"]["scene"]["scene_str"] == RECORD
    temporary = await qrcode_call(wx, expire_seconds=3600)
    assert temporary.status_code == 200 and temporary.json()["expire_seconds"] == 3600
    body = wx.fake.of("qrcode/create")[-1].body
    assert body["action_name"] == "QR_STR_SCENE" and body["expire_seconds"] == 3600
    # the code opens the case (the scan is the same flow as before)
    opening = await wx.event("SCAN", RECORD)
    assert opening is not None and OVERALL in opening


async def test_the_qrcode_api_errors(wx: WX, wx_passive: WX) -> None:
    unknown = await qrcode_call(wx, "NO-SUCH-CASE")
    assert unknown.status_code == 404 and "NO-SUCH-CASE" in unknown.json()["detail"]
    assert (await wx.h.report(RECORD, phone=None)).status_code == 201
    for bad in ({"expire_seconds": 10}, {"expire_seconds": 10**8}, {"other": 1}):
        assert (await qrcode_call(wx, **bad)).status_code == 422
    wx.fake.fail["qrcode/create"] = (48001, "api unauthorized")
    refused = await qrcode_call(wx)
    assert refused.status_code == 502 and "48001" in refused.json()["detail"]
    anonymous = await wx.h.client.post(f"/api/v1/service-records/{RECORD}/wechat-qrcode")
    assert anonymous.status_code == 401
    # without an AppSecret ratebot cannot call WeChat
    assert (await wx_passive.h.report(RECORD, phone=None)).status_code in (200, 201)
    off = await qrcode_call(wx_passive)
    assert off.status_code == 409 and "RATEBOT_WECHAT_SECRET" in off.json()["detail"]


# --- invitations to citizens reported with an openid ------------------------------------------

TEMPLATE = "tmpl-invite-01"


@pytest.fixture
async def wx_invites(
    backend: dict[str, Any], clock: FakeClock, fake_wechat: FakeWeChat
) -> AsyncIterator[WX]:
    settings = make_settings(**backend, **wechat_settings(fake_wechat), wechat_template_id=TEMPLATE)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            yield WX(Harness(client=client, rt=app.state.runtime, clock=clock), fake_wechat)


async def report(wx: WX, **citizen: Any) -> dict[str, Any]:
    response = await wx.h.report(citizen=citizen)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_invitation_goes_as_a_template_message_and_the_chat_rates_that_case(
    wx_invites: WX,
) -> None:
    wx = wx_invites
    body = await report(wx, wechat_openid=OPENID)
    invitation = body["invitations"][0]
    assert invitation["channel"] == "wechat" and invitation["status"] == "sent"
    [message] = invitation["messages"]
    assert message["provider"] == "wechat" and OPENID not in message["to"]
    [sent] = wx.fake.of("message/template/send")
    assert sent.body["touser"] == OPENID and sent.body["template_id"] == TEMPLATE
    data = sent.body["data"]
    assert data["keyword1"]["value"] == "不动产登记"
    assert data["keyword2"]["value"] == "烟台市政务服务中心"
    assert "5 非常满意" in data["remark"]["value"]
    assert "已办结" in data["first"]["value"]
    # the citizen answers in the chat: the rating is of that case
    assert "服务态度" in await wx.say("5")
    await wx.say("4 5 5")
    await wx.say("0")
    lookup = await wx.h.client.get(
        "/api/v1/service-records/370200-2026-0001", headers=wx.h.api_key()
    )
    rating = lookup.json()["rating"]
    assert rating["status"] == "complete" and rating["provider"] == "wechat"
    assert rating["channel"] == "mobile" and rating["unsolicited"] is False


async def test_not_following_falls_back_to_sms_and_both_attempts_are_recorded(
    wx_invites: WX, capsys: pytest.CaptureFixture[str]
) -> None:
    wx = wx_invites
    wx.fake.fail["message/template/send"] = (43004, "require subscribe")
    response = await wx.h.report(
        citizen={"wechat_openid": OPENID, "phone": PHONE}, channel="wechat"
    )
    assert response.status_code == 201, response.text
    invitation = response.json()["invitations"][0]
    assert invitation["status"] == "sent" and invitation["channel"] == "sms"
    attempts = [(m["provider"], m["status"]) for m in invitation["messages"]]
    assert attempts == [("wechat", "failed"), ("console", "sent (console)")]
    assert "43004" in invitation["messages"][0]["error"]
    assert "+86 138****1234" in capsys.readouterr().out
    # the conversation is the SMS one
    assert "服务态度" in await wx.h.reply_text("5")


async def test_other_refusals_do_not_fall_back(wx_invites: WX) -> None:
    wx = wx_invites
    wx.fake.fail["message/template/send"] = (40003, "invalid openid")
    body = await report(wx, wechat_openid=OPENID, phone=PHONE, locale="en")
    # a phone is known, so SMS is the default channel: ask for WeChat explicitly
    assert body["invitations"][0]["channel"] == "sms"
    response = await wx.h.report(
        "370200-2026-0002", citizen={"wechat_openid": "o-other"}, channel="wechat"
    )
    invitation = response.json()["invitations"][0]
    assert invitation["status"] == "failed" and len(invitation["messages"]) == 1


async def test_without_a_template_the_invitation_is_a_customer_service_message(
    wx: WX,
) -> None:
    body = await report(wx, wechat_openid=OPENID)
    assert body["invitations"][0]["status"] == "sent"
    [sent] = wx.fake.custom
    assert "不动产登记" in sent.body["text"]["content"]
    assert "5 非常满意" in sent.body["text"]["content"]


@pytest.mark.parametrize(
    ("locale", "attitude", "thanks"),
    [
        ("zh_Hans_CN", "服务态度", "感谢"),
        ("zh_Hant_TW", "服務態度", "感謝"),
        ("en", "attitude", "Thank you"),
    ],
)
async def test_an_invited_rating_finishes_in_the_citizens_language(
    wx_invites: WX, locale: str, attitude: str, thanks: str
) -> None:
    wx = wx_invites
    await report(wx, wechat_openid=OPENID, locale=locale)
    assert attitude in await wx.say("5")  # typed: the invitation was a template message
    for value in ("4", "5", "5"):  # then tapped on the menus
        await wx.tap(value)
    assert thanks in await wx.say("0")
    [rating] = await wx.ratings()
    assert rating["status"] == "complete" and rating["locale"] == locale
    assert rating["dimensions"] == {"attitude": 4, "efficiency": 5, "convenience": 5}
