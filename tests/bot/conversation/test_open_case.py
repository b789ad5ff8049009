"""Opening a case's rating from a chat (a scanned QR code, a deep link): the glue the chat
channels use. Driven through the real engine and stores, rendered as SMS text for reading."""

from __future__ import annotations

from itertools import count

from bot.conversation.turn import Conversations
from channels.sms import render_text
from dialogs.events import InboundEvent
from tests.bot.conftest import Harness

CHAT = "chat-contact-hash"
_ids = count()


def event(text: str = "", locale: str | None = "zh_Hans_CN") -> InboundEvent:
    return InboundEvent(
        channel="telegram", sender=CHAT, text=text, delivery_id=f"d{next(_ids)}", locale=locale
    )


async def test_unknown_case_is_answered_so(harness: Harness) -> None:
    reply = await Conversations(harness.rt).open_case(
        event(), "nope", render_text, source="qr_code"
    )
    assert "未找到" in reply.text


async def test_opened_case_is_rated_and_recorded_as_qr_code(harness: Harness) -> None:
    await harness.report(phone=None)
    conversations = Conversations(harness.rt)
    opened = await conversations.open_case(
        event(), "370200-2026-0001", render_text, source="qr_code"
    )
    assert "5 非常满意" in opened.text
    again = await conversations.open_case(
        event(), "370200-2026-0001", render_text, source="qr_code"
    )
    assert "5 非常满意" in again.text  # the same case: the current question again
    for text in ("5 4 5 5", "0"):
        await conversations.handle(event(text), render_text)
    lookup = await harness.client.get(
        "/api/v1/service-records/370200-2026-0001", headers=harness.api_key()
    )
    rating = lookup.json()["rating"]
    assert rating["status"] == "complete" and rating["channel"] == "qr_code"
    assert rating["provider"] == "telegram" and rating["unsolicited"] is False


async def test_a_case_rated_elsewhere_is_not_rated_again(harness: Harness) -> None:
    await harness.report()  # invited by SMS
    await harness.reply_text("3")  # a rating is in progress there
    reply = await Conversations(harness.rt).open_case(
        event(), "370200-2026-0001", render_text, source="link"
    )
    assert "已完成" in reply.text


async def test_opening_another_case_closes_the_open_one_keeping_its_level(harness: Harness) -> None:
    await harness.report("A-1", phone=None)
    harness.clock.advance(days=2)
    await harness.report("A-2", phone=None)
    conversations = Conversations(harness.rt)
    await conversations.open_case(event(), "A-1", render_text, source="link")
    await conversations.handle(event("2"), render_text)
    await conversations.open_case(event(), "A-2", render_text, source="link")
    headers = harness.api_key()
    first = (await harness.client.get("/api/v1/service-records/A-1", headers=headers)).json()
    assert first["rating"]["status"] == "incomplete" and first["rating"]["level"] == 2
    assert first["rating"]["channel"] == "mobile"


async def test_repeated_delivery_is_flagged_so_chat_channels_do_not_send_twice(
    harness: Harness,
) -> None:
    await harness.report(phone=None)
    first = InboundEvent(channel="telegram", sender=CHAT, text="", delivery_id="tg:1", locale="en")
    conversations = Conversations(harness.rt)
    a = await conversations.open_case(first, "370200-2026-0001", render_text, source="link")
    b = await conversations.open_case(first, "370200-2026-0001", render_text, source="link")
    assert not a.repeated and b.repeated and a.text == b.text
    assert "Very satisfied" in a.text or "very satisfied" in a.text.lower()
