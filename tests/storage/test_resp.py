"""The lean pipelined Redis client of the turn's two scripts (storage/resp.py): against the real
Redis, a Redis of the tests' own (to flush its scripts and restart it), and servers on
127.0.0.1 that never answer or hang up."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from storage.redis import LOCK_AND_LOAD, RedisConversationStore
from storage.resp import RespClient, serves
from tests.faults.servers import RedisServer, free_port

ECHO = "return {KEYS[1], ARGV[1]}"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RespClient]:
    lean = RespClient.from_url(redis_url)
    yield lean
    await lean.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own: its scripts can be flushed, it can be restarted."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[int, list[int]]]]]:
    """Starts a server on 127.0.0.1 with the given handler; gives its port and a list that
    counts the connections it accepted."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[None]] = []

    async def start(handler: Handler) -> tuple[int, list[int]]:
        accepted: list[int] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(1)
            writers.append(writer)
            handlers.append(asyncio.current_task())  # type: ignore[arg-type]
            await handler(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1], accepted

    yield start
    for writer in writers:
        writer.close()
    if handlers:
        await asyncio.wait(handlers, timeout=1)  # each sees its connection end
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_forever(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    """Reads whatever comes and never says a word: a server stopped under its kernel."""
    while await reader.read(65536):
        pass


# --- answers ---------------------------------------------------------------------------------


@pytest.mark.redis
async def test_many_concurrent_commands_share_one_connection_and_each_gets_its_own_answer(
    client: RespClient,
) -> None:
    echo = client.register_script(ECHO)
    ids = {await client.execute("CLIENT", "ID")}
    connection = client._connection
    assert connection is not None

    calls = [asyncio.ensure_future(echo(keys=[f"k{i}"], args=[i])) for i in range(500)]
    calls += [asyncio.ensure_future(client.execute("CLIENT", "ID")) for _ in range(20)]
    await asyncio.sleep(0)  # every call has written its command; none has been answered
    assert len(connection._pending) == 520  # pipelined: all outstanding on the one connection
    answers = await asyncio.gather(*calls)

    assert answers[:500] == [[f"k{i}".encode(), str(i).encode()] for i in range(500)]
    assert set(answers[500:]) == ids  # the same connection throughout
    assert client._connection is connection


@pytest.mark.redis
async def test_the_url_s_database_is_selected(client: RespClient, redis_url: str) -> None:
    key = f"ratebot-test:{uuid.uuid4().hex}"
    other = redis.asyncio.Redis.from_url(redis_url)  # redis-py reads the same URL
    try:
        assert await client.execute("SET", key, "日本", "PX", 10_000) == b"OK"
        assert await other.get(key) == "日本".encode()
        assert await client.execute("GET", key) == "日本".encode()
        assert await client.execute("GET", key + ":none") is None
    finally:
        await other.delete(key)
        await other.aclose()


@pytest.mark.redis
async def test_an_error_reply_raises_response_error_and_the_connection_goes_on(
    client: RespClient,
) -> None:
    await client.execute("PING")
    connection = client._connection
    with pytest.raises(ResponseError, match="Unknown Redis command"):
        await client.register_script("return redis.call('NOSUCHCOMMAND')")(keys=["k"])
    with pytest.raises(ResponseError):
        await client.register_script("this is not lua")()
    results = await asyncio.gather(
        client.execute("PING"),
        client.execute("NOSUCHCOMMAND"),
        client.execute("PING"),
        return_exceptions=True,
    )
    assert results[0] == results[2] == b"PONG"
    assert isinstance(results[1], ResponseError)
    assert client._connection is connection  # an error reply breaks nothing


# --- a server that lost its scripts, or the connection -----------------------------------------


async def test_a_flushed_script_cache_is_refilled_by_sending_the_script(
    own_redis: RedisServer,
) -> None:
    """A Redis restarted without persistence knows no script; EVALSHA answers NOSCRIPT and
    the script is sent whole (EVAL caches it again). Its own server: a flush on the shared one
    would make other tests' scripts miss."""
    lean = RespClient.from_url(own_redis.url)
    echo = lean.register_script(ECHO)
    try:
        assert await echo(keys=["k"], args=["v"]) == [b"k", b"v"]
        assert await lean.execute("SCRIPT", "EXISTS", echo.sha) == [1]
        assert await lean.execute("SCRIPT", "FLUSH") == b"OK"
        assert await lean.execute("SCRIPT", "EXISTS", echo.sha) == [0]
        assert await echo(keys=["k"], args=["w"]) == [b"k", b"w"]
        assert await lean.execute("SCRIPT", "EXISTS", echo.sha) == [1]

        own_redis.kill()  # scripts, data, connection: gone
        own_redis.start()
        assert await echo(keys=["k"], args=["x"]) == [b"k", b"x"]  # reconnected, re-sent
    finally:
        await lean.close()


@pytest.mark.redis
@pytest.mark.parametrize("retries", [1, 0])
async def test_a_killed_connection_is_reopened_and_the_waiting_command_sent_again(
    redis_url: str, retries: int
) -> None:
    key = f"ratebot-test:{uuid.uuid4().hex}"
    lean = RespClient.from_url(redis_url, timeout=5, retries=retries)
    other = redis.asyncio.Redis.from_url(redis_url)
    try:
        first_id = await lean.execute("CLIENT", "ID")
        waiting = asyncio.ensure_future(lean.execute("BLPOP", key, 3))
        await asyncio.sleep(0.1)  # BLPOP is waiting on the server
        assert not waiting.done()
        assert await other.client_kill_filter(_id=first_id) == 1
        await asyncio.sleep(0.1)
        await other.lpush(key, "pushed")
        if retries:
            assert await asyncio.wait_for(waiting, 2) == [key.encode(), b"pushed"]
            assert await lean.execute("CLIENT", "ID") != first_id
        else:  # without the retry the kill reaches the caller, promptly
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(waiting, 2)
            assert await lean.execute("LPOP", key) == b"pushed"  # and the next one reconnects
    finally:
        await other.delete(key)
        await other.aclose()
        await lean.close()


@pytest.mark.redis
async def test_an_idle_connection_killed_is_reopened_by_the_next_command(
    client: RespClient, redis_url: str
) -> None:
    first_id = await client.execute("CLIENT", "ID")
    killer = redis.Redis.from_url(redis_url)
    try:
        # Killed from a blocking client: the loop has not seen the hang-up when the command
        # is written on the dead connection.
        assert killer.client_kill_filter(_id=first_id) == 1
    finally:
        killer.close()
    assert await client.execute("PING") == b"PONG"
    assert await client.execute("CLIENT", "ID") != first_id


# --- a server away -----------------------------------------------------------------------------


async def test_an_unreachable_port_raises_connection_error_quickly() -> None:
    lean = RespClient(port=free_port())
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        await lean.execute("PING")
    assert time.monotonic() - started < 1.5
    await lean.close()


async def test_a_server_that_never_answers_raises_timeout_error_after_one_retry(
    fake_server: Callable[[Handler], Awaitable[tuple[int, list[int]]]],
) -> None:
    port, accepted = await fake_server(read_forever)
    lean = RespClient(port=port, timeout=0.3)
    started = time.monotonic()
    results = await asyncio.gather(
        *(lean.execute("PING") for _ in range(5)), return_exceptions=True
    )
    waited = time.monotonic() - started
    assert all(isinstance(r, RedisTimeoutError) for r in results), results
    assert 0.6 <= waited < 1.2  # two answers' worth of timeout, the backoff: never a hang
    assert len(accepted) == 2  # all five waited on one connection, then one more
    await lean.close()


async def test_the_default_timeout_is_a_second(
    fake_server: Callable[[Handler], Awaitable[tuple[int, list[int]]]],
) -> None:
    """The turn's budget (storage/redis.py): Redis away is known within about 2 s."""
    port, _ = await fake_server(read_forever)
    store = RedisConversationStore.from_url(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        async with store.turn("sms:a"):
            pass
    assert 2.0 <= time.monotonic() - started < 2.5
    await store.close()


async def test_a_server_that_hangs_up_fails_every_waiting_command(
    fake_server: Callable[[Handler], Awaitable[tuple[int, list[int]]]],
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    port, accepted = await fake_server(hang_up)
    lean = RespClient(port=port, timeout=5)
    results = await asyncio.wait_for(
        asyncio.gather(*(lean.execute("PING") for _ in range(5)), return_exceptions=True), 2
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    assert 2 <= len(accepted) <= 6  # the first connection, then one retry each at most
    await lean.close()


async def test_credentials_and_database_are_sent_before_the_first_command(
    fake_server: Callable[[Handler], Awaitable[tuple[int, list[int]]]],
) -> None:
    received = bytearray()

    async def agree(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
            writer.write(b"+OK\r\n" * data.count(b"*"))  # one answer for each command

    port, _ = await fake_server(agree)
    lean = RespClient.from_url(f"redis://ratebot:p%40ss@127.0.0.1:{port}/3")
    assert await lean.execute("PING") == b"OK"
    assert bytes(received) == (
        b"*3\r\n$4\r\nAUTH\r\n$7\r\nratebot\r\n$4\r\np@ss\r\n"
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
        b"*1\r\n$4\r\nPING\r\n"
    )
    await lean.close()


async def test_a_closed_client_fails_its_waiting_and_later_commands(
    fake_server: Callable[[Handler], Awaitable[tuple[int, list[int]]]],
) -> None:
    port, accepted = await fake_server(read_forever)
    lean = RespClient(port=port, timeout=5)
    waiting = asyncio.ensure_future(lean.execute("PING"))
    await asyncio.sleep(0.05)
    await lean.close()
    with pytest.raises(RedisConnectionError):
        await waiting
    with pytest.raises(RedisConnectionError, match="closed"):
        await lean.execute("PING")
    assert len(accepted) == 1  # no reconnect after close


# --- URLs --------------------------------------------------------------------------------------


def test_urls_are_read_as_redis_py_reads_them() -> None:
    lean = RespClient.from_url("redis://:s3cret@redis.example:7000/2?socket_timeout=0.5")
    assert (lean.host, lean.port, lean.path, lean.timeout) == ("redis.example", 7000, None, 0.5)
    assert lean._hello == [("AUTH", "s3cret"), ("SELECT", 2)]
    socket = RespClient.from_url("unix:///run/redis.sock?db=4")
    assert socket.path == "/run/redis.sock"
    assert socket._hello == [("SELECT", 4)]
    assert RespClient.from_url("redis://127.0.0.1")._hello == []

    assert serves("redis://h:1/0") and serves("unix:///run/redis.sock")
    assert not serves("rediss://h:1/0")  # TLS: redis-py's
    assert not serves("redis://h:1/0?client_name=x")  # an option only redis-py knows
    with pytest.raises(ValueError, match="rediss"):
        RespClient.from_url("rediss://h:1/0")


async def test_the_store_runs_its_turn_scripts_on_the_lean_client_where_it_can() -> None:
    for url in ("redis://127.0.0.1:6379/15", "unix:///run/redis.sock"):
        store = RedisConversationStore.from_url(url)
        assert isinstance(store.turns, RespClient)
        assert store._lock_and_load_script.client is store.turns  # type: ignore[union-attr]
        await store.close()
    tls = RedisConversationStore.from_url("rediss://127.0.0.1:6380/0")
    assert tls.turns is None
    assert tls._lock_and_load_script.script == LOCK_AND_LOAD  # type: ignore[union-attr]
    await tls.close()


async def test_redis_dying_in_the_middle_of_a_turn_fails_it_promptly_and_the_next_turn_goes_on(
    own_redis: RedisServer,
) -> None:
    """What the webhooks answer 503 for (bot/web/outages.py): the write and unlock of a turn
    whose Redis died under it raise ConnectionError at once; a Redis back serves the next."""
    store = RedisConversationStore.from_url(own_redis.url)
    try:
        with pytest.raises(RedisConnectionError):
            async with store.turn("sms:a", delivery_id="sms:SM1") as turn:
                turn.save({"step": "q2"}, ttl=60, reply="Q2?")
                own_redis.kill()
                started = time.monotonic()
        assert time.monotonic() - started < 0.5  # refused, retried once, refused: no waiting
        own_redis.start()
        async with store.turn("sms:a", delivery_id="sms:SM1") as turn:
            assert turn.session is None and turn.previous_reply is None  # lost with Redis
            turn.save({"step": "q2"}, ttl=60, reply="Q2?")
        assert await store.get("sms:a") == {"step": "q2"}
    finally:
        await store.close()


@pytest.mark.redis
def test_on_uvloop_the_server_s_loop_commands_pipeline_and_a_killed_connection_is_reopened(
    redis_url: str,
) -> None:
    """``ratebot serve`` runs on uvloop, whose transports call ``connection_made`` after the
    standard loop's would: the first command, many at once, and a reconnection, there."""

    async def on_uvloop() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        lean = RespClient.from_url(redis_url)
        killer = redis.asyncio.Redis.from_url(redis_url)
        try:
            answers = await asyncio.gather(*(lean.execute("ECHO", str(n)) for n in range(200)))
            assert answers == [str(n).encode() for n in range(200)]
            assert await killer.client_kill_filter(_id=await lean.execute("CLIENT", "ID")) == 1
            assert await lean.execute("PING") == b"PONG"
        finally:
            await killer.aclose()
            await lean.close()

    uvloop.run(on_uvloop())
