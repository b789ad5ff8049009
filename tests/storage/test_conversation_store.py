"""The conversation-store contract, run against every backend (memory, and a real Redis)."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from storage.base import (
    ConversationBusy,
    ConversationLockLost,
    ConversationStore,
    StagedWrite,
    Turn,
)
from storage.memory import MemoryConversationStore
from storage.redis import RedisConversationStore

StoreFactory = Callable[..., ConversationStore]
PassTime = Callable[[float], Awaitable[None]]


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        # The turn's scripts on redis-py rather than the lean client, as for rediss:// URLs.
        pytest.param("redis-py", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_store(
    backend: str, clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[StoreFactory]:
    """Makes stores of this backend; on Redis they share one key prefix, fresh for each test
    (so two stores act as two workers), and the prefix's keys are deleted afterwards."""
    stores: list[ConversationStore] = []
    if backend == "memory":

        def make(**kwargs: Any) -> ConversationStore:
            stores.append(MemoryConversationStore(clock=clock, **kwargs))
            return stores[-1]

        yield make
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"ratebot-test:{uuid.uuid4().hex}:"

        def make(**kwargs: Any) -> ConversationStore:
            if backend == "redis-py":
                store = RedisConversationStore(
                    redis.asyncio.Redis.from_url(url), prefix=prefix, **kwargs
                )
            else:
                store = RedisConversationStore.from_url(url, prefix=prefix, **kwargs)
            stores.append(store)
            return store

        yield make
        cleaner = redis.asyncio.Redis.from_url(url)
        try:
            keys = [key async for key in cleaner.scan_iter(match=prefix + "*")]
            if keys:
                await cleaner.delete(*keys)
        finally:
            await cleaner.aclose()
    for store in stores:
        await store.close()


@pytest.fixture
def conversation_store(make_store: StoreFactory) -> ConversationStore:
    return make_store()


@pytest.fixture
def pass_time(backend: str, clock: FakeClock) -> PassTime:
    """Let TTLs run: the memory store's clock is fake; Redis needs a real wait."""

    async def pass_time(seconds: float) -> None:
        if backend == "memory":
            clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    return pass_time


async def save(store: ConversationStore, key: str, session: dict[str, Any] | None) -> None:
    async with store.turn(key) as turn:
        turn.save(session, ttl=60)


# --- sessions ------------------------------------------------------------------------------------


async def test_new_conversation_starts_empty(conversation_store: ConversationStore) -> None:
    async with conversation_store.turn("sms:new", delivery_id="sms:SM1") as turn:
        assert turn.session is None
        assert turn.previous_reply is None
    assert await conversation_store.get("sms:new") is None


async def test_saved_session_is_loaded_by_the_next_turn(
    conversation_store: ConversationStore,
) -> None:
    session = {"step": "q2", "answers": {"q1": 4}, "comment": "办事很快 👍", "flags": [True, None]}
    async with conversation_store.turn("sms:a") as turn:
        turn.save(session, ttl=60)
        session["step"] = "changed after save"  # must not leak into what is stored

    async with conversation_store.turn("sms:a") as turn:
        assert turn.session == {**session, "step": "q2"}
    assert await conversation_store.get("sms:a") == {**session, "step": "q2"}
    assert await conversation_store.get("sms:b") is None  # conversations don't mix


