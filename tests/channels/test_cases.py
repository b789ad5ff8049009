"""Runs the channel cases in ``cases/<channel>.yaml``: what a provider sends in, what the channel
parses out of it; the engine's events in, what the channel renders for its provider.

A case file names its channel (``channel: sms``) and lists cases. A case has a ``name``, one
operation (below) with its input, and either ``expect`` (the result, in the plain form the
operation's function here returns) or ``refused`` (a part of the :class:`BadRequest` reason).
Rendering cases may name a ``locale`` (default ``en``).

sms       ``parse`` (form), ``render`` (events), ``busy`` (locale)
voice     ``call`` / ``answer`` / ``status`` / ``transcription`` (form; an answer's options
          beside it), ``render`` (events; ``action``, ``can_text``, ``style``), ``busy``
          (``retry_url``), ``hang_up``
telegram  ``update`` (a body: an object, or text as it came), ``callback`` (button data),
          ``payload`` (``/start`` argument), ``language`` (a Telegram ``language_code``),
          ``render`` (events), ``busy``
wechat    ``push`` (the XML), ``render`` (events), ``busy``

Events are written ``{say: id}`` or ``{say: [id, {params}]}``; ``{prompt: step}`` (or
``{prompt: {step: …, hint: …, step_id: …}}``), the prompt the engine asks for that step of the
default survey; ``{voucher: {code, hall, minutes, expires, url}}``. What is rendered is written
as the provider sees it, shortened only where it is unreadable as data: TwiML as one line per verb
(:func:`outline`), a Telegram keyboard as ``label → callback data``, a WeChat message menu as
``id → content``.
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiogram import Bot

from channels import sms, telegram, voice, wechat
from channels.base import BadRequest
from dialogs import engine
from dialogs.events import Event, Prompt, Say, VoucherIssued
from dialogs.survey import SURVEYS_DIR, load_survey

HERE = Path(__file__).resolve().parent
SURVEY = load_survey(SURVEYS_DIR / "default.yaml")
NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
BOT = Bot("123456:TEST-token")  # parse_update binds the Update to a bot; nothing is sent


# --- the forms cases are written in --------------------------------------------------------------


def event_of(spec: dict[str, Any]) -> Event:
    [(kind, value)] = spec.items()
    if kind == "say":
        message, params = (value, {}) if isinstance(value, str) else value
        return Say(message, params)
    if kind == "prompt":
        return prompt_of(value if isinstance(value, dict) else {"step": value})
    if kind == "voucher":
        return VoucherIssued(
            code=value["code"],
            hall=value["hall"],
            free_minutes=value["minutes"],
            expires_at=datetime.fromisoformat(value["expires"]),
            url=value["url"],
        )
    raise AssertionError(f"unknown event {spec!r}")


def prompt_of(spec: dict[str, Any]) -> Prompt:
    """The engine's own prompt for a step (its options as the engine sets them)."""
    started = engine.start(SURVEY, session_id="s1", now=NOW, locale="en").session
    assert started is not None
    [asked] = engine.ask(SURVEY, started.model_copy(update={"step": spec["step"]})).events
    assert isinstance(asked, Prompt)
    return dataclasses.replace(asked, **{k: spec[k] for k in ("hint", "step_id") if k in spec})


def events_of(case: dict[str, Any]) -> list[Event]:
    return [event_of(spec) for spec in case["render"]]


def outline(twiml: str) -> list[str]:
    """TwiML as lines: each verb (indented under the one it is in), its attributes, its text."""
    lines: list[str] = []

    def walk(element: ET.Element, depth: int) -> None:
        attributes = "".join(f" {name}={value}" for name, value in sorted(element.attrib.items()))
        text = (element.text or "").strip()
        lines.append("  " * depth + element.tag + attributes + (f": {text}" if text else ""))
        for child in element:
            walk(child, depth + 1)

    for verb in ET.fromstring(twiml):  # noqa: S314 - TwiML the channel just made
        walk(verb, 0)
    return lines


def telegram_messages(rendered: str) -> list[dict[str, Any]]:
    """Telegram messages: their text, their keyboard's rows as ``label → data`` (a row's buttons
    apart by `` | ``), the data of their QR code photo."""
    messages = []
    for item in json.loads(rendered):
        message: dict[str, Any] = {"text": item["text"]}
        if item["buttons"]:
            message["buttons"] = [
                " | ".join(f"{label} → {data}" for label, data in row) for row in item["buttons"]
            ]
        if item.get("photo"):
            message["photo"] = item["photo"]
        messages.append(message)
    return messages


def wechat_reply(text: str, messages: Any) -> dict[str, Any]:
    """A WeChat reply: its passive text and, to send instead, its messages (their text, the menu's
    items as ``id → content``, the typed line under it, the data of their QR code picture)."""
    sent = []
    for m in messages:
        message = {"text": m.text} if m.text else {}
        if m.menu:
            message["menu"] = [f"{item_id} → {content}" for item_id, content in m.menu]
        if m.tail:
            message["tail"] = m.tail
        if m.image:
            message["image"] = m.image
        sent.append(message)
    return {"text": text, "messages": sent} if sent else {"text": text}


