"""Where a conversation's state lives between two messages: a small interface, sibling backends.

``memory.py`` (one process) and ``redis.py`` (many workers) implement the same contract, which
``tests/storage/test_conversation_store.py`` runs against both. The contract:

* one *turn* per incoming message: lock the conversation, load, let the caller work, then write
  and unlock together;
* a session is stored as JSON text and handed over as such (``Turn.session_json``,
  ``Turn.save_json``, ``get_json``), so a caller with its own model parses and serialises it in
  one pass; ``Turn.session``, ``Turn.save`` and ``get`` do the same with plain dicts;
* the lock is taken **before** the session is loaded, so two messages from one citizen can't both
  start from the same state and lose one update (aiogram had exactly this bug:
  https://github.com/aiogram/aiogram/issues/1317, fixed in ``aiogram/fsm/middleware.py``);
* each delivery (a provider's message id) remembers the reply it got, so a provider's retry of a
  message we already handled gets the same reply instead of advancing the dialog twice;
* the lock expires on its own and carries a random token, so a crashed or stuck worker can't
  wedge a conversation for ever, and a worker that outlived its lock can't release or overwrite
  the work of whoever took over.

Besides conversations, a store counts *events* per key in a sliding window (``record_event``),
so a limit such as the parking API's guess counter holds across all workers.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self, cast

logger = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 10.0  # seconds a turn waits for the lock before giving up
DEFAULT_LOCK_EXPIRY = 30.0  # seconds after which a lock nobody released is free again
DEFAULT_DELIVERY_TTL = 48 * 3600.0  # providers retry for hours (Twilio, WeChat): keep 2 days


class ConversationBusy(Exception):
    """The conversation's lock could not be had within ``lock_timeout`` seconds."""


class ConversationLockLost(ConversationBusy):
    """The turn outlived its lock (``lock_expiry``), so its staged write was thrown away.

    Another worker may have taken the conversation over meanwhile; writing now would overwrite
    its work. Raised on leaving the ``turn`` block, only when ``Turn.save`` was called.
    """


@dataclass(frozen=True, slots=True)
class StagedWrite:
    """What ``Turn.save`` asked for, already serialised (so bad data fails inside the block)."""

    session_json: str | None  # None: delete the session
    ttl: float | None
    reply: str | None


@dataclass
class Turn:
    """One message's view of a conversation, handed out by ``ConversationStore.turn``."""

    session_json: str | None
    """The stored session as its JSON text (an object), or None for a new or expired
    conversation."""
    previous_reply: str | None = None
    """The reply remembered for this turn's delivery id: not None means the delivery was already
    handled (a provider retry) and this reply should be sent again, without running the dialog."""
    staged: StagedWrite | None = field(default=None, init=False, repr=False)

    @property
    def session(self) -> dict[str, Any] | None:
        """The stored session as a dict, parsed afresh on each access."""
        if self.session_json is None:
            return None
        return cast(dict[str, Any], json.loads(self.session_json))

    def save(
        self, session: dict[str, Any] | None, *, ttl: float | None = None, reply: str | None = None
    ) -> None:
        """Stage the new session (None deletes it), written when the ``turn`` block exits cleanly.

        ``ttl`` (seconds) is required for a session: every conversation must end on its own.
        ``reply`` is remembered under the turn's delivery id (ignored without one); pass ``""`` to
        mark a delivery handled that needed no reply. A later call replaces an earlier one.
        """
        session_json = None
        if session is not None:
            if not isinstance(session, dict):
                raise TypeError(f"session must be a dict or None, not {type(session).__name__}")
            if ttl is None or ttl <= 0:
                raise ValueError("a session needs a positive ttl (seconds)")
            # Serialised now: a non-JSON value fails inside the block (so nothing is written) and
            # later changes to the caller's dict don't leak into what is stored.
            session_json = json.dumps(session, ensure_ascii=False, allow_nan=False)
        self.save_json(session_json, ttl=ttl, reply=reply)

    def save_json(
        self, session_json: str | None, *, ttl: float | None = None, reply: str | None = None
    ) -> None:
        """As :meth:`save`, the session given as its JSON text (an object), stored verbatim."""
        if session_json is not None:
            if not isinstance(session_json, str) or not session_json:
                raise TypeError("session_json must be non-empty JSON text or None")
            if ttl is None or ttl <= 0:
                raise ValueError("a session needs a positive ttl (seconds)")
        self.staged = StagedWrite(session_json=session_json, ttl=ttl, reply=reply)


