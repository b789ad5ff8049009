"""The channel contract (``channels.base``): every provider's module offers it under the same
names, and what it shares is written once."""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import TypeAdapter

from channels import base, sms, telegram, voice, wechat
from channels.base import BUSY, BadRequest, ChatMessage, chat_messages, checked_text
from dialogs import engine
from dialogs.events import InboundEvent, Prompt, Say, VoucherIssued
from dialogs.survey import Step
from locales import LOCALES, gettext, ids

CHANNELS_DIR = Path(base.__file__).resolve().parent
PROVIDERS = [sms, voice, telegram, wechat]
VOUCHER = VoucherIssued(
    code="ABCD-EFGH-JKM",
    hall="Yantai Service Center",
    free_minutes=120,
    expires_at=datetime.fromisoformat("2026-11-28T10:00:00+08:00"),
    url="https://rate.example/v/ABCD",
)
LEVEL = Prompt("overall", "survey.overall.prompt", "level", engine.LEVEL_OPTIONS)


@pytest.mark.parametrize("module", PROVIDERS, ids=lambda m: m.__name__)
def test_every_provider_offers_the_contract(module: ModuleType) -> None:
    assert isinstance(module.CHANNEL, str) and module.__name__.split(".")[-1] == module.CHANNEL
    assert module.PROVIDER in {"twilio", "telegram", "wechat"}
    for name in ("inbound_event", "render_reply", "busy_reply"):
        assert callable(getattr(module, name)), name
    assert [name for name in vars(module) if name.startswith("parse")], "no parse… function"


def _busy(module: ModuleType, locale: str) -> str:
    if module is voice:
        return voice.busy_reply(locale, retry_url="https://rate.example/channels/voice")
    reply: str = module.busy_reply(locale)
    return reply


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("module", PROVIDERS, ids=lambda m: m.__name__)
def test_the_busy_reply_says_so_in_the_provider_s_form(module: ModuleType, locale: str) -> None:
    said = gettext(locale, ids.ERROR_BUSY)
    reply = _busy(module, locale)
    assert said in reply
    if module is not voice:  # the one statement, rendered as the channel renders any reply
        assert reply == module.render_reply(list(BUSY), locale)


@pytest.mark.parametrize(
    ("module", "event", "expected"),
    [
        (
            sms,
            sms.inbound_event("H", "5", "SM1", "zh_Hans_CN"),
            InboundEvent("sms", "H", "5", delivery_id="sms:SM1", locale="zh_Hans_CN"),
        ),
        (
            voice,
            voice.inbound_event("H", "CA1", 3, voice.Answer("5")),
            InboundEvent("voice", "H", "5", delivery_id="voice:CA1:3", call_sid="CA1"),
        ),
        (
            voice,
            voice.inbound_event("H", "CA1", 4, voice.Answer(recording="https://r/RE1")),
            InboundEvent(
                "voice", "H", recording="https://r/RE1", delivery_id="voice:CA1:4", call_sid="CA1"
            ),
        ),
        (
            voice,
            voice.inbound_event("H", "CA1", "end"),
            InboundEvent("voice", "H", delivery_id="voice:CA1:end", call_sid="CA1"),
        ),
        (
            telegram,
            telegram.inbound_event("H", 42, "en", button="5", reply_to="enc"),
            InboundEvent(
                "telegram", "H", button="5", delivery_id="telegram:42", locale="en", reply_to="enc"
            ),
        ),
        (
            wechat,
            wechat.inbound_event("H", "好", "wechat:1001", "zh_Hans_CN", "4", "enc"),
            InboundEvent(
                "wechat",
                "H",
                "好",
                button="4",
                delivery_id="wechat:1001",
                locale="zh_Hans_CN",
                reply_to="enc",
            ),
        ),
    ],
    ids=["sms", "voice answer", "voice recording", "voice end", "telegram", "wechat"],
)
def test_inbound_events(module: ModuleType, event: InboundEvent, expected: InboundEvent) -> None:
    assert event == expected
    assert event.channel == module.CHANNEL


