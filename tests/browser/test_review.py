"""The reviewers' queue in headless Chromium against a real uvicorn server: a reviewer upholds a
department's appeal and the rating leaves the figures (``GET /api/v1/stats`` before and after).

``RATEBOT_DOCS_SCREENSHOTS=docs/pages`` also saves the queue as ``docs/pages/review.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.async_api import Page

from bot.results import rollups
from bot.tickets import acts
from bot.web.audit import Actor
from storage.tables import appeals, tickets
from tests.bot.conftest import Harness
from tests.bot.pages.support import PASSWORD, create_user
from tests.bot.tickets.test_queues import OURS
from tests.bot.tickets.test_tickets_api import bad_review
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.slow

NOVEMBER = {"group_by": "department", "from": "2026-11-01", "to": "2026-11-30"}
DEPARTMENT = Actor(
    kind="user", id=None, name="科员甲", role="department", departments=frozenset({OURS})
)


async def bad_reviews_counted(live: Harness) -> int:
    rollups.run_due(live.rt)
    response = await live.client.get(
        "/api/v1/stats", params=NOVEMBER, headers=live.api_key("supervisor")
    )
    assert response.status_code == 200, response.text
    return int(next(g["bad"] for g in response.json()["groups"] if g["key"] == OURS))


async def test_a_reviewer_upholds_an_appeal_and_the_rating_leaves_the_figures(
    page: Page, live: Harness
) -> None:
    await bad_review(live)
    with live.rt.db.begin() as conn:  # the department appeals (its desk form is tested apart)
        ticket_id = conn.execute(sa.select(tickets.c.id)).scalar_one()
        acts.appeal(
            conn, DEPARTMENT, ticket_id, "malicious", "该市民当日并未到窗口办事", live.clock()
        )
    assert await bad_reviews_counted(live) == 1

    create_user(live, "审核员", "reviewer")
    await sign_in(page, "审核员", PASSWORD)
    assert page.url.endswith("/review")
    appeal = page.locator("article[data-appeal]")
    assert await appeal.count() == 1
    text = await appeal.inner_text()
    assert "该市民当日并未到窗口办事" in text and "恶意差评" in text
    assert "材料被要求补交了三次" in text

    if folder := os.environ.get("RATEBOT_DOCS_SCREENSHOTS"):
        await page.set_viewport_size({"width": 1100, "height": 900})
        await page.screenshot(path=str(Path(folder) / "review.png"), full_page=True)

    await appeal.locator("textarea[name=note]").fill("经核查属恶意差评")
    async with page.expect_navigation():
        await appeal.locator("button[value=uphold]").click()
    assert "申诉成立" in await page.inner_text("[role=status]")
    assert await page.locator("article[data-appeal]").count() == 0
    with live.rt.db.connect() as conn:
        assert conn.execute(sa.select(appeals.c.state)).scalar() == "upheld"
    assert await bad_reviews_counted(live) == 0