class ConversationStore(ABC):
    """Conversation state keyed by caller-chosen strings (e.g. ``sms:<hash>``).

    ``lock_timeout``: seconds ``turn`` waits for a busy conversation before ``ConversationBusy``.
    ``lock_expiry``: seconds after which an unreleased lock is free again (crashed worker).
    ``delivery_ttl``: seconds a delivery's reply is remembered.
    """

    def __init__(
        self,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        lock_expiry: float = DEFAULT_LOCK_EXPIRY,
        delivery_ttl: float = DEFAULT_DELIVERY_TTL,
    ) -> None:
        for name, value in (
            ("lock_timeout", lock_timeout),
            ("lock_expiry", lock_expiry),
            ("delivery_ttl", delivery_ttl),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self.lock_timeout = lock_timeout
        self.lock_expiry = lock_expiry
        self.delivery_ttl = delivery_ttl
        self._closed = False

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """Build a store from a URL (``memory://``, ``redis://…``); kwargs go to the constructor."""

    def turn(self, key: str, delivery_id: str | None = None) -> AbstractAsyncContextManager[Turn]:
        """Handle one message of conversation ``key``::

            async with store.turn("sms:ab12", delivery_id="sms:SM123") as turn:
                if turn.previous_reply is not None:
                    return turn.previous_reply  # a retry: answer the same, change nothing
                ...
                turn.save(new_session, ttl=3600, reply=text)

        Takes the conversation's lock first (waiting up to ``lock_timeout``, then
        ``ConversationBusy``), then loads the session and, given ``delivery_id``, the reply
        remembered for it. On a clean exit whatever ``Turn.save`` staged is written together with
        the lock's release; if the block raises, nothing is written and the lock is released.
        """
        self._check_open()
        if not key:
            raise ValueError("key must be a non-empty string")
        return self._turn(key, delivery_id)

    @asynccontextmanager
    async def _turn(self, key: str, delivery_id: str | None) -> AsyncIterator[Turn]:
        token = secrets.token_hex(16)
        session_json, previous_reply = await self._lock_and_load(key, delivery_id, token)
        turn = Turn(session_json=session_json, previous_reply=previous_reply)
        try:
            yield turn
        except BaseException:
            if not await self._write_and_unlock(key, delivery_id, token, None):
                logger.warning("conversation %r: a failed turn had already lost its lock", key)
            raise
        released = await self._write_and_unlock(key, delivery_id, token, turn.staged)
        if not released:
            message = (
                f"conversation {key!r}: the turn took longer than lock_expiry="
                f"{self.lock_expiry}s and lost its lock"
            )
            if turn.staged is not None:
                raise ConversationLockLost(message + "; nothing was written")
            logger.warning(message)

    async def get(self, key: str) -> dict[str, Any] | None:
        """The stored session, read without the lock (reports, the timer worker's peeks)."""
        session_json = await self.get_json(key)
        return None if session_json is None else cast(dict[str, Any], json.loads(session_json))

    async def get_json(self, key: str) -> str | None:
        """The stored session as its JSON text, read without the lock."""
        self._check_open()
        return await self._get(key)

    async def data_since(self) -> float:
        """Since when (Unix seconds, the store's clock) the store has held its data: a Redis
        restarted without persistence, or flushed, or a process's memory, starts afresh. A
        session missing from a store older than a conversation's life was never there, so only
        a younger store is worth asking the records about (``bot.conversation.recovery``)."""
        self._check_open()
        return await self._data_since()

    async def record_event(self, key: str, window: float) -> int:
        """Note one event of ``key`` now; return how many ``key`` had in the last ``window``
        seconds, this one included. A key without events for ``window`` seconds is forgotten."""
        self._check_event(key, window)
        return await self._record_event(key, window)

    async def count_events(self, key: str, window: float) -> int:
        """How many events ``key`` had in the last ``window`` seconds (adds none)."""
        self._check_event(key, window)
        return await self._count_events(key, window)

    async def ping(self) -> None:
        """Raise if the backend can't be reached, or the store is closed (readiness probe)."""
        self._check_open()
        await self._ping()

    async def close(self) -> None:
        """Release the backend's resources. Idempotent; the store can't be used afterwards."""
        if not self._closed:
            self._closed = True
            await self._close()

    # -- what a backend implements ------------------------------------------------------------

    @abstractmethod
    async def _lock_and_load(
        self, key: str, delivery_id: str | None, token: str
    ) -> tuple[str | None, str | None]:
        """Take ``key``'s lock as ``token`` (for ``lock_expiry`` seconds), waiting at most
        ``lock_timeout`` seconds (else ``ConversationBusy``); return (session JSON, previous
        reply)."""

    @abstractmethod
    async def _write_and_unlock(
        self, key: str, delivery_id: str | None, token: str, staged: StagedWrite | None
    ) -> bool:
        """If ``token`` still holds the lock: apply ``staged`` (if any) and release, atomically,
        and return True. Otherwise change nothing and return False."""

    @abstractmethod
    async def _get(self, key: str) -> str | None:
        """The session JSON of ``key``, if any."""

    @abstractmethod
    async def _record_event(self, key: str, window: float) -> int:
        """Add an event to ``key`` now, drop its events older than ``window`` seconds, keep
        the key for ``window`` seconds more; return its events' count."""

    @abstractmethod
    async def _count_events(self, key: str, window: float) -> int: ...

    @abstractmethod
    async def _data_since(self) -> float: ...

    @abstractmethod
    async def _ping(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    def _check_event(self, key: str, window: float) -> None:
        self._check_open()
        if not key:
            raise ValueError("key must be a non-empty string")
        if not 0 < window < math.inf:
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
