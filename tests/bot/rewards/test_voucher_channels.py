"""The voucher in the chat apps: the thank-you brings the voucher's text and a picture of its QR
code that the gate's scanner reads — Telegram's sendPhoto, WeChat's uploaded image — through the
real aiogram and wechatpy clients against the fake provider APIs. A voucher earned when the
conversation expires at the optional comment reaches the citizen in the same chat, sent by the
worker."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from bot import worker
from storage.privacy import mask
from tests.bot.conftest import Harness
from tests.bot.parking_support import HALL_NAME, put_hall, voucher_code
from tests.bot.webhooks import test_telegram, test_wechat
from tests.bot.webhooks.test_telegram import CHAT_ID, TG, message_update
from tests.bot.webhooks.test_wechat import OPENID, WX, message_xml
from tests.samples import PHONE

# The channels' own fixtures: an app wired to each fake provider API.
fake_telegram, tg = test_telegram.fake_telegram, test_telegram.tg
fake_wechat, wx = test_wechat.fake_wechat, test_wechat.wx

RECORD = "370600-2026-000123"
PNG = b"\x89PNG\r\n\x1a\n"


async def test_telegram_sends_the_voucher_as_a_qr_photo_with_its_text(tg: TG) -> None:
    await put_hall(tg.h, free_minutes=120)
    await tg.h.report(RECORD)
    await tg.say(f"/start rec_{RECORD}")
    await tg.say("5 4 5 5")
    calls = await tg.deliver(message_update(900, "0"))
    [photo] = [c for c in calls if c.method == "sendPhoto"]
    caption = photo.params["caption"]
    code = voucher_code(caption).replace("-", "")
    assert HALL_NAME in caption and "120" in caption and f"/v/{code}" in caption
    attached = photo.params["photo"].removeprefix("attach://")  # aiogram's multipart upload
    assert photo.params[attached].startswith(PNG)
    [thanks] = [c for c in calls if c.method == "sendMessage"]
    assert "评价已提交" in thanks.params["text"]
    assert calls.index(thanks) < calls.index(photo)  # thanks first, then the voucher
    # a re-delivered update sends nothing again
    assert await tg.deliver(message_update(900, "0")) == []


async def test_wechat_sends_the_voucher_text_and_an_uploaded_qr_image(wx: WX) -> None:
    await put_hall(wx.h, free_minutes=120)
    await wx.h.report(RECORD, phone=None, citizen={"wechat_openid": "o-citizen"})
    await wx.event("SCAN", RECORD)
    await wx.say("5 4 5 5")
    before = len(wx.fake.calls)
    passive = await wx.reply(message_xml("text", create_time=99, Content="0", MsgId=4242))
    assert passive is None  # it all went as customer-service messages
    calls = wx.fake.calls[before:]
    [upload] = [c for c in calls if c.path == "media/upload"]
    assert upload.query["type"] == "image" and PNG in upload.raw
    sent = [c.body for c in calls if c.path == "message/custom/send"]
    assert [m["msgtype"] for m in sent] == ["text", "text", "image"]
    assert "评价已提交" in sent[0]["text"]["content"]
    voucher = sent[1]["text"]["content"]
    assert HALL_NAME in voucher and voucher_code(voucher) and "/v/" in voucher
    assert sent[2]["image"]["media_id"].startswith("MEDIA-")


async def test_wechat_refusing_messages_gets_the_voucher_in_the_passive_reply(wx: WX) -> None:
    """Outside WeChat's 48 hours no customer-service message goes through: the passive text
    still has the code and the page's link."""
    await put_hall(wx.h)
    await wx.h.report(RECORD, phone=None, citizen={"wechat_openid": "o-citizen"})
    await wx.event("SCAN", RECORD)
    await wx.say("5 4 5 5")
    wx.fake.fail["message/custom/send"] = (45015, "response out of time limit")
    passive = await wx.reply(message_xml("text", create_time=99, Content="0", MsgId=4343))
    assert passive is not None
    text = str(passive["Content"])
    assert "评价已提交" in text and voucher_code(text) and "/v/" in text


# --- told later, by the worker ----------------------------------------------------------------


def vouchers_sent(h: Harness) -> list[tuple[str, str, str]]:
    """(channel, to, status) of every voucher ratebot sent on its own."""
    with h.rt.db.connect() as db:
        rows = db.execute(
            sa.text(
                "SELECT channel, to_mask, status FROM outbound_messages "
                "WHERE purpose = 'voucher' ORDER BY id"
            )
        )
        return [(r.channel, r.to_mask, r.status) for r in rows]


