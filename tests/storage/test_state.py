"""Choosing the conversation store from RATEBOT_REDIS_URL."""

from __future__ import annotations

import pytest

from storage.memory import MemoryConversationStore
from storage.redis import RedisConversationStore
from storage.state import conversation_store_from_url


@pytest.mark.parametrize("url", [None, "", "memory://"])
async def test_no_url_or_memory_url_gives_the_memory_store(url: str | None) -> None:
    store = conversation_store_from_url(url, lock_timeout=3)
    assert isinstance(store, MemoryConversationStore)
    assert store.lock_timeout == 3
    await store.close()


async def test_redis_url_gives_the_redis_store() -> None:
    # Building it doesn't connect, so this needs no server.
    store = conversation_store_from_url("redis://127.0.0.1:6379/15", prefix="x:")
    assert isinstance(store, RedisConversationStore)
    assert store.prefix == "x:"
    await store.close()


def test_unknown_scheme_is_refused_without_echoing_the_url() -> None:
    with pytest.raises(ValueError, match="'postgresql'") as caught:
        conversation_store_from_url("postgresql://ratebot:s3cret@db/ratebot")
    assert "s3cret" not in str(caught.value)
