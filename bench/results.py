"""The results side at a province's scale: generated ratings loaded with PostgreSQL ``COPY``, the
rollups built from them (``ratebot stats rebuild``'s code), then the reads people make, timed.

What it does, in order:

1. creates a fresh PostgreSQL database (or uses ``--database-url``) and runs the migrations;
2. loads ``--ratings`` finished ratings (default 10,000,000), one case each, spread over a year of
   local days, over ``--departments`` departments × ``--items`` items (default 200 × 25 = 5,000)
   in 50 districts (4 departments each), 2 halls a district, 20 windows a hall serving every
   department of the district, 4 clerks a window, four channels; about 5 % bad reviews, 1 %
   re-rated, 0.2 % excluded, 0.3 % flagged, one dimension per rating;
3. rebuilds the rollups (day and month rows) and says how long it took;
4. times, ``--repeat`` times each (default 20), through the same functions the API calls: a
   month's ranking by department and by window, a month's statistics by department and by
   clerk, statistics by day for the whole year; prints p50 / p95 / max and PASS/FAIL against the
   target (p95 < 200 ms);
5. a worker pass recounting the year's last day (what a day's recount costs);
6. streams the CSV export of the whole year's ratings (the export route's code), printing rows/s
   and how much the resident memory grew (target: >= 50,000 rows/s, flat memory);
7. drops the database unless ``--keep-db``.

    .venv/bin/python -m bench.results                       # the issue's size (≈ 20 min here)
    .venv/bin/python -m bench.results --ratings 1000000     # a tenth of it
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import sqlalchemy as sa

from bench.webhook import create_database, drop_database
from bot.results import exports, national, rollups, stats
from bot.results.counting import day_bounds
from bot.results.scoring import results_rules
from bot.settings import Settings
from dialogs.survey import default_survey
from storage import db as database

ZONE = "Asia/Shanghai"
FIRST_DAY = date(2025, 12, 1)
DAYS = 365
CHANNELS = ("sms", "phone", "mobile", "qr_code")
TARGET_MS = 200.0
EXPORT_TARGET = 50_000  # rows/s


def _copy(conn: psycopg.Connection[Any], table: str, columns: str, rows: Iterator[str]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for n, line in enumerate(rows, 1):
            buffer.write(line)
            if n % 50_000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())


def load(url: str, ratings: int, departments: int, items: int, seed: int) -> None:
    rng = random.Random(seed)
    tz = ZoneInfo(ZONE)
    start = datetime.combine(FIRST_DAY, datetime.min.time(), tz).astimezone(UTC)
    span = DAYS * 86_400 - 60

    def moment(n: int) -> str:
        at = start + timedelta(seconds=int(n * span / ratings) + rng.randrange(60))
        return at.isoformat()

    def record_rows() -> Iterator[str]:
        # A province's shape: a department sits in one district (4 a district), its items are its
        # own; each district has 2 halls of 20 windows, 4 clerks a window; a case is handled at a
        # hall of its department's district, at any window (综合窗口).
        for n in range(1, ratings + 1):
            d, i = rng.randrange(departments), rng.randrange(items)
            district = d % max(1, departments // 4)
            hall = district * 2 + rng.randrange(2)
            window = rng.randrange(20)
            yield (
                f"{n}\tR{n:09d}\tITEM-{d:03d}-{i:02d}\t事项 {d}-{i}\t部门 {d:03d}\t"
                f"{370000 + district}\t大厅 {hall:03d}\tW{window:02d}\t"
                f"clerk-{hall:03d}-{window:02d}-{rng.randrange(4)}\tzh_Hans_CN\t{moment(n)}\n"
            )

    def rating_rows() -> Iterator[str]:
        rerated = max(1, ratings // 100)
        for n in range(1, ratings + 1):
            bad = rng.random() < 0.05
            level = rng.choice((1, 2)) if bad else rng.choice((3, 4, 4, 5, 5, 5))
            excluded = "2026-12-01T00:00:00+00:00" if rng.random() < 0.002 else "\\N"
            flagged = "t" if rng.random() < 0.003 else "f"
            at = moment(n)
            yield (
                f"{n}\tc{n}\tk{n}\t{n}\t1\t{CHANNELS[n % 4]}\ttwilio\t{n:064d}\tzh_Hans_CN\t"
                f"{level}\tcomplete\tf\t{at}\t{at}\t{at}\t{excluded}\t{flagged}\n"
            )
        for m in range(rerated):  # re-ratings of the first bad-or-not cases, a few days later
            n = ratings + 1 + m
            at = moment(min(ratings, m * 100 + 50))
            yield (
                f"{n}\tc{n}\tk{n}\t{m * 100 + 1}\t2\tsms\ttwilio\t{n:064d}\tzh_Hans_CN\t"
                f"{rng.choice((2, 4, 5))}\tcomplete\tf\t{at}\t{at}\t{at}\t\\N\tf\n"
            )

    def dimension_rows() -> Iterator[str]:
        for n in range(1, ratings + 1):
            yield f"{n}\tattitude\t{rng.randrange(1, 6)}\n"

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        began = time.perf_counter()
        _copy(
            conn,
            "service_records",
            'id, record_no, item_code, item_name, department, district, hall, "window", clerk, '
            "locale, completed_at",
            record_rows(),
        )
        _copy(
            conn,
            "ratings",
            "id, conversation_id, conversation_key, record_id, evaluation_count, channel, "
            "provider, citizen_hash, locale, level, status, unsolicited, created_at, "
            "submitted_at, updated_at, excluded_at, flagged",
            rating_rows(),
        )
        _copy(conn, "rating_dimensions", "rating_id, dimension, level", dimension_rows())
        for table in ("service_records", "ratings"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        conn.commit()
        conn.execute("ANALYZE")
        print(f"loaded {ratings:,} ratings in {time.perf_counter() - began:.0f} s", flush=True)


def timed(
    name: str, repeat: int, call: Callable[[], object]
) -> tuple[str, float, float, float, float]:
    """p50, p95 and max wall milliseconds of ``call``, and its median CPU milliseconds in this
    process (the Python side: steadier than the wall clock when the machine is busy)."""
    call()  # warm: the first run pays for plans and caches
    times, cpu = [], []
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        call()
        times.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - began_cpu) * 1000)
    times.sort()
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    return name, statistics.median(times), p95, times[-1], statistics.median(cpu)


def _resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def export_csv(
    engine: sa.Engine, settings: Settings, first: date, last: date
) -> tuple[int, float, float]:
    """Stream the ratings CSV of ``first``..``last`` (what ``GET /api/v1/exports/ratings.csv``
    sends) to nowhere: rows, rows per second, and how much the resident memory grew (flat
    memory: a few MB, whatever the rows)."""
    sheet = exports.ratings_sheet(
        engine,
        exports.Scope(first, last, ZONE),
        locale="zh_Hans_CN",
        survey=default_survey(),
        codes=national.load_codes(settings.results_codes),
    )
    counted = 0

    def rows() -> Iterator[list[Any]]:
        nonlocal counted
        for row in sheet.rows:
            counted += 1
            yield row

    before = peak = _resident_mb()
    began = time.perf_counter()
    for n, _chunk in enumerate(exports.csv_chunks(exports.Sheet(sheet.name, sheet.header, rows()))):
        if n % 64 == 0:
            peak = max(peak, _resident_mb())
    took = time.perf_counter() - began
    return counted, counted / took, max(peak, _resident_mb()) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", type=int, default=10_000_000)
    parser.add_argument("--departments", type=int, default=200)
    parser.add_argument("--items", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--database-url", help="an existing, migrated and loaded database")
    parser.add_argument(
        "--admin-database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    fresh: str | None = None
    url = args.database_url
    if url is None:
        fresh, url = create_database(args.admin_database_url)
        database.upgrade(url)
        load(url, args.ratings, args.departments, args.items, args.seed)
    settings = Settings(_env_file=None, database_url=url, timezone=ZONE)  # type: ignore[call-arg]
    engine = database.create_db_engine(url)
    gc.collect()
    gc.freeze()  # what a served worker does after its start (bot.app.served_app)
    try:
        if fresh is not None:
            began = time.perf_counter()
            days = rollups.rebuild(engine, settings, FIRST_DAY, FIRST_DAY + timedelta(DAYS - 1))
            took = time.perf_counter() - began
            print(f"rebuilt the rollups of {days} days in {took:.0f} s", flush=True)
            with engine.connect() as conn:  # what autovacuum would do soon after a bulk load
                conn.execute(sa.text("ANALYZE"))
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT grain, count(*) FROM result_counts GROUP BY grain"))
            print("rollup rows:", dict(rows.all()))
        rules = results_rules(None)
        month = stats.Period.parse("2026-10")
        everyone = stats.Scope()
        year = (FIRST_DAY, FIRST_DAY + timedelta(DAYS - 1))

        def read(fn: Callable[[sa.Connection], object]) -> Callable[[], object]:
            def run() -> object:
                with engine.connect() as conn:
                    return fn(conn)

            return run

        results = [
            timed(
                "ranking of a month by department",
                args.repeat,
                read(lambda c: stats.ranking(c, "department", month, rules)),
            ),
            timed(
                "ranking of a month by window",
                args.repeat,
                read(lambda c: stats.ranking(c, "window", month, rules)),
            ),
            timed(
                "statistics of a month by department",
                args.repeat,
                read(
                    lambda c: stats.group_stats(c, "department", month.first, month.last, everyone)
                ),
            ),
            timed(
                "statistics of a month by clerk",
                args.repeat,
                read(lambda c: stats.group_stats(c, "clerk", month.first, month.last, everyone)),
            ),
            timed(
                "statistics by day for a year",
                args.repeat,
                read(lambda c: stats.group_stats(c, "day", *year, everyone)),
            ),
        ]
        with engine.connect() as conn:
            groups = len(stats.group_stats(conn, "window", month.first, month.last, everyone))
        print(f"\n{groups} windows had ratings in {month.label}\n")
        print("| read | p50 ms | p95 ms | max ms | CPU p50 ms |\n|---|---:|---:|---:|---:|")
        for name, p50, p95, worst, cpu in results:
            print(f"| {name} | {p50:.1f} | {p95:.1f} | {worst:.1f} | {cpu:.1f} |")
        # a day's recount, as the worker does it after a busy day's changes
        last_day = year[1]
        with engine.begin() as conn:
            rollups.mark(conn, day_bounds(last_day, ZONE)[0])
        from bot.runtime import Runtime  # noqa: PLC0415 - only for the worker pass

        rt = Runtime.from_settings(settings)
        began = time.perf_counter()
        recounted = rollups.run_due(rt)
        took_ms = (time.perf_counter() - began) * 1000
        start, end = day_bounds(last_day, ZONE)
        with engine.connect() as conn:
            on_day = conn.execute(
                sa.text(
                    "SELECT count(*) FROM ratings WHERE submitted_at >= :a AND submitted_at < :b"
                ),
                {"a": start, "b": end},
            ).scalar()
        print(
            f"\na worker pass recounting {recounted} day(s), {on_day:,} ratings: {took_ms:.0f} ms"
        )
        exported, rate, grew = export_csv(engine, settings, *year)
        print(
            f"\nCSV export of the year's ratings: {exported:,} rows at {rate:,.0f} rows/s, "
            f"resident memory grew {grew:.1f} MB while streaming"
        )
        failed = [name for name, _, p95, _, _ in results if p95 >= TARGET_MS]
        if rate < EXPORT_TARGET:
            failed.append("export")
        print(
            f"{'PASS' if rate >= EXPORT_TARGET else 'FAIL'}  export: {rate:,.0f} rows/s >= "
            f"{EXPORT_TARGET:,} rows/s"
        )
        for name, _, p95, _, _ in results:
            print(
                f"{'PASS' if p95 < TARGET_MS else 'FAIL'}  {name}: "
                f"p95 {p95:.1f} ms < {TARGET_MS:.0f} ms"
            )
        print("FAIL" if failed else "PASS")
    finally:
        engine.dispose()
        if fresh is not None and not args.keep_db:
            drop_database(args.admin_database_url, fresh)


if __name__ == "__main__":
    main()
