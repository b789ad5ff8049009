"""Conversation state in this process's memory: the default for one process, and for tests.

Behaves like the Redis store, TTLs, lock expiry and stale-owner rules included, so code tested
against it behaves the same in production. Values are kept as JSON text, as Redis keeps them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from storage.base import ConversationBusy, ConversationStore, StagedWrite

_K = TypeVar("_K")

SWEEP_INTERVAL = 60.0  # seconds between purges of expired entries nobody read again


@dataclass
class _ConversationLock:
    """An ``asyncio.Lock`` plus who holds it and until when (in event-loop time)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    owner: str | None = None  # token of the current holder
    expires_at: float = 0.0
    waiting: int = 0  # turns queued on ``lock``; the entry is dropped when idle


@dataclass
class _Events:
    """One key's event times (on the store's ``clock``), oldest first, and when it is forgotten."""

    times: deque[float] = field(default_factory=deque)
    expires_at: float = 0.0


class MemoryConversationStore(ConversationStore):
    """In-process store. ``clock`` (monotonic seconds) drives the session and delivery TTLs and
    the event windows, and can be replaced in tests; the lock's expiry uses the event loop's
    clock, because waiters really sleep."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clock = clock
        self._sessions: dict[str, tuple[str, float]] = {}  # key -> (json, expires_at)
        self._replies: dict[tuple[str, str], tuple[str, float]] = {}  # (key, delivery) -> ...
        self._locks: dict[str, _ConversationLock] = {}
        self._events: dict[str, _Events] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL
        self._since = time.time()  # a process's memory holds nothing from before it began

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """``memory://`` (nothing else to configure)."""
        if url.rstrip("/") != "memory:":
            raise ValueError("not a memory:// URL")
        return cls(**kwargs)

    async def _lock_and_load(
        self, key: str, delivery_id: str | None, token: str
    ) -> tuple[str | None, str | None]:
        await self._acquire(key, token)
        # No await between here and the return: nothing can slip in between lock and load.
        session = self._read(self._sessions, key)
        reply = None if delivery_id is None else self._read(self._replies, (key, delivery_id))
        return session, reply

    async def _acquire(self, key: str, token: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lock_timeout
        entry = self._locks.setdefault(key, _ConversationLock())
        entry.waiting += 1
        try:
            while True:
                now = loop.time()
                if entry.owner is not None and now >= entry.expires_at:
                    # The holder outlived its lease (stuck or abandoned, its turn never exited):
                    # take over as Redis would once the lock key expires. ``lock`` stays locked;
                    # ownership moves to our token, so the stale holder's release is ignored.
                    break
                if now >= deadline:
                    raise ConversationBusy(
                        f"conversation {key!r} still busy after {self.lock_timeout}s"
                    )
                # Wake at the deadline, or when the holder's lease runs out, whichever is first.
                wake_at = deadline if entry.owner is None else min(deadline, entry.expires_at)
                try:
                    async with asyncio.timeout(wake_at - now):
                        await entry.lock.acquire()
                except TimeoutError:
                    continue
                break
        finally:
            entry.waiting -= 1
            self._drop_if_idle(key, entry)
        entry.owner = token
        entry.expires_at = loop.time() + self.lock_expiry

    async def _write_and_unlock(
        self, key: str, delivery_id: str | None, token: str, staged: StagedWrite | None
    ) -> bool:
        entry = self._locks.get(key)
        if entry is None or entry.owner != token:
            return False  # our lease ran out and somebody else took (and maybe freed) the lock
        # Lease over but nobody took it yet: on Redis the lock key would already be gone, so
        # refuse the write here too; release either way.
        in_time = asyncio.get_running_loop().time() < entry.expires_at
        if staged is not None and in_time:
            now = self._clock()
            if staged.session_json is None:
                self._sessions.pop(key, None)
            else:
                assert staged.ttl is not None  # Turn.save insists on a ttl for a session
                self._sessions[key] = (staged.session_json, now + staged.ttl)
            if delivery_id is not None and staged.reply is not None:
                self._replies[(key, delivery_id)] = (staged.reply, now + self.delivery_ttl)
            self._sweep(now)
        entry.owner = None
        entry.lock.release()
        self._drop_if_idle(key, entry)
        return in_time

    async def _get(self, key: str) -> str | None:
        return self._read(self._sessions, key)

    async def _record_event(self, key: str, window: float) -> int:
        now = self._clock()
        events = self._events.get(key)
        if events is None or now >= events.expires_at:
            events = self._events[key] = _Events()
        while events.times and events.times[0] <= now - window:
            events.times.popleft()
        events.times.append(now)
        events.expires_at = now + window  # as Redis's PEXPIRE: the last call's window counts
        self._sweep(now)
        return len(events.times)

    async def _count_events(self, key: str, window: float) -> int:
        now = self._clock()
        events = self._events.get(key)
        if events is None:
            return 0
        if now >= events.expires_at:
            del self._events[key]
            return 0
        return sum(1 for at in events.times if at > now - window)

    async def _data_since(self) -> float:
        return self._since

    async def _ping(self) -> None:
        pass  # always reachable

    async def _close(self) -> None:
        self._sessions.clear()
        self._replies.clear()
        self._events.clear()

    def _read(self, table: dict[_K, tuple[str, float]], key: _K) -> str | None:
        item = table.get(key)
        if item is None:
            return None
        value, expires_at = item
        if self._clock() >= expires_at:
            del table[key]
            return None
        return value

    def _sweep(self, now: float) -> None:
        # Expired entries are dropped when read; this catches the conversations (and event keys)
        # nobody comes back to, so memory follows the live ones, not every citizen ever seen.
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        _drop_expired(self._sessions, now)
        _drop_expired(self._replies, now)
        for key in [key for key, events in self._events.items() if now >= events.expires_at]:
            del self._events[key]

    def _drop_if_idle(self, key: str, entry: _ConversationLock) -> None:
        # One lock per conversation ever seen would grow without bound; keep only busy ones.
        if not entry.lock.locked() and entry.waiting == 0 and self._locks.get(key) is entry:
            del self._locks[key]


def _drop_expired(table: dict[_K, tuple[str, float]], now: float) -> None:
    for key in [key for key, (_, expires_at) in table.items() if now >= expires_at]:
        del table[key]