# --- each channel's operations, with results as plain data ------------------------------------


def run_sms(op: str, case: dict[str, Any]) -> Any:
    locale = case.get("locale", "en")
    if op == "parse":
        sender, text, message_sid = sms.parse(case["parse"])
        return {"sender": sender, "text": text, "message_sid": message_sid}
    if op == "render":
        events = events_of(case)
        return {
            "text": sms.render_text(events, locale),
            "twiml": sms.render_reply(events, locale),
        }
    if op == "busy":
        return sms.busy_reply(case["busy"])
    raise AssertionError(op)


def run_voice(op: str, case: dict[str, Any]) -> Any:
    locale = case.get("locale", "en")
    if op == "call":
        call = voice.parse_call(case["call"])
        return {
            "sid": call.sid,
            "phone": call.phone,
            "contact": call.contact,
            "by_machine": call.by_machine,
        }
    if op == "answer":
        answer = voice.parse_answer(
            case["answer"],
            min_confidence=case.get("min_confidence", 0.5),
            nothing_skips=case.get("nothing_skips", False),
        )
        return {"text": answer.text, "recording": answer.recording, "repeat": answer.repeat}
    if op == "status":
        return voice.parse_status(case["status"])
    if op == "transcription":
        return list(voice.parse_transcription(case["transcription"]))
    if op == "render":
        options = case.get("style", {})
        style = voice.VoiceStyle(
            voices=options.get("voices", {}),
            audio={(loc, message): url for loc, message, url in options.get("audio", [])},
            transcribe_url=options.get("transcribe_url"),
        )
        twiml = voice.render_reply(
            events_of(case),
            locale,
            action=case.get("action", "https://rate.example/channels/voice/answer?turn=1"),
            style=style,
            can_text=case.get("can_text", True),
        )
        return outline(twiml)
    if op == "busy":
        return outline(voice.busy_reply(case["busy"], retry_url=case["retry_url"]))
    if op == "hang_up":
        return outline(voice.hang_up())
    raise AssertionError(op)


def run_telegram(op: str, case: dict[str, Any]) -> Any:
    locale = case.get("locale", "en")
    if op == "update":
        body = case["update"]
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            update = telegram.parse_update(raw, BOT)
        except telegram.NotAnUpdate as exc:
            raise BadRequest(f"(not an update) {exc}") from exc
        message = update.message
        return {"update_id": update.update_id, "text": message.text if message else None}
    if op == "callback":
        pressed = telegram.parse_callback(case["callback"])
        return list(pressed) if pressed is not None else None
    if op == "payload":
        opened = telegram.case_payload(case["payload"])
        return list(opened) if opened is not None else None
    if op == "language":
        return telegram.locale_of(case["language"])
    if op == "render":
        return telegram_messages(telegram.render_reply(events_of(case), locale))
    if op == "busy":
        return telegram_messages(telegram.busy_reply(case["busy"]))
    raise AssertionError(op)


def run_wechat(op: str, case: dict[str, Any]) -> Any:
    locale = case.get("locale", "en")
    if op == "push":
        message = wechat.parse(case["push"].encode())
        action = wechat.action(message)
        return {
            "kind": action.kind,
            "text": action.text,
            "record_no": action.record_no,
            "source": action.source,
            "button": action.button,
            "delivery": wechat.delivery_id(message, "H"),
        }
    if op == "render":
        rendered = wechat.load_reply(wechat.render_reply(events_of(case), locale))
        return wechat_reply(rendered.text, rendered.messages)
    if op == "busy":
        rendered = wechat.load_reply(wechat.busy_reply(case["busy"]))
        return wechat_reply(rendered.text, rendered.messages)
    raise AssertionError(op)


RUNNERS = {"sms": run_sms, "voice": run_voice, "telegram": run_telegram, "wechat": run_wechat}


def _cases() -> list[Any]:
    params = []
    for path in sorted((HERE / "cases").glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in document["cases"]:
            params.append(
                pytest.param(document["channel"], case, id=f"{path.stem}: {case['name']}")
            )
    return params


@pytest.mark.parametrize(("channel", "case"), _cases())
def test_channel_case(channel: str, case: dict[str, Any]) -> None:
    run = RUNNERS[channel]
    known = {"name", "expect", "refused", "locale"}
    [op] = [key for key in case if key not in known and key in OPERATIONS[channel]]
    if "refused" in case:
        with pytest.raises(BadRequest) as refused:
            run(op, case)
        assert case["refused"] in str(refused.value)
    else:
        assert run(op, case) == case["expect"]


OPERATIONS = {
    "sms": {"parse", "render", "busy"},
    "voice": {"call", "answer", "status", "transcription", "render", "busy", "hang_up"},
    "telegram": {"update", "callback", "payload", "language", "render", "busy"},
    "wechat": {"push", "render", "busy"},
}


def test_every_channel_has_its_case_file() -> None:
    """The cases are data beside this file: a missing file must fail, not run zero cases."""
    assert {channel for channel, _ in (p.values for p in _cases())} == set(RUNNERS)