async def test_session_json_is_handed_over_as_stored(
    conversation_store: ConversationStore,
) -> None:
    """A caller with a model of its own reads and writes the JSON text in one pass: kept
    verbatim, and the dict view of it reads the same."""
    text = '{"step":"q2","answers":{"q1":4},"comment":"办事很快 👍"}'
    async with conversation_store.turn("sms:a") as turn:
        assert turn.session_json is None
        turn.save_json(text, ttl=60)
    async with conversation_store.turn("sms:a") as turn:
        assert turn.session_json == text
        assert turn.session == {"step": "q2", "answers": {"q1": 4}, "comment": "办事很快 👍"}
    assert await conversation_store.get_json("sms:a") == text
    assert await conversation_store.get_json("sms:b") is None

    await save(conversation_store, "sms:c", {"step": "q1", "comment": "很好"})  # a dict
    stored = await conversation_store.get_json("sms:c")
    assert stored is not None and json.loads(stored) == {"step": "q1", "comment": "很好"}

    async with conversation_store.turn("sms:a", delivery_id="sms:SM1") as turn:
        turn.save_json(None, reply="Thank you, goodbye")
    assert await conversation_store.get_json("sms:a") is None
    async with conversation_store.turn("sms:a", delivery_id="sms:SM1") as turn:
        assert turn.session_json is None
        assert turn.previous_reply == "Thank you, goodbye"


async def test_turn_without_save_changes_nothing(conversation_store: ConversationStore) -> None:
    await save(conversation_store, "sms:a", {"step": "q1"})
    async with conversation_store.turn("sms:a", delivery_id="sms:SM1"):
        pass
    assert await conversation_store.get("sms:a") == {"step": "q1"}
    async with conversation_store.turn("sms:a", delivery_id="sms:SM1") as turn:
        assert turn.previous_reply is None


async def test_saving_none_deletes_the_session_but_remembers_the_reply(
    conversation_store: ConversationStore,
) -> None:
    await save(conversation_store, "sms:a", {"step": "q1"})
    async with conversation_store.turn("sms:a", delivery_id="sms:SM1") as turn:
        turn.save(None, reply="Thank you, goodbye")
    assert await conversation_store.get("sms:a") is None
    async with conversation_store.turn("sms:a", delivery_id="sms:SM1") as turn:
        assert turn.session is None
        assert turn.previous_reply == "Thank you, goodbye"


async def test_session_and_reply_expire_after_their_ttls(
    make_store: StoreFactory, pass_time: PassTime
) -> None:
    store = make_store(delivery_ttl=0.5)
    async with store.turn("sms:a", delivery_id="sms:SM1") as turn:
        turn.save({"step": "q1"}, ttl=0.2, reply="Q1?")

    await pass_time(0.1)
    assert await store.get("sms:a") == {"step": "q1"}

    await pass_time(0.2)  # past the session's ttl, not the delivery's
    assert await store.get("sms:a") is None
    async with store.turn("sms:a", delivery_id="sms:SM1") as turn:
        assert turn.session is None
        assert turn.previous_reply == "Q1?"

    await pass_time(0.3)  # past the delivery's ttl too
    async with store.turn("sms:a", delivery_id="sms:SM1") as turn:
        assert turn.previous_reply is None


# --- deliveries ----------------------------------------------------------------------------------


async def test_repeated_delivery_gets_the_remembered_reply(
    conversation_store: ConversationStore,
) -> None:
    async with conversation_store.turn("sms:a", delivery_id="sms:SM1") as turn:
        assert turn.previous_reply is None
        turn.save({"step": "q2"}, ttl=60, reply="Thanks! Question 2?")

    # The provider retries SM1 (our 200 got lost): same reply, and the session it led to.
    async with conversation_store.turn("sms:a", delivery_id="sms:SM1") as turn:
        assert turn.previous_reply == "Thanks! Question 2?"
        assert turn.session == {"step": "q2"}

    async with conversation_store.turn("sms:a", delivery_id="sms:SM2") as turn:
        assert turn.previous_reply is None  # a new message
    async with conversation_store.turn("sms:a") as turn:
        assert turn.previous_reply is None  # no delivery id, nothing to look up


async def test_empty_reply_marks_a_delivery_handled(conversation_store: ConversationStore) -> None:
    async with conversation_store.turn("wechat:o1", delivery_id="wechat:subscribe:1") as turn:
        turn.save({"step": "q1"}, ttl=60, reply="")
    async with conversation_store.turn("wechat:o1", delivery_id="wechat:subscribe:1") as turn:
        assert turn.previous_reply == ""


