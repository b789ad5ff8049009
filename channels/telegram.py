"""Telegram through the Bot API (aiogram 3): the webhook's body → an aiogram ``Update``, what a
chat says → an InboundEvent, the engine's events → Telegram messages with inline keyboards,
sending them to a chat, and inviting a chat to rate a case (with the case's deep link). The
contract is in ``channels.base``.

The rendered reply is a string (the glue remembers it for re-deliveries): JSON of a list of
``{"text": ..., "buttons": [[[label, callback_data], ...], ...], "photo": ...}``, one entry a
message to send. Statements go together in one message; a parking voucher is a photo of its QR
code (``photo`` is what the code holds) with the voucher as its caption; the question is a
message of its own that carries the keyboard: five ★ buttons for a level, one button per option
for a choice, yes / no, and "skip" for an optional text. A button's callback data is
``a:<step id>:<value>``: the value is what the citizen could have typed (``5``, ``2``, ``0``), so
typed answers and buttons are the same to the engine, and the step id lets the bot refuse a
button of a question already answered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from aiogram.utils.deep_linking import create_start_link
from pydantic import ValidationError

from channels.base import BUSY, BadRequest, Delivery, chat_messages, checked_text
from channels.voucher import qr_png
from dialogs.events import Event, InboundEvent, Prompt
from locales import LOCALES, gettext, ids

CHANNEL = "telegram"
PROVIDER = "telegram"
REQUEST_TIMEOUT = 10  # seconds for one Bot API call (well inside the chat turn's lock expiry)
MAX_CALLBACK_DATA = 64  # bytes, Telegram's limit
ANSWER = "a"  # callback data prefix of an answer button: a:<step id>:<value>
LANGUAGE = "l"  # callback data prefix of a language button: l:<locale>
SKIP_VALUE = "0"
STARS = "★"
# Each language by its own name, whatever the chat's language is (not translated on purpose).
LANGUAGE_NAMES = {"zh_Hans_CN": "简体中文", "zh_Hant_TW": "繁體中文", "en": "English"}
# Deep-link payloads (/start <payload>, t.me/<bot>?start=<payload>) that open a case, with the
# source the rating records: rec_<no> from a link, qr_<no> from a code printed for scanning.
CASE_LINK = "rec_"
CASE_PAYLOADS = {CASE_LINK: "link", "qr_": "qr_code"}
MAX_ERROR = 255  # characters of a refusal kept on the outbound message (its column's size)

Button = tuple[str, str]  # (label, callback data)

ALLOWED_UPDATES = ["message", "callback_query"]  # the updates the webhook is set to receive


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Telegram message to send: text and rows of inline buttons."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    photo: str = ""  # send as a photo of this data's QR code, ``text`` its caption
    # (label, URL): a last row of one button that opens a link. Only on what ratebot sends on its
    # own initiative (an invitation's case link), never in a remembered reply (``dump``).
    link: tuple[str, str] | None = None

    def markup(self) -> InlineKeyboardMarkup | None:
        rows = [
            [InlineKeyboardButton(text=label, callback_data=data) for label, data in row]
            for row in self.buttons
        ]
        if self.link is not None:
            label, url = self.link
            rows.append([InlineKeyboardButton(text=label, url=url)])
        return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


class NotAnUpdate(BadRequest):
    """The body is JSON, but not a Telegram Update."""


def parse_update(body: bytes, bot: Bot) -> Update:
    """The webhook's body as an aiogram Update, bound to ``bot``: :class:`BadRequest` when it is
    not JSON or a message's text holds what no database can keep, :class:`NotAnUpdate` when it is
    JSON but not an Update."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadRequest("body is not JSON") from exc
    if not isinstance(data, dict):
        raise NotAnUpdate("not a Telegram Update: expected a JSON object")
    try:
        update = Update.model_validate(data, context={"bot": bot})
    except (ValidationError, RecursionError) as exc:
        raise NotAnUpdate(f"not a Telegram Update: {_reason(exc)}") from exc
    message = update.message
    if message is not None:
        checked_text("message text", message.text or message.caption or "")
    return update


def carries_event(update: Update) -> bool:
    """Whether ``update`` holds one of :data:`ALLOWED_UPDATES` (an update may hold none)."""
    return any(getattr(update, kind) is not None for kind in ALLOWED_UPDATES)


