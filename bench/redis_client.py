"""CPU a turn spends in the Redis client: redis-py's asyncio client against the lean pipelined
one (``storage/resp.py``), on the turn's two scripts.

    .venv/bin/python -m bench.redis_client [--turns 20000] [--concurrency 8] [--rounds 3]
                                           [--redis-url redis://127.0.0.1:6379/9]

Each turn runs LOCK_AND_LOAD then WRITE_AND_UNLOCK (a ~300-byte session, a delivery's reply), as
``RedisConversationStore`` does, from ``--concurrency`` coroutines at once on their own
conversations; ``scripts`` calls the two scripts straight, ``store`` goes through
``store.turn``. Clients alternate in rounds (the machine's speed drifts); it prints this
process's CPU (user + system) per turn, the median over the rounds, and turns/s. Redis's own
CPU is not counted. The keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from storage.redis import (
    CLIENT_RETRY,
    LOCK_AND_LOAD,
    SOCKET_TIMEOUT,
    WRITE_AND_UNLOCK,
    RedisConversationStore,
)
from storage.resp import RespClient

PREFIX = "ratebot-bench-client:"
SESSION = json.dumps(
    {
        "survey": "haocha-v1",
        "step": "efficiency",
        "answers": {"overall": 5, "attitude": 4},
        "record_no": "370200-2026-000123",
        "locale": "zh_Hans",
        "channel": "sms",
        "started_at": "2026-11-27T09:00:00+08:00",
        "comment": "办事很快，态度很好",
        "pad": "x" * 80,
    },
    ensure_ascii=False,
)
REPLY = "感谢您的评价！请为工作效率打分：回复1-5。"

Turn = Callable[[int, int], Awaitable[None]]


def redis_py(url: str) -> Redis:
    """The client as the store made it before the lean one."""
    return Redis.from_url(
        url,
        socket_connect_timeout=SOCKET_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        retry=CLIENT_RETRY,
    )


def script_turn(client: Redis | RespClient) -> Turn:
    lock_and_load = client.register_script(LOCK_AND_LOAD)
    write_and_unlock = client.register_script(WRITE_AND_UNLOCK)

    async def turn(worker: int, i: int) -> None:
        base = f"{PREFIX}{{sms:{worker}:{i % 100}}}:"
        keys = [base + "lock", base + "session", f"{base}delivery:SM{i}"]
        token = secrets.token_hex(16)
        result = await lock_and_load(keys=keys, args=[token, 30_000])
        assert result[0] == 1
        args: list[str | int] = [token, "1", SESSION, 3_600_000, "1", REPLY, 60_000]
        assert await write_and_unlock(keys=keys, args=args) == 1

    return turn


def store_turn(store: RedisConversationStore) -> Turn:
    async def turn(worker: int, i: int) -> None:
        async with store.turn(f"sms:{worker}:{i % 100}", delivery_id=f"SM{i}") as t:
            t.save_json(SESSION, ttl=3600, reply=REPLY)

    return turn


async def run(turn: Turn, turns: int, concurrency: int) -> tuple[float, float]:
    """CPU µs a turn, turns/s."""

    async def worker(w: int) -> None:
        for i in range(w, turns, concurrency):
            await turn(w, i)

    await turn(0, 0)  # connect and load the scripts outside the measurement
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / turns * 1e6, turns / wall


async def main(args: argparse.Namespace) -> None:
    redis = redis_py(args.redis_url)
    lean = RespClient.from_url(args.redis_url)
    stores = {
        "redis-py": RedisConversationStore(redis_py(args.redis_url), prefix=PREFIX),
        "lean": RedisConversationStore.from_url(args.redis_url, prefix=PREFIX),
    }
    cases: dict[str, Turn] = {
        "scripts, redis-py": script_turn(redis),
        "scripts, lean": script_turn(lean),
        "store.turn, redis-py": store_turn(stores["redis-py"]),
        "store.turn, lean": store_turn(stores["lean"]),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    try:
        for _ in range(args.rounds):
            for name, turn in cases.items():
                results[name].append(await run(turn, args.turns, args.concurrency))
    finally:
        keys: list[Any] = [key async for key in redis.scan_iter(match=PREFIX + "*")]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
        await redis.aclose()
        await lean.close()
        for store in stores.values():
            await store.close()

    print(f"{args.turns} turns, {args.concurrency} concurrent, median of {args.rounds} rounds")
    print(f"{'':24} {'CPU µs/turn':>12} {'µs/call':>8} {'turns/s':>8}")
    for name, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[1] for r in runs)
        print(f"{name:24} {cpu:12.1f} {cpu / 2:8.1f} {rate:8.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    asyncio.run(main(parser.parse_args()))
