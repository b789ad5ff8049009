"""The Telegram channel end to end: webhooks built from aiogram's own types go into the app, the
real aiogram Bot and Dispatcher handle them, and every Bot API call lands on a fake Telegram
server on 127.0.0.1 (tests/fakes/telegram_api.py). On both backends, like every app test."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiogram.types import CallbackQuery, Chat, Message, MessageEntity, Update, User
from pydantic import ValidationError

from bot.cli import main
from bot.conversation.turn import conversation_key
from bot.settings import Settings
from channels import telegram
from tests.bot.conftest import FakeClock, Harness, make_settings, serving
from tests.fakes.telegram_api import TOKEN, Call, FakeTelegram

SECRET = "tg-secret_0123456789"
CHAT_ID = 987654321
RECORD = "370200-2026-0001"
LEVEL_LABELS = {
    "zh-hans": [
        "5 ★★★★★ 非常满意",
        "4 ★★★★ 满意",
        "3 ★★★ 基本满意",
        "2 ★★ 不满意",
        "1 ★ 非常不满意",
    ],
    "zh-hant": [
        "5 ★★★★★ 非常滿意",
        "4 ★★★★ 滿意",
        "3 ★★★ 普通",
        "2 ★★ 不滿意",
        "1 ★ 非常不滿意",
    ],
    "en": [
        "5 ★★★★★ Very satisfied",
        "4 ★★★★ Satisfied",
        "3 ★★★ Neutral",
        "2 ★★ Dissatisfied",
        "1 ★ Very dissatisfied",
    ],
}


# --- building updates with aiogram's types -------------------------------------------------------

_message_ids = count(1)
_query_ids = count(1)


def citizen(language_code: str | None = "zh-hans", chat_id: int = CHAT_ID) -> User:
    return User(id=chat_id, is_bot=False, first_name="市民", language_code=language_code)


def as_json(update: Update) -> dict[str, Any]:
    return update.model_dump(mode="json", exclude_none=True, by_alias=True)


def message_update(
    update_id: int,
    text: str,
    *,
    language_code: str | None = "zh-hans",
    chat_id: int = CHAT_ID,
    chat_type: str = "private",
) -> dict[str, Any]:
    entities = None
    if text.startswith("/"):
        entities = [MessageEntity(type="bot_command", offset=0, length=len(text.split()[0]))]
    message = Message(
        message_id=next(_message_ids),
        date=datetime.now(UTC),
        chat=Chat(id=chat_id, type=chat_type),
        from_user=citizen(language_code, chat_id),
        text=text,
        entities=entities,
    )
    return as_json(Update(update_id=update_id, message=message))


def button_update(
    update_id: int,
    data: str,
    message_id: int,
    *,
    language_code: str | None = "zh-hans",
    chat_id: int = CHAT_ID,
) -> dict[str, Any]:
    pressed = Message(
        message_id=message_id,
        date=datetime.now(UTC),
        chat=Chat(id=chat_id, type="private"),
        from_user=User(id=int(TOKEN.split(":")[0]), is_bot=True, first_name="ratebot"),
        text="…",
    )
    query = CallbackQuery(
        id=f"cq{next(_query_ids)}",
        from_user=citizen(language_code, chat_id),
        chat_instance="ci-1",
        message=pressed,
        data=data,
    )
    return as_json(Update(update_id=update_id, callback_query=query))


# --- the app with Telegram pointing at the fake ------------------------------------------------


@dataclass
class TG:
    """Drives the app as Telegram would, and reads what the bot sent to the fake Bot API."""

    h: Harness
    fake: FakeTelegram
    language_code: str | None = "zh-hans"
    update_ids: Iterator[int] = field(default_factory=lambda: count(100))

    async def post(
        self, body: Any, *, secret: str | bytes | None = SECRET, raw: bytes | None = None
    ) -> httpx.Response:
        headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        if raw is not None:
            return await self.h.client.post("/channels/telegram", content=raw, headers=headers)
        return await self.h.client.post("/channels/telegram", json=body, headers=headers)

    async def deliver(self, update: dict[str, Any]) -> list[Call]:
        """Post one update; returns the Bot API calls it caused."""
        before = len(self.fake.calls)
        response = await self.post(update)
        assert response.status_code == 200, response.text
        assert response.content == b""
        return self.fake.calls[before:]

    async def say(self, text: str, *, update_id: int | None = None) -> list[Call]:
        """The citizen types ``text``; returns the sendMessage calls of the reply."""
        uid = update_id if update_id is not None else next(self.update_ids)
        calls = await self.deliver(message_update(uid, text, language_code=self.language_code))
        return [c for c in calls if c.method == "sendMessage"]

    def last_keyboard(self) -> Call:
        return next(c for c in reversed(self.fake.sent) if c.keyboard)

    async def press(
        self, value: str, *, on: Call | None = None, update_id: int | None = None
    ) -> list[Call]:
        """Tap the button with ``value`` on message ``on`` (default: the last one with buttons);
        returns every Bot API call it caused."""
        message = on or self.last_keyboard()
        data = next(d for d in message.button_data if d.rpartition(":")[2] == value)
        uid = update_id if update_id is not None else next(self.update_ids)
        message_id = message.message_id
        return await self.deliver(
            button_update(uid, data, message_id, language_code=self.language_code)
        )

    async def ratings(self) -> list[dict[str, Any]]:
        response = await self.h.client.get("/api/v1/ratings", headers=self.h.api_key("admin"))
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    async def session(self) -> dict[str, Any] | None:
        key = conversation_key("telegram", self.h.rt.privacy.contact_hash(str(CHAT_ID)))
        return await self.h.rt.store.get(key)


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    fake.url = fake.start()  # type: ignore[attr-defined]
    yield fake
    fake.stop()


def telegram_settings(fake: FakeTelegram) -> dict[str, Any]:
    return {
        "telegram_token": TOKEN,
        "telegram_secret": SECRET,
        "telegram_api_url": fake.url,  # type: ignore[attr-defined]
    }


@pytest.fixture
async def tg(
    backend: dict[str, Any], clock: FakeClock, fake_telegram: FakeTelegram
) -> AsyncIterator[TG]:
    settings = make_settings(**backend, **telegram_settings(fake_telegram))
    async with serving(settings, clock) as harness:
        yield TG(harness, fake_telegram)


# --- a whole rating by buttons, in each language ----------------------------------------------


@pytest.mark.parametrize(
    ("language_code", "locale", "skip", "thanks"),
    [
        ("zh-hans", "zh_Hans_CN", "跳过", "评价已提交"),
        ("en", "en", "Skip", "Your rating has been received"),
        ("zh-TW", "zh_Hant_TW", "跳過", "評價已送出"),
    ],
)
async def test_a_whole_rating_by_buttons(
    tg: TG, language_code: str, locale: str, skip: str, thanks: str
) -> None:
    tg.language_code = language_code
    labels = LEVEL_LABELS["zh-hant" if locale == "zh_Hant_TW" else language_code]
    [opening] = await tg.say("/start")
    assert opening.params["chat_id"] == str(CHAT_ID)
    assert opening.button_labels == labels
    assert opening.button_data == [f"a:overall:{v}" for v in "54321"]
    assert [len(row) for row in opening.keyboard] == [1, 1, 1, 1, 1]  # one level a row
    overall_message = opening

    for value in ("5", "4", "5", "5"):  # overall, attitude, efficiency, convenience
        pressed = tg.last_keyboard()
        calls = await tg.press(value)
        methods = [c.method for c in calls]
        assert methods == ["answerCallbackQuery", "editMessageReplyMarkup", "sendMessage"]
        assert "text" not in calls[0].params  # a plain answer: no "already answered" toast
        edit = calls[1].params
        assert edit["chat_id"] == str(CHAT_ID)
        assert int(edit["message_id"]) == pressed.message_id
        assert "reply_markup" not in edit  # the keyboard is removed
    comment = tg.fake.sent[-1]
    assert comment.button_labels == [skip] and comment.button_data == ["a:comment:0"]

    calls = await tg.press("0")
    done = [c for c in calls if c.method == "sendMessage"]
    assert len(done) == 1 and thanks in done[0].params["text"] and not done[0].keyboard

    [rating] = await tg.ratings()
    assert rating["status"] == "complete" and rating["level"] == 5
    assert rating["dimensions"] == {"attitude": 4, "efficiency": 5, "convenience": 5}
    assert rating["comment"] is None and rating["locale"] == locale
    assert rating["channel"] == "mobile" and rating["provider"] == "telegram"
    assert rating["unsolicited"] is True

    # A button of a question answered long ago: refused, nothing changes.
    calls = await tg.press("3", on=overall_message)
    assert [c.method for c in calls] == ["answerCallbackQuery"]
    assert calls[0].params["text"]
    assert (await tg.ratings())[0]["level"] == 5


async def test_a_bad_review_typed_and_tapped(tg: TG) -> None:
    [first] = await tg.say("/rate")
    assert "总体评价" in first.params["text"]
    [attitude] = await tg.say("2")  # typed answers work as well as buttons
    assert attitude.button_data[0] == "a:attitude:5"
    [problems] = await tg.say("1 2 1")  # the three dimensions at once
    assert problems.button_labels[0] == "1 服务态度差" and len(problems.keyboard) == 6
    assert "如13" in problems.params["text"]  # several can be typed, and the prompt says so
    [details] = await tg.say("13")
    assert details.button_data == ["a:details:0"]
    [callback] = await tg.say("窗口让我跑了三次")
    assert callback.button_labels == ["是", "否"] and len(callback.keyboard) == 1
    calls = await tg.press("1")
    assert "评价已提交" in calls[-1].params["text"]
    [rating] = await tg.ratings()
    assert rating["level"] == 2 and rating["bad_review"] is True
    assert rating["dimensions"] == {"attitude": 1, "efficiency": 2, "convenience": 1}
    assert rating["complaint"] == {
        "problems": ["attitude", "repeated_visits"],
        "details": "窗口让我跑了三次",
        "wants_callback": True,
    }


async def test_a_hint_comes_with_the_keyboard_again(tg: TG) -> None:
    await tg.say("/start")
    [again] = await tg.say("还行吧")
    assert "1-5" in again.params["text"] and len(again.button_data) == 5


async def test_start_again_asks_the_current_question_without_counting_a_retry(tg: TG) -> None:
    await tg.say("/start")
    await tg.say("5")
    [again] = await tg.say("/rate")
    assert "服务态度" in again.params["text"] and again.button_data[0] == "a:attitude:5"
    session = await tg.session()
    assert session is not None and session["step"] == "attitude" and session["retries"] == 0


# --- deep links ---------------------------------------------------------------------------------


async def test_start_with_a_case_link_rates_that_case(tg: TG) -> None:
    assert (await tg.h.report(phone=None)).status_code == 201
    [opening] = await tg.say(f"/start rec_{RECORD}")
    assert "总体评价" in opening.params["text"] and len(opening.button_data) == 5
    await tg.say("5455")
    await tg.press("0")
    [rating] = await tg.ratings()
    assert rating["record_no"] == RECORD and rating["unsolicited"] is False
    # source "link": national_channel counts only a scanned code as qr_code, so this is mobile
    assert rating["channel"] == "mobile" and rating["provider"] == "telegram"

    [again] = await tg.say(f"/start rec_{RECORD}")
    assert "已完成" in again.params["text"] and not again.keyboard
    [unknown] = await tg.say("/start rec_NO-SUCH-CASE")
    assert "未找到该办件" in unknown.params["text"]


async def test_a_printed_code_payload_counts_as_qr_code(tg: TG) -> None:
    await tg.h.report(phone=None)
    await tg.say(f"/start qr_{RECORD}")
    await tg.say("4444")
    rating = (await tg.ratings())[0]
    assert rating["channel"] == "qr_code" and rating["status"] == "in_progress"


async def test_a_case_rated_in_another_chat_is_not_rated_again(tg: TG) -> None:
    await tg.h.report(phone=None)
    other = 555000111
    await tg.deliver(message_update(1, f"/start rec_{RECORD}", chat_id=other))
    await tg.deliver(message_update(2, "5", chat_id=other))
    [reply] = await tg.say(f"/start rec_{RECORD}")
    assert "已完成" in reply.params["text"]


# --- re-deliveries, stale and double presses ---------------------------------------------------


async def test_a_redelivered_update_sends_nothing_and_changes_nothing(tg: TG) -> None:
    await tg.say("/start", update_id=7)
    assert await tg.say("/start", update_id=7) == []
    await tg.say("5", update_id=8)
    session = await tg.session()
    assert session is not None and session["step"] == "attitude"
    assert await tg.say("5", update_id=8) == []  # the same update again
    assert await tg.session() == session
    # A re-delivered button press: no second callback answer, edit or message.
    calls = await tg.press("4", update_id=9)
    assert [c.method for c in calls][-1] == "sendMessage"
    before = await tg.session()
    again = await tg.deliver(
        button_update(9, "a:attitude:4", 1, language_code=tg.language_code)  # same update_id
    )
    assert again == [] and await tg.session() == before


async def test_a_stale_button_is_refused_and_changes_nothing(tg: TG) -> None:
    [opening] = await tg.say("/start")
    await tg.say("3")  # answered by typing: the keyboard of the opening question stays
    before = await tg.session()
    calls = await tg.press("5", on=opening)
    assert [c.method for c in calls] == ["answerCallbackQuery"]
    assert calls[0].params["text"] == "这个问题已经回答过了。"
    assert await tg.session() == before
    assert (await tg.ratings())[0]["level"] == 3


async def test_a_double_tap_answers_one_question(tg: TG) -> None:
    [opening] = await tg.say("/start")
    message_id = opening.message_id
    first, second = (button_update(uid, "a:overall:5", message_id) for uid in (50, 51))
    await asyncio.gather(tg.deliver(first), tg.deliver(second))
    session = await tg.session()
    assert session is not None and session["step"] == "attitude"
    assert session["answers"] == {"level": 5}
    refusals = [c for c in tg.fake.of("answerCallbackQuery") if c.params.get("text")]
    assert len(refusals) == 1
    assert len(tg.fake.of("editMessageReplyMarkup")) == 1


# --- commands -----------------------------------------------------------------------------------


async def test_language_switches_and_is_remembered(tg: TG) -> None:
    await tg.say("/start")
    [menu] = await tg.say("/language")
    assert menu.params["text"] == "请选择语言："
    assert menu.button_labels == ["简体中文", "繁體中文", "English"]
    calls = await _press_language(tg, menu, "en")
    sent = [c for c in calls if c.method == "sendMessage"]
    assert sent[0].params["text"] == "Language set to English."
    assert sent[1].button_labels == LEVEL_LABELS["en"]  # the open question, asked again
    # The citizen's Telegram is still in Chinese; the choice wins.
    [attitude] = await tg.say("5")
    assert "attitude" in attitude.params["text"].lower()
    assert attitude.button_labels[0] == "5 ★★★★★ Very satisfied"
    await _press_language(tg, (await tg.say("/language"))[0], "zh_Hant_TW")
    [efficiency] = await tg.say("5")
    assert efficiency.button_labels[0] == "5 ★★★★★ 非常滿意"


async def _press_language(tg: TG, menu: Call, locale: str) -> list[Call]:
    message_id = menu.message_id
    calls = await tg.deliver(button_update(next(tg.update_ids), f"l:{locale}", message_id))
    assert [c.method for c in calls][:2] == ["answerCallbackQuery", "editMessageReplyMarkup"]
    return calls


async def test_help_and_stop(tg: TG) -> None:
    help_text, question = await tg.say("/help")
    assert "好差评" in help_text.params["text"] and not help_text.keyboard
    assert len(question.button_data) == 5
    await tg.say("4")
    [stopped] = await tg.say("/stop")
    assert "您已退订" in stopped.params["text"]
    contact = tg.h.rt.privacy.contact_hash(str(CHAT_ID))
    with tg.h.rt.db.connect() as db:
        row = db.execute(
            sa.text("SELECT channel FROM opt_outs WHERE contact_hash = :h"), {"h": contact}
        )
        assert row.scalar() == "telegram"
    [rating] = await tg.ratings()
    assert rating["status"] == "incomplete" and rating["level"] == 4


async def test_groups_are_ignored(tg: TG) -> None:
    calls = await tg.deliver(message_update(3, "/start", chat_id=-100123, chat_type="group"))
    assert calls == []


# --- the webhook's gate ---------------------------------------------------------------------------


async def test_secret_token_is_required_and_checked(tg: TG) -> None:
    update = message_update(1, "/start")
    missing = await tg.post(update, secret=None)
    assert missing.status_code == 401 and missing.json()["detail"]
    wrong = await tg.post(update, secret=SECRET + "x")
    assert wrong.status_code == 403
    odd = await tg.post(update, secret="ü".encode("latin-1"))  # not ASCII: still a 403
    assert odd.status_code == 403
    assert tg.fake.calls == []


async def test_bodies_that_are_not_updates_are_refused(tg: TG) -> None:
    bad_json = await tg.post(None, raw=b'{"update_id": 1,')
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["detail"]
    not_utf8 = await tg.post(None, raw=b"\xff\xfe")
    assert not_utf8.status_code == 400
    for body in ({"hello": "world"}, [1, 2], {"update_id": "x"}, "text"):
        response = await tg.post(body)
        assert response.status_code == 422, body
        assert response.json()["detail"].startswith("not a Telegram Update")
    deep = await tg.post(None, raw=b"[" * 20000 + b"]" * 20000)
    assert deep.status_code in (400, 422)
    nul = await tg.post(message_update(2, "a\x00b"))
    assert nul.status_code == 400
    assert tg.fake.calls == []


async def test_not_configured_is_404(harness: Harness) -> None:
    response = await harness.client.post(
        "/channels/telegram",
        json=message_update(1, "/start"),
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    assert response.status_code == 404 and "RATEBOT_TELEGRAM_TOKEN" in response.json()["detail"]


async def test_a_failing_bot_api_does_not_fail_the_webhook(
    tg: TG, caplog: pytest.LogCaptureFixture
) -> None:
    tg.fake.fail["sendMessage"] = (403, "Forbidden: bot was blocked by the user")
    with caplog.at_level(logging.INFO):
        assert await tg.say("/start") != []  # attempted, refused by the API
        await tg.say("5")
    session = await tg.session()
    assert session is not None and session["step"] == "attitude"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "sendMessage" in logged and str(CHAT_ID) not in logged  # masked


async def test_the_chat_id_is_never_stored_in_clear(tg: TG) -> None:
    await tg.say("/start")
    await tg.say("5 5 5 5")
    await tg.press("0")
    with tg.h.rt.db.connect() as db:
        for table in ("ratings", "opt_outs"):
            for row in db.execute(sa.text(f"SELECT * FROM {table}")):  # noqa: S608
                assert str(CHAT_ID) not in " ".join(map(str, row))


# --- settings and the command line ------------------------------------------------------------


def test_settings_insist_on_a_valid_secret_with_the_token() -> None:
    base = {"secret_key": "x" * 40}
    with pytest.raises(ValidationError, match="RATEBOT_TELEGRAM_SECRET is required"):
        Settings(_env_file=None, telegram_token=TOKEN, **base)  # type: ignore[call-arg]
    for bad in ("has space", "x" * 257, "ä"):
        with pytest.raises(ValidationError, match="1-256 characters"):
            Settings(_env_file=None, telegram_token=TOKEN, telegram_secret=bad, **base)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="bot token"):
        Settings(_env_file=None, telegram_token="nonsense", telegram_secret=SECRET, **base)  # type: ignore[call-arg]
    ok = Settings(_env_file=None, telegram_token=TOKEN, telegram_secret=SECRET, **base)  # type: ignore[call-arg]
    assert ok.telegram_enabled
    assert not Settings(_env_file=None, telegram_token="", **base).telegram_enabled  # type: ignore[call-arg]


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("RATEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RATEBOT_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")


def test_set_webhook(
    cli_env: None,
    fake_telegram: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RATEBOT_PUBLIC_URL", "https://ratebot.example.gov.cn/")
    for name, value in telegram_settings(fake_telegram).items():
        monkeypatch.setenv(f"RATEBOT_{name.upper()}", value)
    main(["telegram", "set-webhook"])
    [call] = fake_telegram.of("setWebhook")
    assert call.params["url"] == "https://ratebot.example.gov.cn/channels/telegram"
    assert call.params["secret_token"] == SECRET
    assert call.params["allowed_updates"] == ["message", "callback_query"]
    out = capsys.readouterr().out
    assert "https://ratebot.example.gov.cn/channels/telegram" in out and SECRET not in out


def test_set_webhook_without_a_token_says_what_to_set(cli_env: None) -> None:
    with pytest.raises(SystemExit, match="RATEBOT_TELEGRAM_TOKEN"):
        main(["telegram", "set-webhook"])


def test_chat_renders_the_telegram_form(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("5\n4\n5\n5\n0\n"))
    main(["chat", "--channel", "telegram", "--record-no", "R1"])
    out = capsys.readouterr().out
    assert "(ratebot chat: telegram, zh_Hans_CN;" in out
    assert "[5 ★★★★★ 非常满意]" in out and "[1 ★ 非常不满意]" in out
    assert "[跳过 (0)]" in out and "rating complete" in out


def test_locale_of_telegram_language_codes() -> None:
    cases = {
        "zh-hans": "zh_Hans_CN",
        "zh-CN": "zh_Hans_CN",
        "zh": "zh_Hans_CN",
        "zh-hant": "zh_Hant_TW",
        "zh-TW": "zh_Hant_TW",
        "zh-HK": "zh_Hant_TW",
        "zh-Hant-HK": "zh_Hant_TW",
        "en": "en",
        "en-GB": "en",
        "ru": None,
        None: None,
    }
    for code, locale in cases.items():
        assert telegram.locale_of(code) == locale, code
