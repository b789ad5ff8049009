"""What every channel adapter offers the application: a way to send a text on ratebot's own
initiative (invitations, reminders). Inbound parsing and rendering live in each adapter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dialogs.events import Event, Prompt, Say, VoucherIssued


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


def chat_messages(events: Sequence[Event]) -> list[list[Say] | Prompt | VoucherIssued]:
    """The engine's events as chat messages: the statements before a question together in one,
    each question a message of its own (where it can carry buttons or a menu), and a voucher a
    message of its own (where it can carry its QR code)."""
    messages: list[list[Say] | Prompt | VoucherIssued] = []
    said: list[Say] = []
    for event in events:
        if isinstance(event, Say):
            said.append(event)
        elif isinstance(event, Prompt | VoucherIssued):
            if said:
                messages.append(said)
                said = []
            messages.append(event)
    if said:
        messages.append(said)
    return messages
