"""Pick the conversation store from configuration (``RATEBOT_REDIS_URL``)."""

from __future__ import annotations

from typing import Any

from storage.base import ConversationStore


def conversation_store_from_url(url: str | None, **kwargs: Any) -> ConversationStore:
    """``None``, ``""`` or ``memory://`` → in-process store (one process only);
    ``redis://``, ``rediss://`` or ``unix://`` → Redis store shared by all workers.

    ``kwargs`` go to the store (``lock_timeout``, ``prefix``…).
    """
    if not url or url.startswith("memory:"):
        from storage.memory import MemoryConversationStore

        return MemoryConversationStore.from_url(url or "memory://", **kwargs)
    if url.startswith(("redis://", "rediss://", "unix://")):
        # Imported here so a memory-only deployment never needs the redis package loaded.
        from storage.redis import RedisConversationStore

        return RedisConversationStore.from_url(url, **kwargs)
    scheme = url.split(":", 1)[0]
    raise ValueError(f"no conversation store for {scheme!r} URLs; use memory:// or redis://")
