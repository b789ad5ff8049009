"""Redemptions per second: the parking gate's API against ``ratebot serve`` on PostgreSQL.

    .venv/bin/python -m bench.redeem [--vouchers 2000] [--concurrency 1,10,50] [--contenders 10]
                                     [--workers 1] [--admin-url postgresql://postgres@127.0.0.1/test]
                                     [--redis-url redis://127.0.0.1:6379/9]

1. creates a fresh PostgreSQL database (dropped at the end), runs the migrations, and writes
   ``--vouchers`` issued vouchers per concurrency level straight into it (a hall, cases, complete
   ratings, vouchers with codes hashed by the server's secret) and one parking key;
2. starts ``ratebot serve --workers N`` and waits for ``/healthz``; with ``--redis-url`` the
   state store is that Redis (as when scaled out: every gate request asks it for the key's
   guess count), else in memory;
3. per concurrency level, redeems each voucher once with ``POST
   /api/v1/parking/vouchers/{code}/redeem`` from that many concurrent clients and prints
   redemptions per second and latency percentiles (every answer must be 200);
4. then the contended case: ``--contenders`` concurrent redemptions of each of 200 vouchers —
   exactly one 200 per voucher, the rest 409 — and checks in SQL that every voucher is redeemed
   once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from sqlmodel import Session as DbSession

from bench.webhook import Server, create_database, drop_database, free_port, ratebot_command
from bot.rewards.vouchers import code_hash, new_code
from bot.web.keys import create_api_key
from storage.db import normalize_url, upgrade
from storage.privacy import Privacy

SECRET_KEY = "bench-secret-key-0123456789abcdef0123456789"
HALL = "BENCH-1"
CONTENDED = 200  # vouchers in the contended phase
BODY = {
    "plate": "鲁F12345",
    "lot": "P1",
    "entered_at": "2026-11-27T09:00:00+08:00",
    "exited_at": "2026-11-27T10:35:00+08:00",
}


def seed(database_url: str, count: int, privacy: Privacy, tag: str) -> list[str]:
    """``count`` issued vouchers (each with its case and complete rating); their codes."""
    engine = sa.create_engine(normalize_url(database_url))
    now = datetime.now(UTC)
    codes = [new_code() for _ in range(count)]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO halls (code, name, timezone, parking_enabled, free_minutes,"
                " valid_hours) VALUES (:code, 'bench hall', 'Asia/Shanghai', true, 120, 48)"
                " ON CONFLICT DO NOTHING"
            ),
            {"code": HALL},
        )
        record_ids = conn.execute(
            sa.text(
                "INSERT INTO service_records (record_no, item_code, item_name, department,"
                " district, hall, \"window\", locale) SELECT :tag || n, 'I', 'N', 'D',"
                " '370602', :hall, 'A1', 'zh_Hans_CN' FROM generate_series(1, :count) AS n"
                " RETURNING id"
            ),
            {"tag": f"bench-{tag}-", "hall": HALL, "count": count},
        ).scalars()
        record_ids = sorted(record_ids)
        rating_ids = sorted(
            conn.execute(
                sa.text(
                    "INSERT INTO ratings (conversation_id, conversation_key, record_id,"
                    " evaluation_count, channel, provider, citizen_hash, locale, level, status,"
                    " unsolicited) SELECT 'bench-' || id, 'sms:bench', id, 1, 'sms', 'twilio',"
                    " 'bench', 'zh_Hans_CN', 5, 'complete', false FROM service_records"
                    " WHERE id = ANY(:ids) RETURNING id"
                ),
                {"ids": record_ids},
            ).scalars()
        )
        conn.execute(
            sa.text(
                "INSERT INTO vouchers (code_hash, code_enc, record_id, rating_id, hall_code,"
                " free_minutes, state, issued_at, expires_at) VALUES (:code_hash, :code_enc,"
                " :record_id, :rating_id, :hall, 120, 'issued', :now, :expires_at)"
            ),
            [
                {
                    "code_hash": code_hash(privacy, code),
                    "code_enc": privacy.encrypt(code),
                    "record_id": record_id,
                    "rating_id": rating_id,
                    "hall": HALL,
                    "now": now,
                    "expires_at": now + timedelta(hours=48),
                }
                for code, record_id, rating_id in zip(codes, record_ids, rating_ids, strict=True)
            ],
        )
    engine.dispose()
    return codes


async def redeem_all(
    base_url: str, key: str, jobs: list[str], concurrency: int
) -> tuple[float, list[float], Counter[int]]:
    """Redeem each code of ``jobs`` (a code may repeat) from ``concurrency`` clients: (seconds,
    latencies, answers by status)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for code in jobs:
        queue.put_nowait(code)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {key}"}
    # aiohttp, as bench.webhook uses: the load generator shares the two cores with the server,
    # and httpx's client spent more CPU per request than the server did.
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def worker() -> None:
            while not queue.empty():
                code = queue.get_nowait()
                started = time.perf_counter()
                async with client.post(
                    f"{base_url}/api/v1/parking/vouchers/{code}/redeem", json=BODY, headers=headers
                ) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                statuses[response.status] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, statuses


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vouchers", type=int, default=2000, help="per concurrency level")
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--contenders", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url", help="the state store (default: in memory)")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("RATEBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test"),
        help="a PostgreSQL database to connect to for creating the benchmark's own",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    name, database_url = create_database(args.admin_url)
    server = None
    try:
        upgrade(database_url)
        privacy = Privacy(SECRET_KEY)
        batches = {c: seed(database_url, args.vouchers, privacy, f"c{c}") for c in levels}
        contended = seed(database_url, CONTENDED, privacy, "contended")
        engine = sa.create_engine(normalize_url(database_url))
        with DbSession(engine) as db:
            key = create_api_key(
                db, role="parking", name="bench gate", now=datetime.now(UTC), halls=[HALL]
            )

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATEBOT_")}
        env.update(
            RATEBOT_DATABASE_URL=database_url,
            RATEBOT_SECRET_KEY=SECRET_KEY,
            RATEBOT_PUBLIC_URL=f"http://127.0.0.1:{port}",
            RATEBOT_RUN_WORKER="false",
            RATEBOT_LOG_LEVEL="WARNING",
        )
        if args.redis_url:
            env["RATEBOT_REDIS_URL"] = args.redis_url
        argv = [*ratebot_command(), "serve", "--port", str(port), "--workers", str(args.workers)]
        server = Server("redeem", argv, env, Path(tempfile.gettempdir()), port)
        server.wait_healthy()

        store = f"Redis {args.redis_url}" if args.redis_url else "state in memory"
        print(f"ratebot serve --workers {args.workers}, PostgreSQL, {store}")
        print(f"{'clients':>8} {'redemptions':>12} {'per second':>11} {'p50 ms':>8} {'p99 ms':>8}")
        for concurrency in levels:
            elapsed, latencies, statuses = asyncio.run(
                redeem_all(server.base_url, key, batches[concurrency], concurrency)
            )
            if set(statuses) != {200}:
                raise SystemExit(f"unexpected answers at {concurrency} clients: {statuses}")
            print(
                f"{concurrency:>8} {len(latencies):>12} {len(latencies) / elapsed:>11.0f}"
                f" {percentile(latencies, 50):>8.1f} {percentile(latencies, 99):>8.1f}"
            )

        jobs = [code for code in contended for _ in range(args.contenders)]
        elapsed, latencies, statuses = asyncio.run(
            redeem_all(server.base_url, key, jobs, args.contenders * 5)
        )
        with engine.connect() as conn:
            redeemed = conn.execute(
                sa.text(
                    "SELECT count(*) FROM vouchers WHERE state = 'redeemed'"
                    " AND record_id IN (SELECT id FROM service_records"
                    " WHERE record_no LIKE 'bench-contended-%')"
                )
            ).scalar()
        engine.dispose()
        print(
            f"contended: {args.contenders} concurrent redemptions of each of {CONTENDED} vouchers"
            f" in {elapsed:.1f}s ({len(latencies) / elapsed:.0f} requests/s): "
            f"{dict(sorted(statuses.items()))}; redeemed in the database: {redeemed}"
        )
        if statuses[200] != CONTENDED or redeemed != CONTENDED:
            raise SystemExit("exactly-once failed: see the counts above")
    finally:
        if server is not None:
            server.stop()
        drop_database(args.admin_url, name)


if __name__ == "__main__":
    main()
