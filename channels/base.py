"""What every channel adapter offers the application: a way to send a text on ratebot's own
initiative (invitations, reminders). Inbound parsing and rendering live in each adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
