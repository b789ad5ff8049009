"""The four webhook parsers fuzzed with hypothesis: SMS and voice forms signed with twilio's own
``RequestValidator``, WeChat XML in plaintext and in safe mode (encrypted by wechatpy's
``WeChatCrypto``), Telegram JSON with the secret header. Each request is signed as its provider
signs (or, drawn so, signed wrongly), its fields drawn near what the provider sends and far from
it (control characters, NUL, huge numbers, unknown fields, broken XML and JSON).

Whatever comes, the answer is never a 5xx; a refused request (4xx) changes nothing: no row in
any table, nothing in the conversation store.

``RATEBOT_FUZZ_EXAMPLES`` (default 25) examples per webhook in CI; more for a longer run::

    RATEBOT_FUZZ_EXAMPLES=1000 .venv/bin/pytest tests/bot/webhooks/test_fuzz_webhooks.py
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import xmltodict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel
from twilio.request_validator import RequestValidator
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from storage.db import upgrade
from tests.bot.conftest import AUTH_TOKEN, PUBLIC_URL, FakeClock, Harness, make_settings, serving
from tests.fakes.telegram_api import TOKEN, FakeTelegram
from tests.fakes.wechat_api import APPID
from tests.samples import PHONE

EXAMPLES = int(os.environ.get("RATEBOT_FUZZ_EXAMPLES", "25"))
WECHAT_TOKEN = "ratebotToken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
TELEGRAM_SECRET = "tg-secret_0123456789"
RECORD = "370200-2026-0001"

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- what the providers send, and what they never would -------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=30)
digits = st.integers(-(2**70), 2**70).map(str)


def near(*likely: str) -> st.SearchStrategy[str]:
    """One of ``likely`` (what the provider sends), or any text."""
    return st.sampled_from(likely) | texts | digits


answers = near("1", "5", "5 4 5 5", "★★★★", "TD", "帮助", "STOP", "", " ", "0", "#", "*", "是")
phones = near(PHONE, "+8613800000001", "client:anonymous", "")


def form(fields: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """A form with any of ``fields`` and, sometimes, fields nobody expects."""
    known = st.fixed_dictionaries({}, optional=fields)
    return st.tuples(known, st.dictionaries(texts, texts, max_size=2)).map(
        lambda parts: {**parts[1], **parts[0]}
    )


sms_forms = form(
    {
        "From": phones,
        "To": phones,
        "Body": answers,
        "MessageSid": near("SM" + "a" * 32, "SM" + "b" * 32, ""),
        "NumMedia": near("0", "1"),
        "MessageStatus": near("delivered", "failed", "undelivered"),
        "ErrorCode": near("30003", ""),
    }
)
voice_forms = form(
    {
        "CallSid": near("CA" + "a" * 32, "CA" + "b" * 32, ""),
        "From": phones,
        "To": phones,
        "Direction": near("inbound", "outbound-api"),
        "CallStatus": near("in-progress", "completed", "busy", "no-answer", "failed"),
        "Digits": near("1", "5", "13#", "hangup", "*"),
        "SpeechResult": answers,
        "Confidence": near("0.9", "0.1", "nan", "inf", "-1"),
        "RecordingUrl": near("https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1"),
        "RecordingDuration": near("7", "0"),
        "AnsweredBy": near("human", "machine_start", "fax"),
        "TranscriptionStatus": near("completed", "failed"),
        "TranscriptionText": answers,
    }
)
voice_paths = st.sampled_from(
    [
        "/channels/voice",
        f"/channels/voice?record_no={RECORD}",
        "/channels/voice?record_no=%00&attempt=x",
        "/channels/voice/answer?turn=1",
        "/channels/voice/answer?turn=2&nothing=skip",
        "/channels/voice/answer?turn=99999999999999999999999",
        "/channels/voice/answer?turn=x",
        "/channels/voice/answer",
        "/channels/voice/status",
        "/channels/voice/status?attempt=1",
        "/channels/voice/transcription",
    ]
)
openids = near("oAbCdEfGhIjKlMnOpQrStUvWxYz0", "")
wechat_fields = st.fixed_dictionaries(
    {},
    optional={
        "ToUserName": near("gh_0123456789ab"),
        "FromUserName": openids,
        "CreateTime": near("1790000000"),
        "MsgType": near("text", "event", "image", "voice", "location", "link", "shortvideo"),
        "Content": answers,
        "MsgId": near("7000000001", "7000000002"),
        "Event": near("subscribe", "unsubscribe", "SCAN", "CLICK", "VIEW"),
        "EventKey": near(f"qrscene_{RECORD}", RECORD, "rate", "last_scene_x"),
        "Recognition": answers,
    },
)


def _xml(fields: dict[str, str]) -> str:
    try:
        return str(xmltodict.unparse({"xml": fields}, full_document=False))
    except ValueError:  # a field name XML cannot have: the envelope alone
        return "<xml></xml>"


wechat_bodies = (
    wechat_fields.map(_xml)
    | texts
    | st.sampled_from(
        [
            "<xml><MsgType>text</MsgType>" * 500,  # never closed
            '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><xml>&b;</xml>',
            "<?xml version='1.0' encoding='gbk'?><xml><Content>\u4e2d</Content></xml>",
            "<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt>AAAA</Encrypt></xml>",
        ]
    )
)
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | texts
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=12,
)
ids = st.integers(-(2**64), 2**64) | texts | st.none()
telegram_user = st.fixed_dictionaries(
    {"id": ids, "is_bot": st.booleans(), "first_name": texts},
    optional={"language_code": near("zh-hans", "zh-TW", "en", "")},
)
telegram_message = st.fixed_dictionaries(
    {
        "message_id": ids,
        "date": ids,
        "chat": st.fixed_dictionaries({"id": ids, "type": near("private", "group", "channel")}),
    },
    optional={
        "from": telegram_user,
        "text": near("/start", f"/start rec_{RECORD}", f"/start qr_{RECORD}", "/language", "5")
        | answers,
        "caption": answers,
        "entities": st.lists(
            st.fixed_dictionaries({"type": near("bot_command"), "offset": ids, "length": ids}),
            max_size=2,
        ),
    },
)
telegram_updates = (
    st.fixed_dictionaries(
        {"update_id": ids},
        optional={
            "message": telegram_message,
            "callback_query": st.fixed_dictionaries(
                {"id": texts, "from": telegram_user, "chat_instance": texts},
                optional={
                    "data": near("a:level:5", "a:level:9", "l:en", "l:xx", "a::", "a:x"),
                    "message": telegram_message,
                },
            ),
        },
    ).map(json.dumps)
    | any_json.map(json.dumps)
    | texts
)


# --- the app, and what a refused request must leave as it was --------------------------------


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    fake.url = fake.start()  # type: ignore[attr-defined]
    yield fake
    fake.stop()


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeTelegram) -> AsyncIterator[Harness]:
    """Every channel on, on the embedded stores, with a case waiting for its rating."""
    url = f"sqlite:///{tmp_path}/ratebot.db"
    upgrade(url)
    settings_ = make_settings(
        url,
        wechat_token=WECHAT_TOKEN,
        wechat_aes_key=AES_KEY,
        wechat_appid=APPID,
        telegram_token=TOKEN,
        telegram_secret=TELEGRAM_SECRET,
        telegram_api_url=fake_telegram.url,  # type: ignore[attr-defined]
    )
    async with serving(settings_, FakeClock()) as h:
        assert (await h.report(RECORD)).status_code == 201
        yield h


def state(h: Harness) -> tuple[Any, ...]:
    """Every row of every table, and everything in the conversation store."""
    with h.rt.db.connect() as conn:
        rows = tuple(
            tuple(map(tuple, conn.execute(sa.select(table)).all()))
            for table in SQLModel.metadata.sorted_tables
        )
    store = h.rt.store
    return rows, dict(store._sessions), dict(store._replies), dict(store._events)  # type: ignore[attr-defined]


async def check(h: Harness, send: Any) -> httpx.Response:
    """``send`` a request: never a 5xx, and nothing changed when it was refused."""
    before = state(h)
    response: httpx.Response = await send()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert state(h) == before, f"{response.status_code} {response.text} changed the state"
    return response


def twilio_headers(path: str, fields: dict[str, str], signed: bool, forged: str) -> dict[str, str]:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + path, fields)
    return {"X-Twilio-Signature": signature if signed else forged}


# --- the webhooks ------------------------------------------------------------------------------


@pytest.mark.slow
@fuzz
@given(
    fields=sms_forms,
    path=st.sampled_from(["/channels/sms", "/channels/sms/status"]),
    signed=st.booleans(),
    forged=texts.filter(str.isascii),
)
async def test_the_sms_webhook_survives_any_form(
    app: Harness, fields: dict[str, str], path: str, signed: bool, forged: str
) -> None:
    headers = twilio_headers(path, fields, signed, forged)
    response = await check(app, lambda: app.client.post(path, data=fields, headers=headers))
    if not signed:
        assert 400 <= response.status_code < 500  # 403; 400 for an empty body (no form at all)


@pytest.mark.slow
@fuzz
@given(fields=voice_forms, path=voice_paths, signed=st.booleans(), forged=texts.filter(str.isascii))
async def test_the_voice_webhooks_survive_any_form(
    app: Harness, fields: dict[str, str], path: str, signed: bool, forged: str
) -> None:
    headers = twilio_headers(path, fields, signed, forged)
    response = await check(app, lambda: app.client.post(path, data=fields, headers=headers))
    if not signed:
        assert 400 <= response.status_code < 500  # 403; 400 for an empty body (no form at all)


@pytest.mark.slow
@fuzz
@given(body=wechat_bodies, safe=st.booleans(), signed=st.booleans(), nonce=texts, timestamp=digits)
async def test_the_wechat_webhook_survives_any_xml_in_both_modes(
    app: Harness, body: str, safe: bool, signed: bool, nonce: str, timestamp: str
) -> None:
    timestamp, nonce = timestamp or str(int(time.time())), nonce.encode("utf-8", "replace").hex()
    signer = WeChatSigner()
    signer.add_data(WECHAT_TOKEN, timestamp, nonce)
    params = {"timestamp": timestamp, "nonce": nonce, "signature": signer.signature}
    content = body.encode()
    if safe:
        crypto = WeChatCrypto(WECHAT_TOKEN, AES_KEY, APPID)
        envelope = xmltodict.parse(crypto.encrypt_message(body, nonce, timestamp))["xml"]
        params |= {"encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}
        content = xmltodict.unparse({"xml": {"Encrypt": envelope["Encrypt"]}}).encode()
    if not signed:
        params["msg_signature" if safe else "signature"] = "0" * 40
    response = await check(
        app,
        lambda: app.client.post(
            "/channels/wechat", params=params, content=content, headers={"Content-Type": "text/xml"}
        ),
    )
    if not signed:
        assert 400 <= response.status_code < 500  # 403; 400 for an empty body (no form at all)


@pytest.mark.slow
@fuzz
@given(body=telegram_updates, secret=st.sampled_from([TELEGRAM_SECRET, "wrong", None]))
async def test_the_telegram_webhook_survives_any_json(
    app: Harness, body: str, secret: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    response = await check(
        app, lambda: app.client.post("/channels/telegram", content=body.encode(), headers=headers)
    )
    if secret != TELEGRAM_SECRET:
        assert response.status_code in (401, 403)


async def test_an_update_with_nothing_in_it_is_200_and_sends_nothing(
    app: Harness, fake_telegram: FakeTelegram
) -> None:
    """Regression (found by the fuzzer): an update with no message and no button press made
    aiogram warn that it must be outdated, for every such update (an error under -W error)."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    for body in ({"update_id": 1}, {"update_id": 2, "edited_message": None}):
        response = await app.client.post("/channels/telegram", json=body, headers=headers)
        assert response.status_code == 200 and response.content == b""
    assert fake_telegram.calls == []