# --- failures ------------------------------------------------------------------------------------


async def test_exception_in_turn_writes_nothing_and_releases_the_lock(
    make_store: StoreFactory,
) -> None:
    store = make_store(lock_timeout=0.2)
    await save(store, "sms:a", {"step": "q1"})

    with pytest.raises(RuntimeError, match="dialog crashed"):
        async with store.turn("sms:a", delivery_id="sms:SM1") as turn:
            turn.save({"step": "q2"}, ttl=60, reply="Question 2?")
            raise RuntimeError("dialog crashed")

    assert await store.get("sms:a") == {"step": "q1"}
    async with store.turn("sms:a", delivery_id="sms:SM1") as turn:  # would be busy if still held
        assert turn.session == {"step": "q1"}
        assert turn.previous_reply is None  # the retry is handled afresh


async def test_unserialisable_session_fails_inside_the_block_and_writes_nothing(
    conversation_store: ConversationStore,
) -> None:
    await save(conversation_store, "sms:a", {"step": "q1"})
    with pytest.raises(TypeError):
        async with conversation_store.turn("sms:a") as turn:
            turn.save({"at": time}, ttl=60)  # a module is not JSON
    assert await conversation_store.get("sms:a") == {"step": "q1"}


# --- locking -------------------------------------------------------------------------------------


async def append_to_session(store: ConversationStore, key: str, item: int) -> None:
    async with store.turn(key) as turn:
        seen = (turn.session or {"seen": []})["seen"]
        await asyncio.sleep(0)  # let the other turns run mid-turn, as real I/O would
        turn.save({"seen": [*seen, item]}, ttl=60)


async def test_concurrent_turns_do_not_lose_updates(conversation_store: ConversationStore) -> None:
    """Guards the lock-before-load order: loading before locking let two messages start from
    the same state and one update vanish (aiogram's bug, github.com/aiogram/aiogram/issues/1317).
    """
    await asyncio.gather(*(append_to_session(conversation_store, "sms:a", i) for i in range(50)))
    session = await conversation_store.get("sms:a")
    assert session is not None
    assert sorted(session["seen"]) == list(range(50))


@pytest.mark.parametrize("backend", [pytest.param("redis", marks=pytest.mark.redis)])
async def test_two_workers_sharing_redis_do_not_lose_updates(make_store: StoreFactory) -> None:
    workers = [make_store(), make_store()]  # two clients, two connection pools: two processes
    await asyncio.gather(*(append_to_session(workers[i % 2], "sms:a", i) for i in range(50)))
    for worker in workers:
        session = await worker.get("sms:a")
        assert session is not None
        assert sorted(session["seen"]) == list(range(50))


async def test_busy_conversation_raises_after_lock_timeout(make_store: StoreFactory) -> None:
    store = make_store(lock_timeout=0.1)
    async with store.turn("sms:a"):
        started = time.monotonic()
        with pytest.raises(ConversationBusy):
            async with store.turn("sms:a"):
                pytest.fail("entered a conversation somebody else holds")
        assert 0.09 <= time.monotonic() - started < 1
    async with store.turn("sms:b"):
        pass  # other conversations are not held up


async def test_get_does_not_wait_for_the_lock(conversation_store: ConversationStore) -> None:
    await save(conversation_store, "sms:a", {"step": "q1"})
    async with conversation_store.turn("sms:a"):
        assert await asyncio.wait_for(conversation_store.get("sms:a"), 1) == {"step": "q1"}


async def test_crashed_owners_lock_expires_and_is_taken_over(make_store: StoreFactory) -> None:
    store = make_store(lock_expiry=0.2, lock_timeout=2)
    crashed = store.turn("sms:a")
    await crashed.__aenter__()  # the worker dies mid-turn and never leaves the block

    started = time.monotonic()
    async with store.turn("sms:a") as turn:
        turn.save({"by": "successor"}, ttl=60)
    assert 0.15 <= time.monotonic() - started < 1.5  # waited for the expiry, not the timeout
    assert await store.get("sms:a") == {"by": "successor"}

    await crashed.__aexit__(None, None, None)  # only to end the coroutine; changes nothing
    assert await store.get("sms:a") == {"by": "successor"}