@pytest.mark.parametrize(
    ("value", "limit", "refused"),
    [
        ("五星", None, None),
        ("", None, None),
        ("a\x00b", None, "text contains a NUL character"),
        ("12345", 5, None),
        ("123456", 5, "text has a NUL character or is longer than 5 characters"),
        ("1\x00", 5, "text has a NUL character or is longer than 5 characters"),
    ],
)
def test_text_a_database_cannot_keep_is_refused(
    value: str, limit: int | None, refused: str | None
) -> None:
    if refused is None:
        assert checked_text("text", value, limit=limit) == value
    else:
        with pytest.raises(BadRequest, match=refused):
            checked_text("text", value, limit=limit)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], []),
        ([Say(engine.THANKS)], [ChatMessage(["thanks"])]),
        (
            [Say(engine.HELP), Say(engine.THANKS), LEVEL],
            [
                ChatMessage(["help", "thanks"]),
                ChatMessage(["survey.overall.prompt"], prompt=LEVEL),
            ],
        ),
        (
            [Prompt("overall", "survey.overall.prompt", "level", hint="hint.level")],
            [
                ChatMessage(
                    ["hint.level", "survey.overall.prompt"],
                    prompt=Prompt("overall", "survey.overall.prompt", "level", hint="hint.level"),
                )
            ],
        ),
        (
            [Say(engine.THANKS), VOUCHER, Say(engine.ALREADY_RATED)],
            [
                ChatMessage(["thanks"]),
                ChatMessage(["voucher.issued"], voucher=VOUCHER),
                ChatMessage(["session.already_rated"]),
            ],
        ),
    ],
    ids=["nothing", "a statement", "statements then a question", "a hint", "a voucher"],
)
def test_chat_messages_group_statements_apart_from_questions_and_vouchers(
    events: list[Any], expected: list[ChatMessage], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each sentence as its message id: the grouping is what is under test, not the catalogs.
    monkeypatch.setattr(base, "gettext", lambda locale, message, **params: message)
    monkeypatch.setattr(base, "voucher_text", lambda voucher, locale: "voucher.issued")
    assert chat_messages(events, "en") == expected


def test_the_spoken_forms_replace_what_the_engine_says() -> None:
    """``voice.FOR_THE_EAR`` names the engine's message ids rather than importing the engine:
    every one it names is one the engine says, or a survey step's default hint."""
    options = [{"value": "a", "label": "x"}, {"value": "b", "label": "y"}]
    steps = TypeAdapter(list[Step]).validate_python(
        [
            {"type": "level", "id": "s", "prompt": "p", "next": "end"},
            {
                "type": "choice",
                "id": "s",
                "prompt": "p",
                "next": "end",
                "options": options,
                "field": "complaint.problems",
            },
            {
                "type": "choice",
                "id": "s",
                "prompt": "p",
                "next": "end",
                "options": options,
                "field": "complaint.problems",
                "multiple": True,
            },
            {"type": "text", "id": "s", "prompt": "p", "next": "end", "field": "comment"},
            {
                "type": "yes_no",
                "id": "s",
                "prompt": "p",
                "next": "end",
                "field": "complaint.callback",
            },
        ]
    )
    default_hints = {step.hint_id for step in steps}
    assert set(voice.FOR_THE_EAR) == {engine.HELP, engine.OPTOUT_CONFIRMED} | default_hints


def test_no_channel_runs_the_engine() -> None:
    """A channel renders what the engine said; it never imports the engine to decide anything."""
    for path in sorted(CHANNELS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                assert all(a.name != "dialogs.engine" for a in node.names), path.name
            elif isinstance(node, ast.ImportFrom):
                assert node.module != "dialogs.engine", path.name
                if node.module == "dialogs":
                    assert all(a.name != "engine" for a in node.names), path.name
