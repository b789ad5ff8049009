"""Invitations in Telegram: a case reported with the citizen's chat is invited there — the intro
with the case's deep link as a button, then the first question with its stars — through the real
aiogram Bot against the fake Bot API (tests/fakes/telegram_api.py); a refused send goes on by
SMS when the phone is known, every attempt recorded on the invitation."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot import worker
from tests.bot.conftest import FakeClock, Harness, make_settings, serving
from tests.bot.webhooks import test_telegram
from tests.bot.webhooks.test_telegram import CHAT_ID, SECRET, TG
from tests.fakes.telegram_api import TOKEN
from tests.samples import PHONE

# The channel's own fixtures: an app wired to the fake Bot API.
fake_telegram, tg = test_telegram.fake_telegram, test_telegram.tg

RECORD = "370200-2026-0001"
LINK = f"https://t.me/ratebot?start=rec_{RECORD}"  # the fake's getMe names the bot "ratebot"
BLOCKED = (403, "Forbidden: bot was blocked by the user")
NO_CHAT = (400, "Bad Request: chat not found")


async def report(h: Harness, record_no: str = RECORD, **body: Any) -> dict[str, Any]:
    response = await h.report(record_no, phone=None, **body)
    assert response.status_code == 201, response.text
    invitation: dict[str, Any] = response.json()["invitations"][0]
    return invitation


async def test_a_case_reported_with_a_chat_is_invited_there_with_its_link(tg: TG) -> None:
    invitation = await report(tg.h, citizen={"telegram_chat_id": CHAT_ID})
    assert invitation["channel"] == "telegram" and invitation["status"] == "sent"
    [message] = invitation["messages"]
    assert message["provider"] == "telegram" and message["status"] == "sent"
    assert str(CHAT_ID) not in message["to"] and message["to"].endswith(str(CHAT_ID)[-4:])
    intro, question = tg.fake.sent
    assert intro.params["chat_id"] == question.params["chat_id"] == str(CHAT_ID)
    assert "不动产登记" in intro.params["text"] and "/stop" in intro.params["text"]
    assert intro.links == [("评价本次服务", LINK)] and intro.button_data == []
    assert message["provider_id"] == str(question.message_id)  # the last message's id
    assert "总体评价" in question.params["text"] and question.links == []
    assert question.button_data == [f"a:overall:{v}" for v in "54321"]
    # The stars answer that case; the link (/start rec_<no>) asks the current question again.
    # Regression: with the rating under way, the link answered "already rated" in its own chat.
    await tg.press("5")
    [again] = await tg.say(f"/start rec_{RECORD}")
    assert "服务态度" in again.params["text"]
    await tg.say("4 5 5")
    await tg.say("0")
    [rating] = await tg.ratings()
    assert rating["record_no"] == RECORD and rating["status"] == "complete"
    assert rating["provider"] == "telegram" and rating["unsolicited"] is False


async def test_the_one_reminder_goes_in_telegram_too(tg: TG) -> None:
    await report(tg.h, citizen={"telegram_chat_id": CHAT_ID})
    tg.fake.clear()
    tg.h.clock.advance(hours=5)
    await worker.run_due(tg.h.rt)
    intro, question = tg.fake.sent
    assert intro.links == [("评价本次服务", LINK)] and question.button_data[0] == "a:overall:5"
    record = await tg.h.client.get(f"/api/v1/service-records/{RECORD}", headers=tg.h.api_key())
    messages = record.json()["invitations"][0]["messages"]
    assert [(m["purpose"], m["status"]) for m in messages] == [
        ("invitation", "sent"),
        ("reminder", "sent"),
    ]


@pytest.mark.parametrize(
    ("method", "refusal", "error"),
    [
        ("sendMessage", BLOCKED, "sendMessage: TelegramForbiddenError: " + BLOCKED[1]),
        ("sendMessage", NO_CHAT, "sendMessage: TelegramBadRequest: " + NO_CHAT[1]),
        ("getMe", (401, "Unauthorized"), "getMe: TelegramUnauthorizedError"),
    ],
)
async def test_a_refused_invitation_goes_by_sms_and_both_attempts_are_recorded(
    tg: TG, method: str, refusal: tuple[int, str], error: str
) -> None:
    tg.fake.fail[method] = refusal
    citizen = {"telegram_chat_id": CHAT_ID, "phone": PHONE}
    invitation = await report(tg.h, citizen=citizen, channel="telegram")
    assert invitation["status"] == "sent" and invitation["channel"] == "sms"
    attempts = [(m["provider"], m["status"], m["error"]) for m in invitation["messages"]]
    assert attempts == [("telegram", "failed", error), ("console", "sent (console)", None)]
    # the conversation is the SMS one; none was opened in the chat
    assert "服务态度" in await tg.h.reply_text("5")
    assert await tg.session() is None


async def test_a_refused_invitation_without_a_phone_is_failed_with_the_reason(tg: TG) -> None:
    tg.fake.fail["sendMessage"] = BLOCKED
    invitation = await report(tg.h, citizen={"telegram_chat_id": CHAT_ID})
    assert invitation["status"] == "failed" and invitation["reason"] == "send_failed"
    [message] = invitation["messages"]
    assert message["status"] == "failed" and "blocked by the user" in message["error"]
    assert invitation["channel"] == "telegram" and await tg.session() is None


def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def unreachable(backend: dict[str, Any], clock: FakeClock) -> AsyncIterator[Harness]:
    """An app whose Bot API does not answer (its server is down: connection refused)."""
    url = f"http://127.0.0.1:{closed_port()}"
    settings = make_settings(
        **backend, telegram_token=TOKEN, telegram_secret=SECRET, telegram_api_url=url
    )
    async with serving(settings, clock) as h:
        yield h


async def test_telegram_out_of_reach_goes_by_sms_or_fails(unreachable: Harness) -> None:
    citizen = {"telegram_chat_id": CHAT_ID, "phone": PHONE}
    by_sms = await report(unreachable, citizen=citizen, channel="telegram")
    assert by_sms["status"] == "sent" and by_sms["channel"] == "sms"
    first, second = by_sms["messages"]
    assert first["error"] == "getMe: TelegramNetworkError" and second["provider"] == "console"
    alone = await report(unreachable, "370200-2026-0002", citizen={"telegram_chat_id": 42})
    assert alone["status"] == "failed" and alone["reason"] == "send_failed"
    assert [m["error"] for m in alone["messages"]] == ["getMe: TelegramNetworkError"]


async def test_without_telegram_configured_the_attempt_fails_and_sms_follows(
    harness: Harness,
) -> None:
    citizen = {"telegram_chat_id": CHAT_ID, "phone": PHONE}
    invitation = await report(harness, citizen=citizen, channel="telegram")
    assert invitation["status"] == "sent" and invitation["channel"] == "sms"
    refused = invitation["messages"][0]
    assert refused["error"] == "not configured: RATEBOT_TELEGRAM_TOKEN"


async def test_a_record_number_no_link_can_carry_is_invited_without_the_button(tg: TG) -> None:
    invitation = await report(tg.h, "烟台/2026/0001", citizen={"telegram_chat_id": CHAT_ID})
    assert invitation["status"] == "sent"
    intro, question = tg.fake.sent
    assert intro.links == [] and not intro.keyboard
    assert question.button_data[0] == "a:overall:5"  # answered in the chat all the same
