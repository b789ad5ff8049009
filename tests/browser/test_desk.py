"""The department desk in headless Chromium (Debian's, driven by Playwright) against a real
uvicorn server: a department answers a bad review from the desk on a phone's screen (the ticket
changes state, the citizen's SMS goes out); another department's ticket is 403 by its URL; a
comment holding ``<script>`` shows as text and runs nothing.

``RATEBOT_DOCS_SCREENSHOTS=docs/pages`` also saves the ticket page as ``docs/pages/desk.png``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.async_api import Page

from bot import worker
from storage.tables import tickets
from tests.bot.conftest import PHONE, Harness
from tests.bot.pages.support import PASSWORD, create_user
from tests.bot.tickets.test_queues import OURS, THEIRS, seed_ticket
from tests.bot.tickets.test_tickets_api import bad_review
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.slow

PHONE_WIDTH = 375


async def no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH, f"the page is {width}px wide on a {PHONE_WIDTH}px screen"


async def test_a_department_answers_a_bad_review_from_the_desk(
    page: Page, live: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await bad_review(live)
    create_user(live, "科员甲", "department", [OURS])
    await page.set_viewport_size({"width": PHONE_WIDTH, "height": 800})
    await sign_in(page, "科员甲", PASSWORD)
    assert page.url.endswith("/desk")
    await no_sideways_scroll(page)
    item = page.locator(".desk-item")
    assert await item.count() == 1
    assert "待核实" in await item.inner_text()

    await item.locator("a").click()
    await page.wait_for_selector("form[data-act=acknowledge]")
    await no_sideways_scroll(page)
    assert "材料被要求补交了三次" in await page.inner_text("main")
    await page.fill("form[data-act=acknowledge] textarea[name=note]", "已电话联系群众核实")
    async with page.expect_navigation():
        await page.click("form[data-act=acknowledge] button[type=submit]")
    assert await page.inner_text("[data-field=state]") == "已核实"

    await page.check("form[data-act=respond] input[value=rectified]")
    await page.fill("form[data-act=respond] textarea[name=text]", "已对窗口人员批评教育")
    async with page.expect_navigation():
        await page.click("form[data-act=respond] button[type=submit]")
    assert await page.inner_text("[data-field=state]") == "已答复"
    assert "已对窗口人员批评教育" in await page.inner_text("main")
    with live.rt.db.connect() as conn:
        assert conn.execute(sa.select(tickets.c.state)).scalar() == "responded"

    capsys.readouterr()
    await worker.run_due(live.rt)
    told = capsys.readouterr().out
    assert "[outbox sms]" in told and "已对窗口人员批评教育" in told  # the citizen is told
    assert "+86 138****1234" in told

    # the number for the callback: shown on its own answer, gone after a reload
    async with page.expect_navigation():
        await page.click("form[data-act=contact] button[type=submit]")
    assert await page.inner_text("[data-field=phone]") == PHONE
    await page.goto(page.url.rsplit("/contact", 1)[0])
    assert PHONE not in await page.content()

    if folder := os.environ.get("RATEBOT_DOCS_SCREENSHOTS"):
        await page.set_viewport_size({"width": 1100, "height": 900})
        await page.screenshot(path=str(Path(folder) / "desk.png"), full_page=True)


async def test_another_departments_ticket_is_403_by_its_url(page: Page, live: Harness) -> None:
    ticket_id = seed_ticket(live, department=OURS, due_at=live.clock() + timedelta(days=2))
    create_user(live, "科员乙", "department", [THEIRS])
    await sign_in(page, "科员乙", PASSWORD)
    response = await page.goto(f"/desk/tickets/{ticket_id}")
    assert response is not None and response.status == 403
    assert "这是其他部门的工单" in await page.inner_text("main")
    assert await page.locator("form[data-act]").count() == 0


async def test_a_comment_holding_a_script_shows_as_text(page: Page, live: Harness) -> None:
    words = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
    ticket_id = seed_ticket(live, due_at=live.clock() + timedelta(days=2), comment=words)
    create_user(live, "科员甲", "department", [OURS])
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await sign_in(page, "科员甲", PASSWORD)
    await page.goto(f"/desk/tickets/{ticket_id}")
    assert await page.inner_text("[data-field=comment]") == words
    assert await page.locator("main script, main img").count() == 0
    assert "pwned" not in await page.title() and dialogs == []
