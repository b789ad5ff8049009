"""The public results page in a real browser (headless Chromium through Playwright, a phone's
screen): a published month with its ranking and its rectified case, no personal data, nothing
wider than the screen, and the language switch."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from playwright.async_api import ConsoleMessage, Page

from bot.results import rollups
from storage.tables import ratings
from tests.bot.conftest import Harness
from tests.bot.pages.test_public import (
    CITIZEN_NAME,
    CITIZEN_PHONE,
    CLERK,
    PUBLIC_TEXT,
    RESPONSE,
    A,
    B,
    october,
    publish,
    publish_the_case,
    shanghai,
)
from tests.bot.results.seed import seed_rating

pytestmark = pytest.mark.slow

MIN_SAMPLE = 30  # the shipped results file's: a month with fewer ratings is not ranked


def a_ranked_october(h: Harness) -> int:
    """October with enough ratings for A and B to be ranked (A all good, B one bad of 31): the
    bad review's ticket, rectified."""
    ticket_id = october(h)
    with h.rt.db.begin() as conn:
        for department in (A, B):
            for day in range(MIN_SAMPLE):
                seed_rating(conn, level=5, at=shanghai(10, 1 + day), department=department)
    rollups.run_due(h.rt)
    return ticket_id


async def test_the_public_page_shows_a_published_month_and_no_personal_data(
    page: Page, live: Harness
) -> None:
    blocked: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            blocked.append(message.text)

    page.on("console", watch)
    ticket_id = a_ranked_october(live)
    await publish(live, "2026-10", "department", "hall", "clerk")
    publish_the_case(live, ticket_id)

    response = await page.goto("/results")
    assert response is not None and response.status == 200
    assert "2026年10月" in (await page.text_content("h1") or "")
    names = await page.eval_on_selector_all(
        "section[data-by=department] tbody th", "cells => cells.map(c => c.textContent.trim())"
    )
    assert names == [A, B]
    assert await page.locator("section[data-by=hall] tbody tr").count() == 1
    assert await page.locator("section[data-by=clerk]").count() == 0
    assert await page.text_content(".results-case") == PUBLIC_TEXT
    shown = await page.inner_text("body")
    for secret in (CITIZEN_PHONE, CITIZEN_NAME, CLERK, RESPONSE, "SEED-"):
        assert secret not in shown
    with live.rt.db.connect() as conn:  # the comment holding them is in the database, though
        comments = conn.execute(sa.select(ratings.c.comment)).scalars().all()
    assert any(comment and CITIZEN_PHONE in comment for comment in comments)

    # readable on a phone: nothing wider than the screen, the stylesheet applied
    width = await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert width is True
    assert await page.eval_on_selector("main", "m => getComputedStyle(m).maxWidth") != "none"

    async with page.expect_navigation():
        await page.click("nav.langs a[hreflang=en]")
    assert "Public results of service ratings" in (await page.text_content("h1") or "")
    assert await page.get_attribute("html", "lang") == "en"
    assert blocked == []
