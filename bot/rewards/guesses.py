"""Who keeps trying voucher codes that do not exist: counted across workers, slowed down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request

from bot.runtime import Runtime
from storage.base import ConversationStore
from storage.privacy import Privacy

log = logging.getLogger("ratebot.parking")


@dataclass
class _Queue:
    """A slowed client's requests in this process, waiting their turn."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # requests holding or waiting for ``lock``; dropped at 0


@dataclass
class Guesses:
    """Who keeps trying codes that do not exist, and how long to make them wait.

    The misses are counted in the state store (``record_event``), so with Redis every worker
    sees every miss: the first ``free`` misses in ``window`` seconds cost nothing, each further
    one doubles the delay up to ``max_delay``. A slowed client's requests wait one at a time, so
    parallel requests do not share one delay; that queue is per process (an ``asyncio.Lock`` per
    client), so with N workers up to N of its requests wait at once. Clients are counted under a
    keyed hash: no address is kept in clear.
    """

    store: ConversationStore
    privacy: Privacy
    free: int = 5
    window: float = 600.0
    base_delay: float = 0.25
    max_delay: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests record the delays instead
    queues: dict[str, _Queue] = field(default_factory=dict)

    def _key(self, who: str) -> str:
        return f"guess:{self.privacy.contact_hash(f'guess:{who}')}"

    async def _count(self, who: str, *, miss: bool) -> int:
        """``who``'s misses in the window (this one added, for a ``miss``). A store that does
        not answer counts none: the gates go on letting cars out on the database alone."""
        key = self._key(who)
        try:
            if miss:
                return await self.store.record_event(key, self.window)
            return await self.store.count_events(key, self.window)
        except Exception as error:  # whatever the backend raises when it is down
            log.warning("guess counter unavailable (%s); not slowed", type(error).__name__)
            return 0

    async def delay(self, who: str) -> float:
        """How long ``who``'s next request waits (0 within its free misses)."""
        misses = await self._count(who, miss=False)
        if misses < self.free:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (misses - self.free)))

    async def wait(self, who: str) -> None:
        """Wait ``who``'s delay, after its earlier requests in this process have waited theirs."""
        if await self.delay(who) == 0:
            return
        queue = self.queues.setdefault(who, _Queue())
        queue.users += 1
        try:
            async with queue.lock:
                delay = await self.delay(who)  # again: the count may have moved meanwhile
                if delay:
                    await self.sleep(delay)
        finally:
            queue.users -= 1
            if queue.users == 0 and self.queues.get(who) is queue:
                del self.queues[who]

    async def missed(self, who: str, name: str, typed: str) -> None:
        """Count a miss of ``who``; from the ``free``-th on, log it by ``name`` (never ``typed``,
        the code tried: only its first three symbols)."""
        misses = await self._count(who, miss=True)
        if misses >= self.free:
            log.warning(
                "%s tried a voucher code that does not exist (%s…): %d misses in %d minutes, "
                "now slowed down",
                name,
                typed[:3],
                misses,
                self.window // 60,
            )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """This app's guess counters (the gate's API and the voucher page share them), in the
    runtime's store (the runtime exists: FastAPI runs an included router's lifespan inside the
    app's)."""
    rt: Runtime = app.state.runtime
    app.state.guesses = Guesses(rt.store, rt.privacy)
    yield


def get_guesses(request: Request) -> Guesses:
    guesses: Guesses = request.app.state.guesses
    return guesses
