"""Conversation state in Redis, shared by every worker.

Each conversation has three keys, all under one hash tag so the Lua scripts also run on Redis
Cluster (a script may only touch keys of one slot)::

    <prefix>{<key>}:lock                  random token of the turn holding it, PX lock_expiry
    <prefix>{<key>}:session               the session as JSON, PX the ttl given to Turn.save
    <prefix>{<key>}:delivery:<delivery>   the reply sent for that delivery, PX delivery_ttl

A turn costs two round trips: lock + loads in one script, writes + unlock in another. Those two
go through the lean pipelined client of ``storage/resp.py`` (for ``redis://`` and ``unix://``
URLs; ``rediss://`` keeps them on redis-py); everything else, off the hot path, uses redis-py.

Events counted with ``record_event`` are one sorted set per key (a random member per event,
scored with its time in ms), PX the window, so a quiet key disappears on its own::

    <prefix>events:<key>

``<prefix>data-since`` says since when this Redis has held ratebot's data (``data_since``).
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
from typing import Any, Self

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from storage import resp
from storage.base import ConversationBusy, ConversationStore, StagedWrite

DEFAULT_PREFIX = "ratebot:"
# A turn's scripts answer in well under a millisecond; a Redis that has not answered in a second
# is down or cut off. One quick retry re-makes a connection a restart dropped; a turn then learns
# that Redis is away within about 2 s — inside WeChat's 5 s (its reply budget is 4 s) and
# Twilio's 15 s — so the webhook answers 503 and the provider retries, rather than the provider
# giving up on a hanging request. No health-check PING before commands: its own retries would
# multiply the wait, and a dead pooled connection is retried anyway.
SOCKET_TIMEOUT = 1.0  # seconds, to connect and for each answer
CLIENT_BACKOFF = ExponentialWithJitterBackoff(base=0.05, cap=0.2)
CLIENT_RETRY = Retry(CLIENT_BACKOFF, retries=1)  # redis-py's; the lean client retries alike
RETRY_FIRST_DELAY = 0.005  # seconds; doubled after each miss...
RETRY_MAX_DELAY = 0.05  # ...up to this, so a waiter notices a freed lock quickly

# KEYS: lock, session[, delivery]   ARGV: token, lock expiry (ms)
# Returns {0} when somebody else holds the lock, else {1, session or false, reply or false}.
# The token's own lock counts as taken: the client retries a script whose answer a dropped
# connection lost (CLIENT_RETRY), and that retry must not wait for the lock it already holds.
LOCK_AND_LOAD = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    if redis.call('GET', KEYS[1]) ~= ARGV[1] then
        return {0}
    end
end
local reply = false
if KEYS[3] then
    reply = redis.call('GET', KEYS[3])
end
return {1, redis.call('GET', KEYS[2]), reply}
"""

# KEYS: lock, session[, delivery]
# ARGV: token, write ('0' or '1'), session JSON ('' deletes), session ttl (ms),
#       remember reply ('0' or '1'), reply, delivery ttl (ms)
# Writes only while the token still owns the lock: a turn that outlived its lock must not
# overwrite (or unlock) the work of the turn that took over. Returns 1 if it owned the lock.
WRITE_AND_UNLOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
if ARGV[2] == '1' then
    if ARGV[3] == '' then
        redis.call('DEL', KEYS[2])
    else
        redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
    end
    if KEYS[3] and ARGV[5] == '1' then
        redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7])
    end
end
redis.call('DEL', KEYS[1])
return 1
"""


# KEYS: events   ARGV: window (ms), a unique member for this event
# Times are the Redis server's (TIME), not the workers': all of them count on one clock. (TIME
# before writes needs Redis >= 5, which replicates a script's effects rather than the script.)
# Returns the count of events in the window, this one included.
RECORD_EVENT = """
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: events   ARGV: window (ms). Counts on the server's clock too; changes nothing.
COUNT_EVENTS = """
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
return redis.call('ZCOUNT', KEYS[1], string.format('(%d', now - ARGV[1]), '+inf')
"""


# KEYS: data-since. When this Redis began holding ratebot's data: set, on the server's clock, by
# the first caller after a restart without persistence or a flush (the key goes with the data).
DATA_SINCE = """
local since = redis.call('GET', KEYS[1])
if not since then
    since = redis.call('TIME')[1]
    redis.call('SET', KEYS[1], since)
end
return since
"""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: bytes | str) -> str:
    # The client may or may not have been made with decode_responses=True.
    return value.decode() if isinstance(value, bytes) else value


