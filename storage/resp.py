"""A lean Redis client for the hot path: one pipelined connection, replies parsed by hiredis.

A turn costs two script calls (``storage/redis.py``). redis-py's asyncio client spends ~78 µs of
CPU on each (a pooled connection checked out and back, a stream reader, layers of options);
this client writes each command as RESP on one connection, shared by every coroutine of the
process's event loop, and matches the answers to a FIFO of futures in the order they come back,
so many turns have commands outstanding at once and each costs a few µs.

It fails as the redis-py client the store used before did, so the webhooks answer 503 the same:
``redis.exceptions.ConnectionError`` (refused, dropped, a server still loading its data) and
``TimeoutError`` (no connection or no answer within the timeouts), each command retried once
on a fresh connection after a short backoff; an error reply raises ``ResponseError``. A broken
connection fails every command waiting on it, and the next command connects again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any, Self, cast
from urllib.parse import urlsplit

import hiredis
from redis.backoff import AbstractBackoff, ExponentialWithJitterBackoff
from redis.connection import parse_url
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    NoScriptError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float

# What a URL may say for this client to serve it: the address, the credentials, the database
# and the two timeouts. Anything else (rediss://, other query options) is redis-py's to handle.
SCHEMES = ("redis", "unix")
URL_OPTIONS = {"host", "port", "path", "username", "password", "db"}
URL_TIMEOUTS = {"socket_connect_timeout", "socket_timeout"}

# Error replies whose code means more than "the command failed", as redis-py maps them.
ERRORS: dict[str, type[RedisError]] = {
    "NOSCRIPT": NoScriptError,
    "LOADING": BusyLoadingError,  # a ConnectionError: a restarted Redis reading its data
    "WRONGPASS": AuthenticationError,
    "NOAUTH": AuthenticationError,
    "NOPERM": NoPermissionError,
}


def reply_error(message: str) -> RedisError:
    """The exception for an error reply (hiredis calls it as it parses one)."""
    return ERRORS.get(message.split(" ", 1)[0], ResponseError)(message)


def pack(args: tuple[Arg, ...]) -> bytes:
    """``args`` as one RESP command."""
    command: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # stub: a 1-tuple
    return command


def url_options(url: str) -> dict[str, Any]:
    """``url`` read as redis-py's ``from_url`` reads it."""
    options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    options.pop("connection_class", None)  # unix://: the socket path says it
    return options


def serves(url: str) -> bool:
    """Whether :meth:`RespClient.from_url` takes ``url`` (``redis://`` and ``unix://``, with no
    options but the address, the credentials, the database and the timeouts)."""
    if urlsplit(url).scheme not in SCHEMES:
        return False
    return set(url_options(url)) <= URL_OPTIONS | URL_TIMEOUTS


