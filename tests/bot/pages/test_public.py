"""The public results page, ``/results``, on SQLite and on PostgreSQL: only what a supervisor
published, frozen as published, in the three languages, with no personal data, cached with an
ETag (304), and an unpublished period a 404 page."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bot.results import rollups
from bot.tickets.publishing import publish_case, withdraw_case
from bot.web.audit import Actor
from storage.tables import ratings, tickets
from tests.bot.conftest import Harness
from tests.bot.pages.support import create_user, sign_in
from tests.bot.results.seed import seed_rating

A = "市自然资源局"
B = "市市场监督管理局"
HALL = "烟台市政务服务中心"
CLERK = "张三"  # the seeded cases' clerk: a person, never on the public page
CITIZEN_PHONE = "13912345678"
CITIZEN_NAME = "李四"
RESPONSE = f"已电话{CITIZEN_PHONE}回访{CITIZEN_NAME}，{CLERK}已道歉"  # the department's words
PUBLIC_TEXT = "窗口已一次性告知所需材料，并在大厅公示材料清单。"
SUPERVISOR = Actor(kind="user", id=1, name="督查科王五", role="supervisor")


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    rules = tmp_path / "results.yaml"
    rules.write_text(
        "weights: {good_rate: 80, on_time: 20}\nmin_sample: 2\nbottom: 1\ndecimals: 2\n",
        encoding="utf-8",
    )
    return {"results_file": rules}


def shanghai(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 10, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


def october(h: Harness) -> int:
    """October's ratings: A 5 5 4, B 5 1 (B's bad one commented with a phone and a name and
    rectified: its ticket's id)."""
    with h.rt.db.begin() as conn:
        for level in (5, 5, 4):
            seed_rating(conn, level=level, at=shanghai(10, 8), department=A)
        seed_rating(conn, level=5, at=shanghai(10, 9), department=B)
        record_id, bad = seed_rating(conn, level=1, at=shanghai(10, 9), department=B)
        conn.execute(
            sa.update(ratings)
            .where(ratings.c.id == bad)
            .values(comment=f"我叫{CITIZEN_NAME}，电话{CITIZEN_PHONE}，{CLERK}态度差")
        )
        ticket_id: int = conn.execute(
            sa.insert(tickets)
            .values(
                rating_id=bad,
                record_id=record_id,
                department=B,
                tier="general",
                state="closed",
                opened_at=shanghai(10, 9),
                due_at=shanghai(10, 16),
                responded_at=shanghai(10, 12),
                outcome="rectified",
                response=RESPONSE,
                closed_at=shanghai(10, 20),
                closed_reason="window",
                updated_at=shanghai(10, 20),
            )
            .returning(tickets.c.id)
        ).scalar_one()
    rollups.run_due(h.rt)
    return ticket_id


async def publish(h: Harness, period: str, *by: str) -> None:
    key = h.api_key("supervisor")
    for one in by:
        response = await h.client.post(
            "/api/v1/rankings/publish", json={"period": period, "by": one}, headers=key
        )
        assert response.status_code == 201, response.text


def publish_the_case(h: Harness, ticket_id: int) -> None:
    with h.rt.db.begin() as conn:
        publish_case(conn, SUPERVISOR, ticket_id, PUBLIC_TEXT, h.clock())


async def page(h: Harness, **params: str) -> Any:
    return await h.client.get("/results", params=params)


def table_of(html: str, by: str) -> str:
    start = html.index(f'data-by="{by}"')
    return html[start : html.index("</section>", start)]


async def test_the_page_shows_the_published_month(harness: Harness) -> None:
    ticket_id = october(harness)
    await publish(harness, "2026-10", "department", "hall", "clerk")
    publish_the_case(harness, ticket_id)
    response = await page(harness, lang="zh_Hans_CN")
    assert response.status_code == 200, response.text
    html = response.text
    assert "2026年10月" in html
    departments = table_of(html, "department")
    # A: 3 good of 3; B: 1 of 2 (no ticket fell due in the rollups' October: on time "—")
    assert departments.index(A) < departments.index(B)
    assert "100.0%" in departments and "50.0%" in departments and "—" in departments
    assert HALL in table_of(html, "hall")
    assert 'data-by="clerk"' not in html  # a clerk ranking names people: never shown
    assert PUBLIC_TEXT in html


async def test_no_personal_data_is_on_the_page(harness: Harness) -> None:
    ticket_id = october(harness)
    await publish(harness, "2026-10", "department", "hall", "window", "item", "district", "clerk")
    publish_the_case(harness, ticket_id)
    for lang in ("zh_Hans_CN", "zh_Hant_TW", "en"):
        html = (await page(harness, lang=lang)).text
        for secret in (CITIZEN_PHONE, CITIZEN_NAME, CLERK, RESPONSE, "SEED-", SUPERVISOR.name):
            assert secret not in html, (lang, secret)
        assert "13" + "*" * 4 not in html  # not even a masked number


