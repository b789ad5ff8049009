"""What goes into the engine and what comes out of it.

The engine never talks to a channel or a database: a channel adapter turns a webhook into an
:class:`InboundEvent`; the engine answers with a :class:`Sprint` — the new session and a list of
events — and the application carries the events out (persist, reply, send).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from dialogs.session import Session


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One thing a citizen did, in a channel-independent form.

    ``text`` is what they typed or said (speech already transcribed); ``button`` is the value of
    a tapped button or pressed key when the channel has them; ``recording`` is the URL of a voice
    recording that answers a free-text question (the phone channel), ``text`` then being its
    transcript if there is one. ``delivery_id`` is the provider's idempotency key (Twilio
    ``MessageSid``, WeChat ``MsgId``, Telegram ``update_id``, a call's sid and turn);
    ``call_sid`` the phone call the event came in on; ``reply_to`` the citizen's address in a chat
    app (a Telegram chat id, a WeChat openid), already encrypted, for what is told them later.
    Both are the channel's marks: :meth:`mark` keeps them on the conversation's session.
    """

    channel: str
    sender: str  # the channel's id for the citizen, already hashed: never a clear phone number
    text: str = ""
    button: str | None = None
    delivery_id: str | None = None
    locale: str | None = None
    recording: str | None = None
    call_sid: str | None = None
    reply_to: str | None = None

    def mark(self, session: Session) -> Session:
        """``session`` with the channel's marks of this event on it, for the application: the
        phone call the conversation goes on in (so the end of an earlier call, reported late,
        leaves it alone), and the chat's address (the first one kept: every message's is the same
        chat, encrypted anew)."""
        changes: dict[str, str] = {}
        if self.call_sid is not None and self.call_sid != session.call_sid:
            changes["call_sid"] = self.call_sid
        if self.reply_to is not None and session.reply_to is None:
            changes["reply_to"] = self.reply_to
        return session.model_copy(update=changes) if changes else session


@dataclass(frozen=True, slots=True)
class Prompt:
    """Ask the current question. ``hint`` is set when re-asking after an unusable answer."""

    step_id: str
    message: str  # catalog message id
    kind: Literal["level", "choice", "text", "yes_no"]
    options: tuple[tuple[str, str], ...] = ()  # (value, catalog message id of its label)
    params: dict[str, Any] = field(default_factory=dict)
    optional: bool = False
    multiple: bool = False  # a choice that takes several options at once ("13")
    hint: str | None = None  # catalog message id of the hint


@dataclass(frozen=True, slots=True)
class Say:
    """A statement that asks nothing: thanks, help, goodbye."""

    message: str  # catalog message id
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answered:
    """The citizen answered ``step_id``; ``value`` is the parsed answer as stored in the session."""

    step_id: str
    field: str
    value: Any


@dataclass(frozen=True, slots=True)
class RatingClosed:
    """The conversation ``session`` is over. ``outcome`` says what its answers amount to:

    ``complete``: every required step answered; ``incomplete``: an overall level but not every
    step (retries exhausted, expired, stopped); ``discarded``: no overall level, or answers the
    citizen withdrew (restart), so no rating.

    ``session`` is the conversation as it closed, whatever the engine keeps afterwards: the
    sprint's own session when it stays (closed, for "already rated"), else the one it forgot
    (a STOP, a discarded end) or replaced (a restart opens a new one). Its answers are the
    rating to keep; its id names the rating in progress to finish or withdraw.
    """

    outcome: Literal["complete", "incomplete", "discarded"]
    reason: Literal[
        "finished", "retries_exhausted", "expired", "opted_out", "restarted", "replaced", "hung_up"
    ]
    session: Session


@dataclass(frozen=True, slots=True)
class OptedOut:
    """The citizen asked for no more invitations (STOP / TD / 退订)."""


@dataclass(frozen=True, slots=True)
class OptedIn:
    """The citizen asked to receive invitations again (START)."""


@dataclass(frozen=True, slots=True)
class VoucherIssued:
    """The rating earned free parking. Not the engine's: the application adds it when the rating
    it closes is valid, and each channel tells it in its own form (a QR image too).

    ``code`` is for reading and typing (``ABCD-EFGH-JKM``); ``expires_at`` is in the hall's time
    zone; ``url`` is the voucher's page.
    """

    code: str
    hall: str
    free_minutes: int
    expires_at: datetime
    url: str

    @property
    def scan_data(self) -> str:
        """What the voucher's QR code holds: the compact code, as the gate's API takes it."""
        return self.code.replace("-", "")


Event = Prompt | Say | Answered | RatingClosed | OptedOut | OptedIn | VoucherIssued


@dataclass(frozen=True, slots=True)
class Sprint:
    """The engine's answer to one input: the session to keep (``None``: forget it) and events."""

    session: Session | None
    events: list[Event]