async def test_stale_owner_cannot_release_the_new_owners_lock(make_store: StoreFactory) -> None:
    store = make_store(lock_expiry=0.3, lock_timeout=0.1)
    stale = store.turn("sms:a")
    await stale.__aenter__()
    await asyncio.sleep(0.35)  # the stale owner's lock expires...
    successor = store.turn("sms:a")
    successor_turn = await successor.__aenter__()  # ...and the next message takes it

    await stale.__aexit__(None, None, None)  # must not free the successor's lock
    with pytest.raises(ConversationBusy):
        async with store.turn("sms:a"):
            pytest.fail("the stale owner released the successor's lock")

    successor_turn.save({"by": "successor"}, ttl=60)
    await successor.__aexit__(None, None, None)
    assert await store.get("sms:a") == {"by": "successor"}


async def test_turn_that_outlived_its_lock_writes_nothing(make_store: StoreFactory) -> None:
    store = make_store(lock_expiry=0.2)
    await save(store, "sms:a", {"step": "q1"})
    with pytest.raises(ConversationLockLost):
        async with store.turn("sms:a", delivery_id="sms:SM1") as turn:
            await asyncio.sleep(0.3)  # a slow dialog, past lock_expiry
            turn.save({"step": "late"}, ttl=60, reply="late")
    assert await store.get("sms:a") == {"step": "q1"}
    async with store.turn("sms:a", delivery_id="sms:SM1") as turn:
        assert turn.previous_reply is None


async def test_turn_that_lost_its_lock_does_not_overwrite_the_successor(
    make_store: StoreFactory,
) -> None:
    store = make_store(lock_expiry=0.2)
    with pytest.raises(ConversationLockLost):
        async with store.turn("sms:a", delivery_id="sms:SM1") as slow:
            await asyncio.sleep(0.3)
            async with store.turn("sms:a", delivery_id="sms:SM2") as successor:
                successor.save({"by": "successor"}, ttl=60, reply="from successor")
            slow.save({"by": "slow"}, ttl=60, reply="from slow")
    assert await store.get("sms:a") == {"by": "successor"}
    async with store.turn("sms:a", delivery_id="sms:SM1") as turn:
        assert turn.previous_reply is None


@pytest.mark.parametrize("backend", ["memory"])
async def test_memory_store_forgets_idle_locks(make_store: StoreFactory) -> None:
    """Guards memory use: one lock per citizen ever seen would grow without bound."""
    store = make_store(lock_timeout=0.05)
    assert isinstance(store, MemoryConversationStore)
    for i in range(100):
        await save(store, f"sms:{i}", {"i": i})
    await asyncio.gather(*(append_to_session(store, "sms:busy", i) for i in range(20)))
    async with store.turn("sms:held"):
        with pytest.raises(ConversationBusy):
            async with store.turn("sms:held"):
                pass
    assert store._locks == {}


# --- events --------------------------------------------------------------------------------------


async def test_events_are_counted_per_key(conversation_store: ConversationStore) -> None:
    store = conversation_store
    assert await store.count_events("guess:a", 60) == 0
    assert [await store.record_event("guess:a", 60) for _ in range(3)] == [1, 2, 3]
    assert await store.count_events("guess:a", 60) == 3
    assert await store.count_events("guess:a", 60) == 3  # counting adds nothing
    assert await store.record_event("guess:b", 60) == 1  # keys don't mix...
    await save(store, "guess:a", {"step": "q1"})
    assert await store.count_events("guess:a", 60) == 3  # ...nor with conversations
    assert await store.get("guess:a") == {"step": "q1"}


