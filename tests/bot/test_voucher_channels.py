"""The voucher in the chat apps: the thank-you brings the voucher's text and a picture of its QR
code that the gate's scanner reads — Telegram's sendPhoto, WeChat's uploaded image — through the
real aiogram and wechatpy clients against the fake provider APIs."""

from __future__ import annotations

from tests.bot import test_telegram, test_wechat
from tests.bot.parking_support import HALL_NAME, put_hall, voucher_code
from tests.bot.test_telegram import TG, message_update
from tests.bot.test_wechat import WX, message_xml

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
