"""The console outbox: where outbound messages go when no provider is configured."""

from __future__ import annotations

import logging

from channels.base import Delivery
from storage.privacy import mask

log = logging.getLogger("ratebot.outbox")


class ConsoleSender:
    """Prints each message (recipient masked) instead of sending it, so a pilot without a provider
    account still sees its invitations."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def send_text(self, to: str, body: str) -> Delivery:
        print(f"[outbox {self.channel}] to {mask(to)}:\n{body}\n", flush=True)
        log.info("console outbox: %s message to %s", self.channel, mask(to))
        return Delivery(provider="console", provider_id=None, status="sent (console)")

    def place_call(self, to: str, *, answer_url: str, status_url: str) -> Delivery:
        print(f"[outbox {self.channel}] call {mask(to)}: {answer_url}\n", flush=True)
        log.info("console outbox: a call to %s not placed", mask(to))
        return Delivery(provider="console", provider_id=None, status="not placed")

    def close(self) -> None:
        pass