async def test_old_events_fall_out_of_the_window(
    make_store: StoreFactory, pass_time: PassTime
) -> None:
    store = make_store()
    await store.record_event("guess:a", 10)
    await store.record_event("guess:a", 10)
    await pass_time(1.0)
    assert await store.record_event("guess:a", 10) == 3
    assert await store.count_events("guess:a", 0.8) == 1  # only the last is under 0.8 s old
    assert await store.record_event("guess:a", 0.8) == 2  # and recording so drops the others
    assert await store.count_events("guess:a", 10) == 2
    await pass_time(1.0)  # quiet for longer than the last window: the key is gone
    assert await store.count_events("guess:a", 10) == 0
    assert await store.record_event("guess:a", 10) == 1


async def test_concurrent_events_are_each_counted_once(
    conversation_store: ConversationStore,
) -> None:
    counts = await asyncio.gather(
        *(conversation_store.record_event("guess:a", 60) for _ in range(50))
    )
    assert sorted(counts) == list(range(1, 51))


@pytest.mark.parametrize("backend", [pytest.param("redis", marks=pytest.mark.redis)])
async def test_two_workers_sharing_redis_count_the_same_events(make_store: StoreFactory) -> None:
    workers = [make_store(), make_store()]  # two clients, two connection pools: two processes
    counts = await asyncio.gather(*(workers[i % 2].record_event("guess:a", 60) for i in range(50)))
    assert sorted(counts) == list(range(1, 51))  # each count atomic across workers
    for worker in workers:
        assert await worker.count_events("guess:a", 60) == 50


@pytest.mark.parametrize("backend", [pytest.param("redis", marks=pytest.mark.redis)])
async def test_redis_event_key_expires_after_the_window(make_store: StoreFactory) -> None:
    store = make_store()
    assert isinstance(store, RedisConversationStore)
    await store.record_event("guess:a", 1)
    key = f"{store.prefix}events:guess:a"
    assert 0 < await store.redis.pttl(key) <= 1000
    await asyncio.sleep(1.1)
    assert await store.redis.exists(key) == 0
    assert [key async for key in store.redis.scan_iter(match=store.prefix + "*")] == []


@pytest.mark.parametrize("backend", ["memory"])
async def test_memory_store_forgets_quiet_event_keys(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    """Guards memory use: one entry per client that ever mistyped a code would grow for ever."""
    store = make_store()
    assert isinstance(store, MemoryConversationStore)
    for i in range(100):
        await store.record_event(f"guess:{i}", 600)
    clock.advance(300)
    await store.record_event("guess:busy", 600)
    clock.advance(400)  # the hundred quiet for 700 s, past their window and the sweep interval
    await store.record_event("guess:new", 600)  # recording triggers the sweep
    assert set(store._events) == {"guess:busy", "guess:new"}
    clock.advance(600)
    assert await store.count_events("guess:busy", 600) == 0  # read after its window: dropped
    assert set(store._events) == {"guess:new"}


async def test_event_arguments_are_checked(conversation_store: ConversationStore) -> None:
    with pytest.raises(ValueError, match="key"):
        await conversation_store.record_event("", 60)
    for window in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match="window"):
            await conversation_store.record_event("guess:a", window)
        with pytest.raises(ValueError, match="window"):
            await conversation_store.count_events("guess:a", window)


# --- lifecycle -----------------------------------------------------------------------------------


async def test_ping(conversation_store: ConversationStore) -> None:
    await conversation_store.ping()


async def test_close_is_idempotent_and_refuses_further_use(make_store: StoreFactory) -> None:
    store = make_store()
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.turn("sms:a")
    with pytest.raises(RuntimeError, match="closed"):
        await store.get("sms:a")
    with pytest.raises(RuntimeError, match="closed"):
        await store.get_json("sms:a")
    with pytest.raises(RuntimeError, match="closed"):
        await store.ping()
    with pytest.raises(RuntimeError, match="closed"):
        await store.record_event("guess:a", 60)
    with pytest.raises(RuntimeError, match="closed"):
        await store.count_events("guess:a", 60)


