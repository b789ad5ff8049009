"""Statistics and rankings over HTTP, on SQLite and on PostgreSQL: the figures of each group from
the rollups, ranges that mix whole months and single days, local days, department scoping, the
composite score with ties and the minimum sample, the previous rank and the bottom streak, a
published month that later exclusions leave alone, and bad input refused with reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bot.results import rollups
from storage.tables import ratings
from tests.bot.conftest import Harness
from tests.bot.results.seed import seed_rating

A = "市自然资源局"
B = "市市场监督管理局"
C = "市公安局"
D = "市人社局"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    rules = tmp_path / "results.yaml"
    rules.write_text(
        "weights: {good_rate: 60, on_time: 20, rerated_good: 10, response_rate: 10}\n"
        "min_sample: 2\nbottom: 1\ndecimals: 2\n",
        encoding="utf-8",
    )
    return {"results_file": rules}


def shanghai(month: int, day: int, hour: int = 10) -> datetime:
    """A time of 2026 in Shanghai, as UTC."""
    return datetime(2026, month, day, hour, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


def seed(h: Harness, *rows: dict[str, Any]) -> list[int]:
    with h.rt.db.begin() as conn:
        made = [seed_rating(conn, **row)[1] for row in rows]
    rollups.run_due(h.rt)
    return made


async def get(h: Harness, path: str, key: dict[str, str], **params: Any) -> Any:
    response = await h.client.get(path, params=params, headers=key)
    return response


def november(h: Harness) -> None:
    seed(
        h,
        {"level": 5, "at": shanghai(11, 10), "levels": {"attitude": 5}},
        {"level": 5, "at": shanghai(11, 20), "levels": {"attitude": 4}},
        {"level": 4, "at": shanghai(11, 20), "levels": {"attitude": 4}},
        # 23:00 on the 30th in Shanghai is 15:00 UTC: still November here
        {"level": 2, "at": shanghai(11, 30, 23), "levels": {"attitude": 1}},
        {"level": 5, "at": shanghai(12, 1)},
        {"level": 3, "at": shanghai(11, 12), "department": B, "clerk": "李四", "window": "B3"},
        {"level": 1, "at": shanghai(11, 13), "department": B, "clerk": "李四", "window": "B3"},
    )


async def test_the_figures_of_each_department(harness: Harness) -> None:
    november(harness)
    key = harness.api_key("supervisor")
    response = await get(
        harness,
        "/api/v1/stats",
        key,
        group_by="department",
        **{"from": "2026-11-01", "to": "2026-11-30"},
    )
    assert response.status_code == 200, response.text
    groups = {g["key"]: g for g in response.json()["groups"]}
    a, b = groups[A], groups[B]
    assert a["counted"] == 4 and a["levels"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 2}
    assert (a["good"], a["bad"], a["good_rate"], a["bad_rate"]) == (3, 1, 75.0, 25.0)
    assert a["average"] == 4.0 and a["dimensions"] == {"attitude": 3.5}
    assert (b["counted"], b["good_rate"], b["average"]) == (2, 50.0, 2.0)
    assert a["response_rate"] is None and a["invitations"] == 0  # no invitations were sent


async def test_a_range_of_part_months_and_whole_months(harness: Harness) -> None:
    november(harness)
    key = harness.api_key("supervisor")

    async def counted(**params: Any) -> dict[str, int]:
        response = await get(harness, "/api/v1/stats", key, **params)
        assert response.status_code == 200, response.text
        return {g["key"]: g["counted"] for g in response.json()["groups"]}

    assert await counted(group_by="department", **{"from": "2026-11-15", "to": "2026-12-01"}) == {
        A: 4  # the 20th twice, the 30th, December the 1st
    }
    assert await counted(group_by="month", **{"from": "2026-11-01", "to": "2026-12-31"}) == {
        "2026-11": 6,
        "2026-12": 1,
    }
    assert await counted(group_by="day", **{"from": "2026-11-20", "to": "2026-11-30"}) == {
        "2026-11-20": 2,
        "2026-11-30": 1,
    }
    assert await counted(group_by="clerk", **{"from": "2026-11-01", "to": "2026-11-30"}) == {
        "张三": 4,
        "李四": 2,
    }
    assert await counted(
        group_by="window", department=B, **{"from": "2026-11-01", "to": "2026-11-30"}
    ) == {"烟台市政务服务中心/B3": 2}


async def test_a_department_sees_its_own_figures_only(harness: Harness) -> None:
    november(harness)
    ours = harness.api_key("department", A)
    mine = await get(
        harness, "/api/v1/stats", ours, group_by="department", **{"from": "2026-11-01"}
    )
    assert [g["key"] for g in mine.json()["groups"]] == [A]
    theirs = await get(harness, "/api/v1/stats", ours, group_by="item", department=B)
    assert theirs.status_code == 403 and B in theirs.json()["detail"]
    platform = await get(harness, "/api/v1/stats", harness.api_key("platform"), group_by="day")
    assert platform.status_code == 403


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"group_by": "colour"}, "group_by"),
        ({"group_by": "day", "from": "2026-11-30", "to": "2026-11-01"}, "after"),
        ({"group_by": "day", "from": "2025-01-01", "to": "2026-11-01"}, "at most 400 at once"),
        ({"group_by": "day", "from": "2026-13-01"}, "from"),
    ],
)
async def test_bad_input_is_refused_with_a_reason(
    harness: Harness, params: dict[str, str], says: str
) -> None:
    response = await get(harness, "/api/v1/stats", harness.api_key("supervisor"), **params)
    assert response.status_code == 422
    assert says in response.text


def two_months(h: Harness) -> list[int]:
    rows: list[dict[str, Any]] = []
    for month, levels in (
        (10, {A: [5, 5], B: [5, 1], C: [5]}),
        (11, {A: [5, 5, 4, 2], B: [3, 1], D: [5, 4, 5, 1]}),
    ):
        for department, given in levels.items():
            rows += [
                {"level": v, "at": shanghai(month, 5), "department": department} for v in given
            ]
    return seed(h, *rows)


async def test_a_month_ranked_by_the_composite_score(harness: Harness) -> None:
    two_months(harness)
    response = await get(
        harness,
        "/api/v1/rankings",
        harness.api_key("department", A),
        by="department",
        period="2026-11",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    ranked = [(r["rank"], r["key"], r["score"]) for r in body["ranked"]]
    # Only 好评率 has a figure: no ticket fell due, no re-rating, no invitation.
    # A tie shares rank 1 (listed by key), and the next rank skips to 3.
    assert ranked == [(1, D, 75.0), (1, A, 75.0), (3, B, 50.0)]
    by_key = {r["key"]: r for r in body["ranked"]}
    assert by_key[A]["parts"] == {
        "good_rate": 75.0,
        "on_time": None,
        "rerated_good": None,
        "response_rate": None,
    }
    assert (by_key[A]["previous_rank"], by_key[A]["change"]) == (1, 0)
    assert by_key[D]["previous_rank"] is None  # not ranked in October
    assert by_key[B]["bottom_streak"] == 2 and by_key[A]["bottom_streak"] == 0
    october = await get(
        harness,
        "/api/v1/rankings",
        harness.api_key("supervisor"),
        by="department",
        period="2026-10",
    )
    assert [r["key"] for r in october.json()["too_few_ratings"]] == [C]  # one rating: apart
    quarter = await get(
        harness,
        "/api/v1/rankings",
        harness.api_key("supervisor"),
        by="department",
        quarter="2026Q4",
    )
    assert [(r["key"], r["counted"]) for r in quarter.json()["ranked"]][:1] == [(A, 6)]


async def test_a_published_month_stays_as_published(harness: Harness) -> None:
    made = two_months(harness)
    supervisor = harness.api_key("supervisor")
    published = await harness.client.post(
        "/api/v1/rankings/publish",
        json={"period": "2026-10", "by": "department"},
        headers=supervisor,
    )
    assert published.status_code == 201, published.text
    assert published.json()["published_by"] == "test supervisor"
    again = await harness.client.post(
        "/api/v1/rankings/publish",
        json={"period": "2026-10", "by": "department"},
        headers=supervisor,
    )
    assert again.status_code == 409
    open_month = await harness.client.post(
        "/api/v1/rankings/publish",
        json={"period": "2026-11", "by": "department"},
        headers=supervisor,
    )
    assert open_month.status_code == 422 and "not closed" in open_month.text
    department = await harness.client.post(
        "/api/v1/rankings/publish",
        json={"period": "2026-09", "by": "department"},
        headers=harness.api_key("department", A),
    )
    assert department.status_code == 403
    # B's bad October review is excluded afterwards (an upheld appeal): the live ranking moves…
    b_bad = made[3]
    with harness.rt.db.begin() as conn:
        conn.execute(
            sa.update(ratings)
            .where(ratings.c.id == b_bad)
            .values(excluded_at=harness.clock(), excluded_reason="test", excluded_by="test")
        )
        rollups.mark_case(conn, b_bad)
    rollups.run_due(harness.rt)
    live = await get(harness, "/api/v1/rankings", supervisor, by="department", period="2026-10")
    assert {r["key"]: r["counted"] for r in live.json()["ranked"]} == {A: 2}  # B: one left, too few
    # … what was published does not.
    frozen = await get(
        harness, "/api/v1/rankings/published", supervisor, by="department", period="2026-10"
    )
    assert frozen.status_code == 200
    assert [(r["key"], r["score"]) for r in frozen.json()["ranked"]] == [(A, 100.0), (B, 50.0)]
    missing = await get(
        harness, "/api/v1/rankings/published", supervisor, by="window", period="2026-10"
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "params",
    [{"period": "2026-13"}, {"period": "Nov 2026"}, {}, {"period": "2026-10", "year": "2026"}],
)
async def test_a_period_that_cannot_be_read_is_refused(
    harness: Harness, params: dict[str, str]
) -> None:
    response = await get(
        harness, "/api/v1/rankings", harness.api_key("supervisor"), by="department", **params
    )
    assert response.status_code == 422, response.text
