"""What every provider's router shares: the reply to a turn, or the channel's busy reply."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bot.conversation.turn import Reply
from storage.base import ConversationBusy

log = logging.getLogger("ratebot.webhooks")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Busy(Reply):
    """The channel's busy reply, in place of the turn's: nothing was written or remembered, so
    the citizen's resend is handled as new."""


async def reply_or_busy(
    turn: Awaitable[T], busy_reply: Callable[[], str], channel: str
) -> T | Busy:
    """What ``turn`` returns; when its conversation stayed locked past the wait (a stuck turn),
    ``busy_reply()`` — the channel's ``busy_reply`` — which asks the citizen to send it again."""
    try:
        return await turn
    except ConversationBusy:
        log.warning("%s: conversation busy; asked the citizen to send it again", channel)
        return Busy(busy_reply())