def _reason(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return "nested too deeply"
    errors = exc.errors(include_input=False, include_url=False)  # never echo the citizen's data
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def locale_of(language_code: str | None) -> str | None:
    """The shipped locale for a Telegram user's ``language_code`` (an IETF tag such as ``en``,
    ``zh-hans``, ``zh-TW``), or ``None`` when there is none or it is not one we ship."""
    if not language_code:
        return None
    tags = language_code.replace("_", "-").lower().split("-")
    if tags[0] == "zh":
        traditional = {"hant", "tw", "hk", "mo"}
        return "zh_Hant_TW" if traditional & set(tags[1:]) else "zh_Hans_CN"
    if tags[0] == "en":
        return "en"
    return None


def case_payload(args: str | None) -> tuple[str, str] | None:
    """(record number, source) of a ``/start`` payload that opens a case, else ``None``."""
    payload = (args or "").strip()
    for prefix, source in CASE_PAYLOADS.items():
        if payload.startswith(prefix) and len(payload) > len(prefix):
            return payload[len(prefix) :], source
    return None


def inbound_event(
    sender_hash: str,
    update_id: int,
    locale: str,
    *,
    text: str = "",
    button: str | None = None,
    reply_to: str | None = None,
) -> InboundEvent:
    """``reply_to``: the chat id, encrypted."""
    return InboundEvent(
        channel=CHANNEL,
        sender=sender_hash,
        text=text,
        button=button,
        delivery_id=f"telegram:{update_id}",
        locale=locale,
        reply_to=reply_to,
    )


def answer_data(step_id: str, value: str) -> str:
    return f"{ANSWER}:{step_id}:{value}"


def parse_callback(data: str | None) -> tuple[str, str, str] | None:
    """``("a", step id, value)`` or ``("l", locale, "")`` for our buttons' data, else ``None``."""
    kind, _, rest = (data or "").partition(":")
    if kind == ANSWER:
        step_id, sep, value = rest.rpartition(":")
        return (ANSWER, step_id, value) if sep and step_id and value else None
    if kind == LANGUAGE and rest in LOCALES:
        return (LANGUAGE, rest, "")
    return None


# --- rendering -----------------------------------------------------------------------------------


def render_reply(events: Sequence[Event], locale: str) -> str:
    """The reply to send, as the JSON string the glue remembers (see the module docstring)."""
    return dump(render_messages(events, locale))


def busy_reply(locale: str) -> str:
    return render_reply(BUSY, locale)


def render_messages(events: Sequence[Event], locale: str) -> list[Outgoing]:
    messages = []
    for message in chat_messages(events, locale):
        if message.prompt is not None:
            messages.append(_question(message.prompt, message.lines, locale))
        elif message.voucher is not None:
            messages.append(Outgoing("\n".join(message.lines), photo=message.voucher.scan_data))
        else:
            messages.append(Outgoing("\n\n".join(message.lines)))
    return [m for m in messages if m.text]


def dump(messages: Sequence[Outgoing]) -> str:
    return json.dumps(
        [
            {"text": m.text, "buttons": [list(map(list, row)) for row in m.buttons]}
            | ({"photo": m.photo} if m.photo else {})
            for m in messages
        ],
        ensure_ascii=False,
    )


def load(rendered: str) -> list[Outgoing]:
    """The messages of a rendered reply ("" is none)."""
    if not rendered:
        return []
    return [
        Outgoing(
            item["text"],
            tuple(tuple((label, data) for label, data in row) for row in item.get("buttons", ())),
            item.get("photo", ""),
        )
        for item in json.loads(rendered)
    ]


def say(locale: str, message: str, **params: Any) -> str:
    """A rendered reply of one statement (for what the bot says outside the engine)."""
    return dump([Outgoing(gettext(locale, message, **params))])


def language_menu(locale: str) -> str:
    """The ``/language`` reply: the question and a button per shipped language."""
    buttons = tuple(((name, f"{LANGUAGE}:{code}"),) for code, name in LANGUAGE_NAMES.items())
    return dump([Outgoing(gettext(locale, ids.TELEGRAM_LANGUAGE_PROMPT), buttons)])


def _question(prompt: Prompt, lines: list[str], locale: str) -> Outgoing:
    """The question's message: its lines (and how to answer several at once), its keyboard."""
    if prompt.kind == "choice" and prompt.multiple:
        lines = [*lines, gettext(locale, ids.TELEGRAM_CHOICE_MANY)]
    rows = _buttons(prompt, locale)
    if any(len(answer_data(prompt.step_id, v).encode()) > MAX_CALLBACK_DATA for v in _values(rows)):
        rows = ()  # a survey step id too long for Telegram's 64 bytes: typed answers still work
    return Outgoing("\n".join(line for line in lines if line), rows)


def _values(rows: tuple[tuple[Button, ...], ...]) -> list[str]:
    return [data.rpartition(":")[2] for row in rows for _, data in row]


def _buttons(prompt: Prompt, locale: str) -> tuple[tuple[Button, ...], ...]:
    def button(value: str, label: str) -> Button:
        return (label, answer_data(prompt.step_id, value))

    if prompt.kind == "level":
        return tuple(
            (button(value, f"{value} {STARS * int(value)} {gettext(locale, label)}"),)
            for value, label in prompt.options
        )
    if prompt.kind == "choice":
        return tuple(
            (button(value, f"{value} {gettext(locale, label)}"),) for value, label in prompt.options
        )
    if prompt.kind == "yes_no":
        return (tuple(button(value, gettext(locale, label)) for value, label in prompt.options),)
    if prompt.optional:
        return ((button(SKIP_VALUE, gettext(locale, ids.TELEGRAM_SKIP)),),)
    return ()


def render_terminal(events: Sequence[Event], locale: str) -> str:
    """The Telegram form as plain text, for ``ratebot chat --channel telegram``: each message,
    then its buttons as ``[5 ★★★★★ 非常满意]`` (type the value to press one)."""
    blocks = []
    for message in render_messages(events, locale):
        lines = [message.text]
        for row in message.buttons:
            labels = []
            for label, data in row:
                value = data.rpartition(":")[2]
                labels.append(f"[{label}]" if label.startswith(value) else f"[{label} ({value})]")
            lines.append(" ".join(labels))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# --- sending -------------------------------------------------------------------------------------


def make_bot(token: str, *, api_url: str | None = None) -> Bot:
    """An aiogram Bot for ``token``, on ``api_url`` when set (a local Bot API server). Close it
    with ``await bot.session.close()``."""
    session = (
        AiohttpSession(api=TelegramAPIServer.from_base(api_url), timeout=REQUEST_TIMEOUT)
        if api_url
        else AiohttpSession(timeout=REQUEST_TIMEOUT)
    )
    return Bot(token, session=session)


async def send(bot: Bot, chat_id: int | str, messages: Sequence[Outgoing]) -> Delivery:
    """Send ``messages`` to a chat in order, a voucher as a photo of its QR code with the voucher
    as its caption, stopping at the first one the Bot API refuses: that refusal, else the last
    message's delivery."""
    delivery = Delivery(PROVIDER, None, "sent")
    for message in messages:
        try:
            if message.photo:
                photo = BufferedInputFile(qr_png(message.photo), filename="voucher.png")
                sent = await bot.send_photo(chat_id, photo, caption=message.text)
            else:
                sent = await bot.send_message(chat_id, message.text, reply_markup=message.markup())
        except TelegramAPIError as exc:
            return refused("sendPhoto" if message.photo else "sendMessage", exc)
        delivery = Delivery(PROVIDER, str(sent.message_id), "sent")
    return delivery


def refused(method: str, exc: TelegramAPIError) -> Delivery:
    """A failed delivery naming the error: its class, and for a refusal by Telegram (blocked by
    the user, chat not found) Telegram's own description — never the chat or the token (a
    network error's text may hold the server's address: its class only)."""
    error = f"{method}: {type(exc).__name__}"
    if isinstance(exc, TelegramBadRequest | TelegramForbiddenError | TelegramNotFound):
        error += f": {exc.message}"
    return Delivery(PROVIDER, None, "failed", error[:MAX_ERROR])


async def invite(
    bot: Bot, chat_id: str, record_no: str, messages: Sequence[Outgoing], button: str
) -> Delivery:
    """Send an invitation to rate case ``record_no`` (as :func:`send`), its first message with
    ``button``: the case's deep link (``t.me/<bot>?start=rec_<record_no>``, aiogram's
    ``create_start_link``), which opens the case again whenever it is tapped. A record number a
    link cannot carry (Telegram allows ``A-Za-z0-9_-``, 64 characters) goes without it: the
    citizen answers in the chat all the same."""
    try:
        link: str | None = await create_start_link(bot, f"{CASE_LINK}{record_no}")
    except ValueError:
        link = None
    except TelegramAPIError as exc:  # the bot's name (getMe) is needed for the link
        return refused("getMe", exc)
    if link is not None and messages:
        first, *rest = messages
        messages = [replace(first, link=(button, link)), *rest]
    return await send(bot, chat_id, messages)