class Script:
    """A Lua script run by its SHA1 (``EVALSHA``), sent whole (``EVAL``, which also caches it)
    only when the server does not know it: a restart without persistence forgets scripts."""

    def __init__(self, client: RespClient, body: str) -> None:
        self.client = client
        self.body = body.encode()
        self.sha = hashlib.sha1(self.body, usedforsecurity=False).hexdigest().encode()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        try:
            return await self.client.execute(b"EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.execute(b"EVAL", self.body, len(keys), *keys, *args)


class RespClient:
    """Commands to one Redis over a single pipelined connection, opened on first use.

    ``host``/``port``, or ``path`` for a Unix socket; ``username``/``password`` (AUTH) and ``db``
    (SELECT) are sent on each connect. ``connect_timeout`` bounds the connect, ``timeout`` each
    answer; a command that fails for want of a connection is retried ``retries`` times after
    ``backoff``. The connection belongs to the event loop that opened it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        path: str | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        connect_timeout: float = 1.0,
        timeout: float = 1.0,
        retries: int = 1,
        backoff: AbstractBackoff | None = None,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff = backoff or ExponentialWithJitterBackoff(base=0.05, cap=0.2)
        self._hello: list[tuple[Arg, ...]] = []
        if password is not None:
            self._hello.append(
                ("AUTH", password) if username is None else ("AUTH", username, password)
            )
        if db:
            self._hello.append(("SELECT", db))
        self._connection: Connection | None = None
        self._connecting: asyncio.Task[Connection] | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """``redis://[[username]:password@]host[:port][/db]`` or ``unix://[[username]:password@]
        /path?db=N``, read as redis-py reads them; ``?socket_timeout`` and
        ``?socket_connect_timeout`` override ``timeout`` and ``connect_timeout``. Other URLs are
        refused (:func:`serves`)."""
        if not serves(url):
            raise ValueError(f"{urlsplit(url).scheme}:// URLs and options are not served here")
        options = url_options(url)
        if "socket_timeout" in options:
            kwargs["timeout"] = options.pop("socket_timeout")
        if "socket_connect_timeout" in options:
            kwargs["connect_timeout"] = options.pop("socket_connect_timeout")
        return cls(**options, **kwargs)

    def register_script(self, body: str) -> Script:
        """A callable ``script(keys=..., args=...)``, as redis-py's ``register_script`` gives."""
        return Script(self, body)

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply (bulk strings as bytes)."""
        command = pack(args)
        failures = 0
        while True:
            try:
                connection = self._connection
                if connection is None or not connection.usable():
                    connection = await self._connect()
                return await connection.send(command)
            except (RedisConnectionError, RedisTimeoutError):
                # The connection a restart dropped (or a reply lost with it): once more, on a
                # new one. The scripts of a turn are written to be safe to run twice.
                failures += 1
                if failures > self.retries:
                    raise
                await asyncio.sleep(self.backoff.compute(failures))

    async def close(self) -> None:
        """Close the connection: the commands waiting on it, and any sent later, fail with
        ``ConnectionError``."""
        self._closed = True
        connecting = self._connecting
        if connecting is not None:
            connecting.cancel()
            await asyncio.wait([connecting])
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.loop is asyncio.get_running_loop():
            await connection.close()
        else:
            connection.drop()

    async def _connect(self) -> Connection:
        # Every command arriving meanwhile waits on the same attempt, and all fail together:
        # not one connect timeout after another.
        if self._closed:
            raise RedisConnectionError("The Redis client is closed")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            stale, self._connection = self._connection, None
            if stale is not None:
                stale.drop()
            where = self.path or f"{self.host}:{self.port}"
            try:
                async with asyncio.timeout(self.connect_timeout):
                    if self.path is not None:
                        _, connection = await loop.create_unix_connection(
                            lambda: Connection(loop, self.timeout), self.path
                        )
                    else:
                        _, connection = await loop.create_connection(
                            lambda: Connection(loop, self.timeout), self.host, self.port
                        )
            except TimeoutError as error:  # before OSError, of which it is one
                raise RedisTimeoutError(f"Timeout connecting to Redis at {where}") from error
            except OSError as error:
                raise RedisConnectionError(
                    f"Error connecting to Redis at {where}: {error}"
                ) from error
            try:
                # Pipelined too: one round trip for AUTH and SELECT.
                await asyncio.gather(*(connection.send(pack(c)) for c in self._hello))
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
            return connection
        finally:
            self._connecting = None


class Connection(asyncio.Protocol):
    """One connection's protocol: commands written as they come, answers matched in order.

    An answer must begin to arrive within ``timeout`` of the previous one (or of the command, on
    an idle connection); otherwise the server is taken for gone and the connection fails. One
    timer watches the whole FIFO, re-armed only when it fires, so a command costs no timer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.failed: RedisError | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self._reader = hiredis.Reader(replyError=reply_error)
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._progress = 0.0  # loop time the head of the FIFO began to wait
        self._watchdog: asyncio.TimerHandle | None = None

    def usable(self) -> bool:
        # A loop other than the one that made it would never see its answers.
        return self.failed is None and self.loop is asyncio.get_running_loop()

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Write ``command``; the future its answer resolves (or fails with the connection)."""
        if self.failed is not None:
            raise type(self.failed)(*self.failed.args)
        assert self.transport is not None
        future = self.loop.create_future()
        if not self._pending:
            self._progress = self.loop.time()
            if self._watchdog is None:
                self._watchdog = self.loop.call_at(self._progress + self.timeout, self._watch)
        self._pending.append(future)
        # No flow control: commands are small, and a server that stops reading stops
        # answering too, which the watchdog notices.
        self.transport.write(command)
        return future

    async def close(self) -> None:
        self._fail(RedisConnectionError("Connection closed by the client"))
        await self.closed

    def drop(self) -> None:
        """Give up a connection without waiting for it to close (its loop may be gone)."""
        if self.loop.is_closed():
            self.failed = self.failed or RedisConnectionError("Its event loop is closed")
        elif self.loop is asyncio.get_running_loop():
            self._fail(RedisConnectionError("Connection dropped"))
        else:
            self.loop.call_soon_threadsafe(self._fail, RedisConnectionError("Connection dropped"))

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though uvloop's (what uvicorn serves on) is no asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        pending = self._pending
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as error:
                self._fail(RedisConnectionError(f"Unreadable reply from Redis: {error}"))
                return
            if reply is False:  # not a whole reply yet (RESP2 has no false)
                break
            if not pending:
                self._fail(RedisConnectionError("Redis answered a command never sent"))
                return
            future = pending.popleft()
            if future.done():  # its caller was cancelled: the answer is dropped
                continue
            if isinstance(reply, RedisError):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        self._progress = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self._fail(RedisConnectionError(f"Connection to Redis lost{reason}"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- failing --------------------------------------------------------------------------------

    def _watch(self) -> None:
        self._watchdog = None
        if not self._pending or self.failed is not None:
            return
        deadline = self._progress + self.timeout
        if self.loop.time() >= deadline:
            self._fail(
                RedisTimeoutError(f"Timeout reading from Redis: no answer in {self.timeout}s")
            )
        else:
            self._watchdog = self.loop.call_at(deadline, self._watch)

    def _fail(self, error: RedisError) -> None:
        """Break the connection: every command waiting on it fails with ``error``."""
        if self.failed is None:
            self.failed = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.transport is not None:
            self.transport.abort()
        elif not self.closed.done():
            self.closed.set_result(None)
        pending, self._pending = self._pending, deque()
        for future in pending:
            if not future.done():
                # An exception of its own for each: a shared one would gather every caller's
                # traceback.
                future.set_exception(type(error)(*error.args))
