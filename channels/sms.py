"""SMS through Twilio Messaging: the inbound webhook's form → an InboundEvent, and the engine's
events → SMS text (with "reply 1–5" instructions) → TwiML. The contract is in ``channels.base``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from channels.base import BUSY, BadRequest, checked_text
from channels.voucher import voucher_text
from dialogs.events import Event, InboundEvent, Prompt, Say, VoucherIssued
from locales import gettext, ids
from storage.privacy import InvalidPhone, normalize_phone

CHANNEL = "sms"
PROVIDER = "twilio"


def parse(form: Mapping[str, Any]) -> tuple[str, str, str]:
    """(sender, text, MessageSid) of a Twilio Messaging webhook. The sender is the phone number
    in E.164 form; a short code or an alphanumeric sender is kept as it came."""
    missing = [name for name in ("From", "MessageSid") if not form.get(name)]
    if missing:
        raise BadRequest(f"missing form field(s): {', '.join(missing)}")
    body = checked_text("Body", str(form.get("Body") or ""))
    sender = str(form["From"])
    with suppress(InvalidPhone):
        sender = normalize_phone(sender)
    return sender, body, str(form["MessageSid"])


def inbound_event(sender_hash: str, text: str, message_sid: str, locale: str) -> InboundEvent:
    """SMS carries no language: a new conversation gets the deployment's default locale."""
    return InboundEvent(
        channel=CHANNEL,
        sender=sender_hash,
        text=text,
        delivery_id=f"sms:{message_sid}",
        locale=locale,
    )


def render_reply(events: Sequence[Event], locale: str) -> str:
    """The TwiML that answers the inbound message with what the engine said."""
    return twiml(render_text(events, locale))


def busy_reply(locale: str) -> str:
    return render_reply(BUSY, locale)


def render_text(events: Sequence[Event], locale: str) -> str:
    """The SMS text for what the engine said: statements, then the question with how to answer."""
    lines: list[str] = []
    for event in events:
        if isinstance(event, Say):
            lines.append(_text(locale, event.message, event.params))
        elif isinstance(event, Prompt):
            if event.hint:
                lines.append(gettext(locale, event.hint))
            lines.append(_text(locale, event.message, event.params))
            lines.extend(how_to_answer(event, locale))
        elif isinstance(event, VoucherIssued):
            lines.append(voucher_text(event, locale))
    return "\n".join(line for line in lines if line)


def _text(locale: str, message: str, params: Mapping[str, Any]) -> str:
    return gettext(locale, message, **params)


def how_to_answer(prompt: Prompt, locale: str) -> list[str]:
    """The lines that tell a typing citizen how to answer ``prompt`` ("请回复数字1-5：…")."""
    separator = gettext(locale, ids.LIST_SEPARATOR)

    def numbered(options: Sequence[tuple[str, str]]) -> str:
        return separator.join(f"{value} {gettext(locale, label)}" for value, label in options)

    lines = []
    if prompt.kind == "level":
        lines.append(gettext(locale, ids.SMS_REPLY_LEVEL, options=numbered(prompt.options)))
    elif prompt.kind == "choice":
        message = ids.SMS_REPLY_CHOICE_MANY if prompt.multiple else ids.SMS_REPLY_CHOICE_ONE
        lines.append(gettext(locale, message, options=numbered(prompt.options)))
    elif prompt.kind == "yes_no":
        lines.append(gettext(locale, ids.SMS_REPLY_YES_NO))
    if prompt.optional:
        lines.append(gettext(locale, ids.SMS_REPLY_SKIP))
    return lines


# What XML 1.0 cannot hold, not even as a character reference: control characters but tab,
# newline and carriage return, lone surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
_NO_MESSAGE = f"{_DECLARATION}<Response />"


def twiml(text: str) -> str:
    """``<Response><Message>…</Message></Response>``, or an empty ``<Response />`` for no text.

    The bytes twilio's ``MessagingResponse`` makes, from a template (building the element tree
    was a twentieth of a turn's CPU); only characters XML cannot hold are left out, where
    ``MessagingResponse`` would put them in and Twilio could not parse the answer."""
    text = _NOT_XML.sub("", text)
    if not text:
        return _NO_MESSAGE
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"{_DECLARATION}<Response><Message>{escaped}</Message></Response>"
