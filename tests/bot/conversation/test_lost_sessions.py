"""A message with no session asks the records whether the state store lost its conversation
only while the store is younger than a conversation's life: a store that has kept its data
longer lost none, and a new conversation then costs no look-up."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.conversation import turn
from tests.bot.conftest import Harness


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The conversation keys looked up in the records (the look-up itself still runs)."""
    seen: list[str] = []
    real = turn.lost_session

    def spy(db: Any, rt: Any, key: str, *args: Any) -> Any:
        seen.append(key)
        return real(db, rt, key, *args)

    monkeypatch.setattr(turn, "lost_session", spy)
    return seen


def store_began(harness: Harness, monkeypatch: pytest.MonkeyPatch, at: float) -> None:
    async def since() -> float:
        return at

    monkeypatch.setattr(harness.rt.store, "data_since", since)


async def test_a_store_that_kept_its_data_is_not_second_guessed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, lookups: list[str]
) -> None:
    # The harness's clock stands in 2026; a store that began long before then lost nothing.
    store_began(harness, monkeypatch, 0.0)
    reply = await harness.reply_text("5")
    assert reply and lookups == []


async def test_a_young_store_asks_the_records(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, lookups: list[str]
) -> None:
    store_began(harness, monkeypatch, time.time())
    reply = await harness.reply_text("5")
    assert reply and len(lookups) == 1
    await harness.reply_text("4 5 5")  # the session exists now: no second look-up
    assert len(lookups) == 1
