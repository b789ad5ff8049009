"""How many requests a second ``ratebot serve`` answers for the public results page, ``/results``.

What it does:

1. a fresh SQLite file (or a fresh PostgreSQL database made from ``--database-url``), migrated;
2. publishes one month as a province would: a department ranking of ``--departments`` rows, a
   hall ranking of 40, a window ranking of 300 (frozen JSON in ``published_rankings``, in the
   shape ``bot.results.stats.ranking`` writes) and ``--cases`` rectified cases;
3. starts ``ratebot serve --workers 1`` and waits for ``/healthz``;
4. for each ``--concurrency`` level, ``--duration`` seconds of GET ``/results`` (a full page each
   time), then as long again with ``If-None-Match`` (what a browser revalidating sends: 304);
5. prints requests/s, p50/p99 latency and errors for both.

    .venv/bin/python -m bench.public_page --concurrency 1,10,50 --duration 10
    .venv/bin/python -m bench.public_page --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import sqlalchemy as sa

from bench.webhook import REPO, SECRET_KEY, VENV_BIN, Server, create_database, drop_database
from storage import db as database
from storage.tables import published_cases, published_rankings, ratings, tickets

PERIOD = "2026-10"
AT = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)


def frozen_ranking(by: str, count: int) -> dict[str, Any]:
    """A published ranking of ``count`` groups, as ``stats.ranking`` freezes one."""
    rows = []
    for n in range(count):
        good = 99.0 - n * 40 / count
        rows.append(
            {
                "rank": n + 1,
                "key": f"{by}-{n}",
                "name": f"{by} {n:04d}",
                "counted": 500 + n,
                "good_rate": round(good, 2),
                "bad_rate": round(100 - good, 2),
                "score": round(good * 0.9, 2),
                "parts": {
                    "good_rate": good,
                    "on_time": 95.0,
                    "rerated_good": None,
                    "response_rate": 40.0,
                },
                "previous_rank": n + 2 if n % 3 else None,
                "change": 1 if n % 3 else None,
                "bottom_streak": 0,
            }
        )
    return {
        "period": PERIOD,
        "by": by,
        "from": "2026-10-01",
        "to": "2026-10-31",
        "rules": {"weights": {"good_rate": 1.0}, "min_sample": 30, "bottom": 3, "decimals": 2},
        "ranked": rows,
        "too_few_ratings": [],
    }


def publish_month(url: str, departments: int, cases: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for by, count in (("department", departments), ("hall", 40), ("window", 300)):
            conn.execute(
                sa.insert(published_rankings).values(
                    period=PERIOD,
                    by=by,
                    published_at=AT,
                    published_by="bench",
                    ranking=frozen_ranking(by, count),
                )
            )
        for n in range(cases):
            rating_id = conn.execute(
                sa.insert(ratings)
                .values(
                    conversation_id=f"bench-{n}",
                    conversation_key=f"bench:{n}",
                    channel="sms",
                    provider="twilio",
                    locale="zh_Hans_CN",
                    level=1,
                    status="complete",
                    created_at=AT,
                    submitted_at=AT,
                    updated_at=AT,
                )
                .returning(ratings.c.id)
            ).scalar_one()
            ticket_id = conn.execute(
                sa.insert(tickets)
                .values(
                    rating_id=rating_id,
                    department=f"department {n:04d}",
                    tier="general",
                    state="closed",
                    opened_at=AT,
                    outcome="rectified",
                    updated_at=AT,
                )
                .returning(tickets.c.id)
            ).scalar_one()
            conn.execute(
                sa.insert(published_cases).values(
                    ticket_id=ticket_id,
                    text="窗口已一次性告知所需材料，并在大厅公示材料清单。" * 3,
                    published_at=AT,
                    published_by="bench",
                )
            )
    engine.dispose()


@dataclass
class Phase:
    name: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        done = len(self.latencies)
        ms = sorted(1000 * x for x in self.latencies) or [0.0]
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return (
            f"{self.name:<11} c={self.concurrency:<3} {done / self.seconds:8.1f} req/s   "
            f"p50 {statistics.median(ms):6.1f} ms   p99 {p99:6.1f} ms   errors {self.errors}"
        )


async def run_phase(
    base_url: str, phase: Phase, duration: float, headers: dict[str, str], expect: int
) -> None:
    deadline = time.monotonic() + duration

    async def visitor(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                async with session.get(base_url + "/results", headers=headers) as response:
                    await response.read()
                    ok = response.status == expect
            except aiohttp.ClientError:
                ok = False
            if ok:
                phase.latencies.append(time.perf_counter() - started)
            else:
                phase.errors += 1

    connector = aiohttp.TCPConnector(limit=phase.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(base_url + "/results") as warm:  # made once, then kept
            await warm.read()
        started = time.monotonic()
        await asyncio.gather(*(visitor(session) for _ in range(phase.concurrency)))
        phase.seconds = time.monotonic() - started


async def measure(base_url: str, levels: list[int], duration: float) -> None:
    async with aiohttp.ClientSession() as session, session.get(base_url + "/results") as first:
        body = await first.read()
        etag = first.headers["ETag"]
        print(f"page: {len(body)} bytes, {first.headers['Cache-Control']}, ETag {etag}")
    for level in levels:
        full = Phase("200 page", level)
        await run_phase(base_url, full, duration, {}, 200)
        print(full.line())
        revalidated = Phase("304 etag", level)
        await run_phase(base_url, revalidated, duration, {"If-None-Match": etag}, 304)
        print(revalidated.line())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server's admin URL (default SQLite)")
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--departments", type=int, default=120)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--port", type=int, default=8011)
    args = parser.parse_args()

    made: str | None = None
    if args.database_url:
        made, url = create_database(args.database_url)
    else:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-public-')}/ratebot.db"
    database.upgrade(url)
    publish_month(url, args.departments, args.cases)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEBOT_")}
    env |= {
        "RATEBOT_DATABASE_URL": url,
        "RATEBOT_SECRET_KEY": SECRET_KEY,
        "RATEBOT_PUBLIC_URL": f"http://127.0.0.1:{args.port}",
        "RATEBOT_RUN_WORKER": "false",
        "RATEBOT_LOG_LEVEL": "WARNING",
    }
    argv = [str(VENV_BIN / "ratebot"), "serve", "--workers", "1", "--port", str(args.port)]
    server = Server("ratebot", argv, env, REPO, args.port)
    try:
        server.wait_healthy()
        levels = [int(n) for n in args.concurrency.split(",")]
        asyncio.run(measure(server.base_url, levels, args.duration))
    finally:
        server.stop()
        if made is not None and args.database_url:
            drop_database(args.database_url, made)
    print(f"({sys.platform}, {os.cpu_count()} cores, database {url.split(':')[0]})")


if __name__ == "__main__":
    main()
