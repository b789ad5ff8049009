"""Who keeps trying voucher codes that do not exist: counted across workers, slowed down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request

from bot.runtime import Runtime
from storage.base import ConversationBusy, ConversationStore
from storage.privacy import Privacy

log = logging.getLogger("ratebot.parking")


class TooManyGuesses(Exception):
    """The client's earlier requests still hold its turn: refused (429) without a look-up."""


@dataclass
class Guess:
    """One request's look-up, inside its client's turn."""

    guesses: Guesses
    who: str

    async def missed(self, name: str, typed: str) -> None:
        """The code looked up does not exist: count a miss of the client; from the ``free``-th
        on, log it by ``name`` (never ``typed``, the code tried: only its first three symbols)."""
        misses = await self.guesses.count(self.who, miss=True)
        if misses >= self.guesses.free:
            log.warning(
                "%s tried a voucher code that does not exist (%s…): %d misses in %d minutes, "
                "now slowed down",
                name,
                typed[:3],
                misses,
                self.guesses.window // 60,
            )


@dataclass
class Guesses:
    """Who keeps trying codes that do not exist, and how long to make them wait.

    The misses are counted in the state store (``record_event``), so with Redis every worker
    sees every miss: the first ``free`` misses in ``window`` seconds cost nothing, each further
    one doubles the delay up to ``max_delay``. A client's requests take turns under the state
    store's lock (:meth:`ConversationStore.turn`, across workers with Redis), each waiting its
    delay and doing its look-up before the next one reads the count: parallel requests, to one
    worker or to many, neither share a delay nor slip in before a miss is counted, so N workers
    give a guesser no more tries than one. A request that cannot have the turn within the
    store's ``lock_timeout`` is refused (:class:`TooManyGuesses`). Clients are counted under a
    keyed hash: no address is kept in clear.
    """

    store: ConversationStore
    privacy: Privacy
    free: int = 5
    window: float = 600.0
    base_delay: float = 0.25
    max_delay: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests record the delays instead

    def _key(self, who: str) -> str:
        return f"guess:{self.privacy.contact_hash(f'guess:{who}')}"

    async def count(self, who: str, *, miss: bool) -> int:
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
        misses = await self.count(who, miss=False)
        if misses < self.free:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (misses - self.free)))

    @asynccontextmanager
    async def turn(self, who: str) -> AsyncIterator[Guess]:
        """``who``'s turn for one look-up: after its earlier requests (on any worker), and its
        delay. Raises :class:`TooManyGuesses` when the turn does not come in time."""
        async with AsyncExitStack() as held:
            try:
                await held.enter_async_context(self.store.turn(f"{self._key(who)}:turn"))
            except ConversationBusy:
                raise TooManyGuesses(who) from None
            except Exception as error:  # the store is down: the gates go on, unslowed
                log.warning("guess turns unavailable (%s); not slowed", type(error).__name__)
            else:
                delay = await self.delay(who)
                if delay:
                    await self.sleep(delay)
            yield Guess(self, who)


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