class RedisConversationStore(ConversationStore):
    """Store on a ``redis.asyncio.Redis`` client and, for the turn's two scripts, a lean
    ``turns`` client to the same server (without one, the scripts go through ``redis`` too);
    ``close()`` closes both.

    ``prefix`` namespaces every key (tests use their own per test).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        turns: resp.RespClient | None = None,
        prefix: str = DEFAULT_PREFIX,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.redis = redis
        self.turns = turns
        self.prefix = prefix
        scripts = redis if turns is None else turns
        self._lock_and_load_script = scripts.register_script(LOCK_AND_LOAD)
        self._write_and_unlock_script = scripts.register_script(WRITE_AND_UNLOCK)
        self._record_event_script = redis.register_script(RECORD_EVENT)
        self._count_events_script = redis.register_script(COUNT_EVENTS)
        self._data_since_script = redis.register_script(DATA_SINCE)

    @classmethod
    def from_url(
        cls, url: str, *, connection_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> Self:
        """``redis://[:password@]host[:port][/db]`` (or ``rediss://``, ``unix://``).

        ``connection_kwargs`` go to ``Redis.from_url`` (the two ``socket_*timeout`` to the lean
        client too); the rest to the constructor. The lean client serves ``redis://`` and
        ``unix://`` URLs without options but the timeouts (``resp.serves``); for any other the
        turn's scripts stay on redis-py, with its TLS and options.
        """
        options = {
            "socket_connect_timeout": SOCKET_TIMEOUT,
            "socket_timeout": SOCKET_TIMEOUT,
            "retry": CLIENT_RETRY,
            **(connection_kwargs or {}),
        }
        turns = None
        if resp.serves(url):
            turns = resp.RespClient.from_url(
                url,
                connect_timeout=options["socket_connect_timeout"],
                timeout=options["socket_timeout"],
                retries=CLIENT_RETRY.get_retries(),
                backoff=CLIENT_BACKOFF,
            )
        return cls(Redis.from_url(url, **options), turns=turns, **kwargs)

    def _keys(self, key: str, delivery_id: str | None) -> list[str]:
        base = f"{self.prefix}{{{key}}}:"
        keys = [base + "lock", base + "session"]
        if delivery_id is not None:
            keys.append(f"{base}delivery:{delivery_id}")
        return keys

    async def _lock_and_load(
        self, key: str, delivery_id: str | None, token: str
    ) -> tuple[str | None, str | None]:
        keys = self._keys(key, delivery_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lock_timeout
        delay = RETRY_FIRST_DELAY
        while True:
            result = await self._lock_and_load_script(
                keys=keys, args=[token, _ms(self.lock_expiry)]
            )
            if result[0]:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ConversationBusy(
                    f"conversation {key!r} still busy after {self.lock_timeout}s"
                )
            # Jitter keeps a crowd of waiters from polling in step.
            await asyncio.sleep(min(remaining, delay * random.uniform(0.5, 1.5)))
            delay = min(delay * 2, RETRY_MAX_DELAY)
        _, session, reply = result
        try:
            return (
                None if session is None else _text(session),
                None if reply is None else _text(reply),
            )
        except BaseException:
            # Unreadable data: don't leave the conversation locked until the lock expires.
            await self._write_and_unlock(key, delivery_id, token, None)
            raise

    async def _write_and_unlock(
        self, key: str, delivery_id: str | None, token: str, staged: StagedWrite | None
    ) -> bool:
        if staged is None:
            args: list[str | int] = [token, "0"]
        else:
            args = [
                token,
                "1",
                staged.session_json or "",  # JSON is never empty, so '' can mean delete
                _ms(staged.ttl) if staged.ttl is not None else 0,
                "0" if staged.reply is None else "1",
                staged.reply or "",
                _ms(self.delivery_ttl),
            ]
        owned = await self._write_and_unlock_script(keys=self._keys(key, delivery_id), args=args)
        return bool(owned)

    async def _get(self, key: str) -> str | None:
        session = await self.redis.get(self._keys(key, None)[1])
        return None if session is None else _text(session)

    def _events_key(self, key: str) -> str:
        return f"{self.prefix}events:{key}"

    async def _record_event(self, key: str, window: float) -> int:
        count = await self._record_event_script(
            keys=[self._events_key(key)], args=[_ms(window), secrets.token_hex(8)]
        )
        return int(count)

    async def _count_events(self, key: str, window: float) -> int:
        count = await self._count_events_script(keys=[self._events_key(key)], args=[_ms(window)])
        return int(count)

    async def _data_since(self) -> float:
        return float(await self._data_since_script(keys=[f"{self.prefix}data-since"]))

    async def _ping(self) -> None:
        await self.redis.ping()

    async def _close(self) -> None:
        await self.redis.aclose()
        if self.turns is not None:
            await self.turns.close()