async def test_redis_ping_raises_when_the_server_is_unreachable() -> None:
    store = RedisConversationStore.from_url(
        "redis://127.0.0.1:1/0", connection_kwargs={"socket_connect_timeout": 0.5}
    )
    try:
        with pytest.raises(RedisConnectionError):
            await store.ping()
    finally:
        await store.close()


# --- Turn.save -----------------------------------------------------------------------------------


def test_save_checks_its_arguments() -> None:
    turn = Turn(session_json=None)
    with pytest.raises(ValueError, match="ttl"):
        turn.save({"step": "q1"})  # every conversation must end on its own
    with pytest.raises(ValueError, match="ttl"):
        turn.save({"step": "q1"}, ttl=0)
    with pytest.raises(TypeError, match="dict"):
        turn.save(["not", "a", "dict"], ttl=60)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        turn.save({"level": math.nan}, ttl=60)  # NaN is not JSON
    assert turn.staged is None

    turn.save(None)  # deleting needs no ttl
    turn.save({"step": "q1"}, ttl=60, reply="Q1?")  # the last call wins
    assert turn.staged is not None
    assert turn.staged.session_json == '{"step": "q1"}'
    assert turn.staged.reply == "Q1?"


def test_save_json_checks_its_arguments() -> None:
    turn = Turn(session_json=None)
    with pytest.raises(ValueError, match="ttl"):
        turn.save_json('{"step": "q1"}')  # every conversation must end on its own
    with pytest.raises(TypeError, match="JSON"):
        turn.save_json("", ttl=60)  # no JSON text is empty
    assert turn.staged is None

    turn.save_json(None, reply="bye")  # deleting needs no ttl
    assert turn.staged == StagedWrite(session_json=None, ttl=None, reply="bye")
    turn.save_json('{"step":"q1"}', ttl=60)
    assert turn.staged == StagedWrite(session_json='{"step":"q1"}', ttl=60, reply=None)


@pytest.mark.parametrize("backend", ["memory"])
async def test_memory_store_purges_conversations_nobody_came_back_to(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    """Guards memory use: expired entries that are never read again must still go."""
    store = make_store()
    assert isinstance(store, MemoryConversationStore)
    for i in range(10):
        async with store.turn(f"sms:{i}", delivery_id=f"sms:SM{i}") as turn:
            turn.save({"i": i}, ttl=1, reply="Q1?")
    clock.advance(store.delivery_ttl + 60)  # past every ttl and the sweep interval
    await save(store, "sms:new", {"step": "q1"})  # a write triggers the sweep
    assert list(store._sessions) == ["sms:new"]
    assert store._replies == {}


# --- since when the store holds its data ---------------------------------------------------------


async def test_data_since_is_when_the_store_began_and_stays(make_store: StoreFactory) -> None:
    """Two workers on one store see the same beginning; it does not move as conversations come
    and go (a store that kept its data longer than a conversation lives has lost none)."""
    began = time.time()
    first, second = make_store(), make_store()
    since = await first.data_since()
    assert began - 2 <= since <= time.time() + 1
    await save(first, "sms:a", {"step": "level"})
    await asyncio.sleep(1.1)
    assert await first.data_since() == since
    if isinstance(second, RedisConversationStore):
        assert await second.data_since() == since  # one Redis: one beginning


@pytest.mark.parametrize("backend", [pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_flushed_redis_begins_again(make_store: StoreFactory) -> None:
    store = make_store()
    assert isinstance(store, RedisConversationStore)
    await store.redis.set(f"{store.prefix}data-since", "1000")
    assert await store.data_since() == 1000.0
    await store.redis.delete(f"{store.prefix}data-since")  # what a restart without data leaves
    assert await store.data_since() >= time.time() - 2
