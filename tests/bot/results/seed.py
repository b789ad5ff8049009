"""Ratings written straight into the tables, the way the conversation leaves them, for tests of
what is counted from them (statistics, rankings) without a conversation each."""

from __future__ import annotations

from datetime import datetime
from itertools import count

import sqlalchemy as sa

from bot.results import rollups
from storage.tables import dimensions, ratings, records

_numbers = count(1)


def seed_rating(
    conn: sa.Connection,
    *,
    level: int,
    at: datetime,
    department: str = "市自然资源局",
    district: str = "370202",
    item: str = "不动产登记",
    clerk: str | None = "张三",
    window: str = "A12",
    channel: str = "sms",
    evaluation_count: int = 1,
    record_id: int | None = None,
    levels: dict[str, int] | None = None,
) -> tuple[int, int]:
    """One finished rating (and, unless ``record_id`` is given, its case): (record id, rating id).
    Its day is marked for the worker, as the conversation does."""
    n = next(_numbers)
    if record_id is None:
        record_id = conn.execute(
            sa.insert(records)
            .values(
                record_no=f"SEED-{n:06d}",
                item_code=f"ITEM-{item}",
                item_name=item,
                department=department,
                district=district,
                hall="烟台市政务服务中心",
                window=window,
                clerk=clerk,
                locale="zh_Hans_CN",
                created_at=at,
            )
            .returning(records.c.id)
        ).scalar_one()
    rating_id = conn.execute(
        sa.insert(ratings)
        .values(
            conversation_id=f"seed-{n}",
            conversation_key=f"seed:{n}",
            record_id=record_id,
            evaluation_count=evaluation_count,
            channel=channel,
            provider="twilio",
            citizen_hash=f"{n:064d}",
            locale="zh_Hans_CN",
            level=level,
            status="complete",
            created_at=at,
            submitted_at=at,
            updated_at=at,
        )
        .returning(ratings.c.id)
    ).scalar_one()
    if levels:
        conn.execute(
            sa.insert(dimensions),
            [{"rating_id": rating_id, "dimension": d, "level": v} for d, v in levels.items()],
        )
    rollups.mark(conn, at)
    return record_id, rating_id
