"""The fault table of docs/reliability.md: each fault injected into a running app, what the
service answered during it, how long it took to recover, answers lost and ratings doubled.

    .venv/bin/python -m bench.faults                 # the issue's 30-second outages
    .venv/bin/python -m bench.faults --outage 3      # quicker

It starts its own servers (``tests/faults/servers.py``: a ``redis-server`` on a free port, a
PostgreSQL cluster made with ``initdb`` in a temporary directory) and drives one app with a
citizen on every channel (SMS, voice, WeChat, Telegram), as the fault tests do
(``tests/faults/conftest.py``). During an outage each citizen's provider retries its message
every second. "Recovered" is the time from the fault's end to the last citizen's answer.
Answers lost: answers a finished rating misses (each citizen gives the level and three
dimensions); ratings doubled: ratings beyond one per conversation. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import sqlalchemy as sa

from storage.db import normalize_url, upgrade
from tests.bot.conftest import FakeClock
from tests.conftest import truncate_all
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.wechat_api import FakeWeChat
from tests.faults.conftest import Citizen, Deployment, deployment
from tests.faults.servers import PostgresCluster, RedisServer
from tests.faults.test_redis import ATTITUDE, begin, finish

Row = tuple[str, str, float, int, int]  # fault, answered during it, recovered (s), lost, doubled


async def outage(
    d: Deployment, citizens: list[Citizen], text: str, seconds: float
) -> tuple[Counter[int], list[str]]:
    """Each citizen's provider posts ``text`` (one delivery, retried) every second for
    ``seconds``: the statuses seen, and the deliveries to retry after."""
    seen: Counter[int] = Counter()
    deliveries = [c.next_delivery() for c in citizens]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        results = await asyncio.gather(
            *(c.send(text, x) for c, x in zip(citizens, deliveries, strict=True))
        )
        seen.update(r.status_code for r, _ in results)
        await asyncio.sleep(1)
    return seen, deliveries


async def retried(citizens: list[Citizen], text: str, deliveries: list[str]) -> float:
    """Retry every delivery until each is answered 200; the seconds it took."""
    start = time.monotonic()
    pending = list(zip(citizens, deliveries, strict=True))
    while pending:
        answered = []
        for citizen, delivery in pending:
            response, answer = await citizen.send(text, delivery)
            answered.append(response.status_code == 200 and answer is not None)
        pending = [p for p, done in zip(pending, answered, strict=True) if not done]
        if pending:
            await asyncio.sleep(0.1)
    return time.monotonic() - start


def tally(d: Deployment, conversations: int) -> tuple[int, int]:
    """(answers lost, ratings doubled) over the finished conversations."""
    with d.rt.db.connect() as db:
        answers = (
            db.execute(
                sa.text(
                    "SELECT 1 + (SELECT count(*) FROM rating_dimensions x "
                    "WHERE x.rating_id = r.id) FROM ratings r"
                )
            )
            .scalars()
            .all()
        )
    lost = 4 * conversations - sum(min(n, 4) for n in answers[:conversations])
    return lost, max(0, len(answers) - conversations)


def seen_as(statuses: Counter[int]) -> str:
    return ", ".join(f"{n}× {code}" for code, n in sorted(statuses.items()))


async def redis_away(d: Deployment, redis: RedisServer, seconds: float, *, how: str) -> Row:
    citizens = d.citizens(1 if how == "restart" else 2)
    await begin(citizens)
    if how == "restart":
        redis.stop(keep=True)
    else:
        redis.cut_off()
    seen, deliveries = await outage(d, citizens, "4", seconds)
    start = time.monotonic()
    if how == "restart":
        redis.start()
    else:
        redis.reconnect()
    await retried(citizens, "4", deliveries)
    recovered = time.monotonic() - start
    await finish(citizens)
    name = f"Redis {'restarts (data kept)' if how == 'restart' else 'cut off (SIGSTOP)'}"
    return (f"{name}, {seconds:g} s", seen_as(seen), recovered, *tally(d, len(citizens)))


async def redis_lost(d: Deployment, redis: RedisServer, seconds: float) -> Row:
    citizens = d.citizens(3)
    await begin(citizens)
    redis.stop(keep=False)
    seen, deliveries = await outage(d, citizens, "4", seconds)
    start = time.monotonic()
    redis.start()
    await retried(citizens, "4", deliveries)  # the apology and the attitude question again
    recovered = time.monotonic() - start
    for c in citizens:
        assert "工作效率" in await c.say("4")
    await finish(citizens)
    name = f"Redis restarts without its data, {seconds:g} s"
    return (name, seen_as(seen) + "; then resumed from the records", recovered, *tally(d, 4))


async def postgres_away(d: Deployment, pg: PostgresCluster, seconds: float) -> Row:
    citizens = d.citizens(4)
    await begin(citizens)
    for c in citizens:
        await c.say("4")
        await c.say("5")
        await c.say("5")  # at "any comment?": the next answer finishes the rating (a write)
    pg.stop("fast")
    enders = [c for c in citizens if c.call is None]
    seen, deliveries = await outage(d, enders, "0", seconds)
    start = time.monotonic()
    pg.start()
    await retried(enders, "0", deliveries)
    recovered = time.monotonic() - start
    for c in citizens:
        if c.call is not None:
            await c.call.hang_up()
    return (
        f"PostgreSQL refuses connections, {seconds:g} s",
        seen_as(seen),
        recovered,
        *tally(d, 4),
    )


async def postgres_restart(d: Deployment, pg: PostgresCluster) -> Row:
    citizens = d.citizens(5)
    pg.stop("immediate")  # as a crash: the pool keeps dead connections
    pg.start()
    start = time.monotonic()
    seen: Counter[int] = Counter()
    for c in citizens:
        while c.call is not None and c.call.action is None:  # the call's first request
            response, _ = await c.send("", "0")
            seen[response.status_code] += 1
        delivery = c.next_delivery()
        while True:
            response, answer = await c.send("5", delivery)
            seen[response.status_code] += 1
            if response.status_code == 200 and answer and ATTITUDE in answer:
                break
            await asyncio.sleep(0.1)
    recovered = time.monotonic() - start
    for c in citizens:
        await c.say("4")
    await finish(citizens)
    return ("PostgreSQL restarts (crash, immediate)", seen_as(seen), recovered, *tally(d, 4))


async def main(seconds: float) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="ratebot-bench-faults-"))
    pg, redis = PostgresCluster(), RedisServer(workdir)
    telegram, wechat = FakeTelegram(), FakeWeChat()
    telegram.url = telegram.start()  # type: ignore[attr-defined]
    wechat.url = wechat.start()  # type: ignore[attr-defined]
    rows: list[Row] = []
    try:
        pg.create()
        upgrade(pg.url)
        redis.start()
        scenarios: list[Callable[[Deployment], Awaitable[Row]]] = [
            lambda d: redis_away(d, redis, seconds, how="restart"),
            lambda d: redis_away(d, redis, seconds, how="cut_off"),
            lambda d: redis_lost(d, redis, seconds),
            lambda d: postgres_away(d, pg, seconds),
            lambda d: postgres_restart(d, pg),
        ]
        for scenario in scenarios:
            truncate_all(normalize_url(pg.url))
            async with deployment(pg, redis, FakeClock(), telegram, wechat) as d:
                rows.append(await scenario(d))
    finally:
        telegram.stop()
        wechat.stop()
        redis.close()
        pg.close()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=30.0, help="seconds each outage lasts")
    args = parser.parse_args()
    table = asyncio.run(main(args.outage))
    print("| fault injected | answered during it | recovered in | answers lost | ratings doubled |")
    print("| --- | --- | --- | --- | --- |")
    for fault, answered, recovered, lost, doubled in table:
        print(f"| {fault} | {answered} | {recovered:.2f} s | {lost} | {doubled} |")