async def test_only_published_periods_are_shown(harness: Harness) -> None:
    october(harness)
    nothing = await page(harness)
    assert nothing.status_code == 200 and "尚未发布任何结果" in nothing.text
    await publish(harness, "2026-09", "department")  # a month with no ratings: empty, published
    await publish(harness, "2026-10", "department")
    latest = await page(harness)
    assert "2026年10月 " in latest.text.split("<title>")[1].split("</title>")[0] + " "
    assert 'href="/results?period=2026-09&amp;lang=zh_Hans_CN"' in latest.text  # the other month
    assert A in (await page(harness, period="2026-10")).text
    assert A not in table_of((await page(harness, period="2026-09")).text, "department")
    for unknown in ("2026-08", "2026-13", "nonsense", "2026-10-01"):
        response = await page(harness, period=unknown)
        assert response.status_code == 404, unknown
        assert "text/html" in response.headers["content-type"]
        assert "该期次没有公开的结果" in response.text


async def test_the_page_stays_as_published_after_a_later_exclusion(harness: Harness) -> None:
    october(harness)
    await publish(harness, "2026-10", "department")
    before = table_of((await page(harness)).text, "department")
    assert "50.0%" in before  # B's 差评率
    with harness.rt.db.begin() as conn:  # B's bad review is excluded afterwards (appeal upheld)
        bad = conn.execute(
            sa.select(ratings.c.id).where(ratings.c.level == 1, ratings.c.comment.is_not(None))
        ).scalar_one()
        conn.execute(
            sa.update(ratings)
            .where(ratings.c.id == bad)
            .values(excluded_at=harness.clock(), excluded_reason="test", excluded_by="test")
        )
        rollups.mark_case(conn, bad)
    rollups.run_due(harness.rt)
    live = await harness.client.get(
        "/api/v1/rankings",
        params={"by": "department", "period": "2026-10"},
        headers=harness.api_key("supervisor"),
    )
    assert B not in {r["key"] for r in live.json()["ranked"]}  # the live ranking moved…
    await publish(harness, "2026-09", "department")  # a publication: the page is made again
    after = table_of((await page(harness, period="2026-10")).text, "department")
    assert after == before  # … the published page did not


async def test_the_three_languages(harness: Harness) -> None:
    october(harness)
    await publish(harness, "2026-10", "department", "hall")
    english = await page(harness, lang="en")
    assert '<html lang="en">' in english.text
    assert "Public results of service ratings" in english.text and "October 2026" in english.text
    assert "Good reviews" in english.text and "部门排名" not in english.text
    traditional = await harness.client.get("/results", headers={"Accept-Language": "zh-TW"})
    assert '<html lang="zh-Hant">' in traditional.text
    assert "好差評結果公開" in traditional.text and "部門排名" in traditional.text
    simplified = await harness.client.get("/results", headers={"Accept-Language": "zh-CN,en"})
    assert "好差评结果公开" in simplified.text and "部门排名" in simplified.text
    remembered = await harness.client.get("/results", headers={"Cookie": "ratebot_lang=en"})
    assert "Service halls" in remembered.text
    assert 'href="/results?period=2026-10&amp;lang=en"' in english.text
    assert "set-cookie" not in english.headers


async def test_the_kept_page_carries_its_language_in_its_links(harness: Harness) -> None:
    # Regression guard: the page sets no cookie, so its links must say the language; a page
    # first made for a visitor whose cookie chose English serves one who chose ?lang=en.
    october(harness)
    await publish(harness, "2026-09", "department")
    await publish(harness, "2026-10", "department")
    remembered = await harness.client.get("/results", headers={"Cookie": "ratebot_lang=en"})
    chosen = await page(harness, lang="en")
    assert chosen.content == remembered.content
    assert 'href="/results?period=2026-09&amp;lang=en"' in chosen.text


async def test_cached_with_an_etag_and_made_again_when_something_is_published(
    harness: Harness,
) -> None:
    ticket_id = october(harness)
    await publish(harness, "2026-10", "department")
    first = await page(harness)
    assert first.headers["cache-control"] == "public, max-age=60"
    assert "set-cookie" not in first.headers
    assert "default-src 'none'" in first.headers["content-security-policy"]
    etag = first.headers["etag"]
    again = await harness.client.get("/results", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert (await harness.client.get("/results", headers={"If-None-Match": '"x"'})).status_code == (
        200
    )
    assert harness.app is not None
    cache = harness.app.state.results_page
    kept = cache.pages[("2026-10", "zh_Hans_CN")]
    assert (await page(harness)).content == kept.body  # served from the cache

    publish_the_case(harness, ticket_id)  # published: the page is made again, a new ETag
    published = await harness.client.get("/results", headers={"If-None-Match": etag})
    assert published.status_code == 200 and PUBLIC_TEXT in published.text
    assert published.headers["etag"] != etag
    with harness.rt.db.begin() as conn:
        withdraw_case(conn, SUPERVISOR, ticket_id, harness.clock())
    withdrawn = await page(harness)
    assert PUBLIC_TEXT not in withdrawn.text and "本期暂无公开的整改案例" in withdrawn.text


async def test_a_signed_in_supervisor_sees_the_same_public_page(harness: Harness) -> None:
    # Regression guard: the kept page is everybody's; it must never carry who asked first.
    october(harness)
    await publish(harness, "2026-10", "department")
    create_user(harness, "督查科赵六", "supervisor")
    await sign_in(harness.client, "督查科赵六")
    signed = await page(harness)
    assert signed.status_code == 200
    assert "督查科赵六" not in signed.text and "csrf_token" not in signed.text
    harness.client.cookies.clear()
    assert (await page(harness)).content == signed.content
