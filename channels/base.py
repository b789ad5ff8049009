"""The channel contract: what each provider's module in ``channels/`` offers the application.

``sms`` and ``voice`` (both on Twilio), ``telegram`` and ``wechat`` each offer, under the same
names:

``CHANNEL``, ``PROVIDER``
    The conversation's channel (part of the conversation key, and the rating's channel) and the
    service that carries it (``twilio``, ``telegram``, ``wechat``).
``parse…(what the provider sent)``
    The provider's request as what the citizen did. What the provider never sends is refused
    with :class:`BadRequest`, whose reason is safe to show the caller.
``inbound_event(contact hash, …) -> InboundEvent``
    What the citizen did as the engine's input. The contact arrives already hashed: a channel
    never decides how personal data is kept.
``render_reply(events, locale, …) -> str``
    The engine's events in the provider's form (TwiML, a WeChat passive reply and its
    customer-service messages, Telegram messages), as the one string the conversation glue
    remembers with the delivery, so that a re-delivery is answered the same.
``busy_reply(locale, …) -> str``
    :data:`BUSY` in the same form: the answer when the conversation stays locked past the wait.
a sender
    What ratebot sends on its own initiative (invitations, vouchers, callbacks), through the
    provider's client library: :class:`Sender` and :class:`Caller` (``twilio.TwilioSender``,
    ``wechat.WeChatSender``, ``console.ConsoleSender`` where no provider is configured), and
    ``telegram.send`` on aiogram's bot.

What comes after ``locale`` is the provider's own: a call's answer URL and voice, say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from channels.voucher import voucher_text
from dialogs.events import Event, Prompt, Say, VoucherIssued
from locales import gettext, ids

# What every channel says when the conversation stayed locked past the wait (a stuck turn):
# nothing was written or remembered, so the citizen's resend is handled as new.
BUSY: Final = (Say(ids.ERROR_BUSY),)

NUL = "\x00"


class BadRequest(ValueError):
    """A request the provider would never send; the reason is safe to show the caller."""


def checked_text(name: str, value: str, *, limit: int | None = None) -> str:
    """``value``, refused when it holds a NUL character: no database text column can keep one,
    and a citizen's words are refused rather than altered. With ``limit``, refused too when it is
    longer than that many characters."""
    if limit is None:
        if NUL in value:
            raise BadRequest(f"{name} contains a NUL character")
    elif NUL in value or len(value) > limit:
        raise BadRequest(f"{name} has a NUL character or is longer than {limit} characters")
    return value


# --- sending -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the provider said when it accepted (or refused) an outbound message."""

    provider: str  # twilio | console
    provider_id: str | None
    status: str  # the provider's status (queued, sent, …), "sent (console)", or "failed"
    error: str | None = None


class Sender(Protocol):
    """Sends one text to one contact (a phone number, an openid, a chat id) in clear."""

    def send_text(self, to: str, body: str) -> Delivery: ...

    def close(self) -> None:
        """Release connections (the app is shutting down)."""


class Caller(Protocol):
    """Places one call to a phone number in clear; Twilio fetches what to say from
    ``answer_url`` and reports on the call to ``status_url``."""

    def place_call(self, to: str, *, answer_url: str, status_url: str) -> Delivery: ...


# --- chat apps ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat app's reply, its sentences translated; the app adds what is its own
    (buttons or a menu to answer ``prompt`` with, ``voucher``'s QR code) and joins the lines."""

    lines: list[str]
    prompt: Prompt | None = None
    voucher: VoucherIssued | None = None


def chat_messages(events: Sequence[Event], locale: str) -> list[ChatMessage]:
    """The engine's events as chat messages: the statements before a question together in one (a
    line each), each question a message of its own (its hint, if any, then the question), and a
    voucher a message of its own (its text)."""
    messages: list[ChatMessage] = []
    said: list[str] = []
    for event in events:
        if isinstance(event, Say):
            said.append(gettext(locale, event.message, **event.params))
            continue
        if isinstance(event, Prompt):
            message = ChatMessage(_question(event, locale), prompt=event)
        elif isinstance(event, VoucherIssued):
            message = ChatMessage([voucher_text(event, locale)], voucher=event)
        else:
            continue
        if said:
            messages.append(ChatMessage(said))
            said = []
        messages.append(message)
    if said:
        messages.append(ChatMessage(said))
    return messages


def _question(prompt: Prompt, locale: str) -> list[str]:
    lines = [gettext(locale, prompt.hint)] if prompt.hint else []
    lines.append(gettext(locale, prompt.message, **prompt.params))
    return lines