def kept_encrypted(h: Harness, session: dict[str, Any] | None, address: str) -> None:
    """The stored conversation keeps the chat's address only encrypted."""
    assert session is not None
    assert address not in json.dumps(session)
    assert h.rt.privacy.decrypt(session["reply_to"]) == address


async def test_telegram_expired_at_the_comment_gets_its_voucher_in_the_chat(
    tg: TG, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: the worker told a Telegram rating's voucher by SMS (it had no way to write to
    the chat), or not at all when the case had no phone."""
    await put_hall(tg.h)
    await tg.h.report(RECORD)  # the case has a phone: SMS was where the voucher went
    await tg.say(f"/start rec_{RECORD}")
    await tg.say("5 4 5 5")  # then silence at "any comment?"
    kept_encrypted(tg.h, await tg.session(), str(CHAT_ID))
    before = len(tg.fake.calls)
    tg.h.clock.advance(minutes=31)  # the survey's done_after_minutes is 30
    await worker.run_due(tg.h.rt)
    [photo] = [c for c in tg.fake.calls[before:] if c.method == "sendPhoto"]
    assert photo.params["chat_id"] == str(CHAT_ID)
    caption = photo.params["caption"]
    code = voucher_code(caption)
    assert HALL_NAME in caption and f"/v/{code.replace('-', '')}" in caption
    assert photo.params[photo.params["photo"].removeprefix("attach://")].startswith(PNG)
    assert vouchers_sent(tg.h) == [("telegram", mask(str(CHAT_ID)), "sent")]
    assert code not in capsys.readouterr().out  # no SMS


async def test_wechat_by_a_scanned_code_gets_its_voucher_in_the_chat(
    wx: WX, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: a citizen who scanned a case's code (no openid on the case) was texted the
    voucher, or not told at all without a phone."""
    await put_hall(wx.h)
    await wx.h.report(RECORD)  # a phone, no openid
    await wx.event("SCAN", RECORD)
    await wx.say("5 4 5 5")  # then silence at "any comment?"
    kept_encrypted(wx.h, await wx.session(), OPENID)
    before = len(wx.fake.calls)
    wx.h.clock.advance(minutes=31)  # the survey's done_after_minutes is 30
    await worker.run_due(wx.h.rt)
    calls = wx.fake.calls[before:]
    [upload] = [c for c in calls if c.path == "media/upload"]
    assert PNG in upload.raw
    sent = [c.body for c in calls if c.path == "message/custom/send"]
    assert [(m["touser"], m["msgtype"]) for m in sent] == [(OPENID, "text"), (OPENID, "image")]
    text = sent[0]["text"]["content"]
    code = voucher_code(text)
    assert HALL_NAME in text and f"/v/{code.replace('-', '')}" in text
    assert vouchers_sent(wx.h) == [("wechat", mask(OPENID), "sent")]
    assert code not in capsys.readouterr().out  # no SMS


async def test_wechat_refusing_the_late_voucher_texts_it(
    wx: WX, capsys: pytest.CaptureFixture[str]
) -> None:
    """WeChat refuses the customer-service message (45015: more than 48 hours since the citizen
    last wrote, as with a survey whose done_after_minutes is that long): the voucher goes by
    SMS."""
    await put_hall(wx.h)
    await wx.h.report(RECORD)
    await wx.event("SCAN", RECORD)
    await wx.say("5 4 5 5")
    wx.fake.fail["message/custom/send"] = (45015, "response out of time limit")
    capsys.readouterr()
    wx.h.clock.advance(minutes=31)  # the survey's done_after_minutes is 30
    await worker.run_due(wx.h.rt)
    assert vouchers_sent(wx.h) == [
        ("wechat", mask(OPENID), "failed"),
        ("sms", mask(PHONE), "sent (console)"),
    ]
    texted = capsys.readouterr().out
    assert f"[outbox sms] to {mask(PHONE)}" in texted and HALL_NAME in texted


async def test_a_telegram_chat_that_blocked_the_bot_is_texted_the_late_voucher(
    tg: TG, capsys: pytest.CaptureFixture[str]
) -> None:
    await put_hall(tg.h)
    await tg.h.report(RECORD)
    await tg.say(f"/start rec_{RECORD}")
    await tg.say("5 4 5 5")
    tg.fake.fail["sendPhoto"] = (403, "Forbidden: bot was blocked by the user")
    capsys.readouterr()
    tg.h.clock.advance(minutes=31)  # the survey's done_after_minutes is 30
    await worker.run_due(tg.h.rt)
    assert vouchers_sent(tg.h) == [
        ("telegram", mask(str(CHAT_ID)), "failed"),
        ("sms", mask(PHONE), "sent (console)"),
    ]
    assert f"[outbox sms] to {mask(PHONE)}" in capsys.readouterr().out
