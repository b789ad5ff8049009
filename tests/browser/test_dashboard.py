"""The supervisor dashboard in headless Chromium: a supervisor signs in, lands on /dashboard, the
charts are inline SVG drawn under the page's strict CSP (the nonce'd stylesheet applies: the
bottom department's bar is red, and no CSP violation is reported), a bar for each ranked
department, and the headline numbers are the API's.

``RATEBOT_DOCS_SCREENSHOTS=docs/pages`` also saves the screenshot as ``docs/pages/dashboard.png``
(the README's picture)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from playwright.async_api import Page

from bot.results import rollups
from storage.tables import tickets
from tests.bot.conftest import Harness
from tests.bot.pages.support import PASSWORD, create_user
from tests.bot.results.seed import seed_rating
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.slow

# English names: the screenshot is taken in English (CI's Chromium may lack CJK fonts).
DEPARTMENTS = {  # name: the levels of its November ratings (the default minimum sample is 30)
    "Natural Resources": [5] * 28 + [4] * 6 + [2] * 1,
    "Market Regulation": [5] * 20 + [4] * 8 + [3] * 3 + [1] * 2,
    "Public Security": [5] * 22 + [4] * 10 + [2] * 2,
    "Human Resources": [5] * 12 + [4] * 8 + [3] * 5 + [2] * 4 + [1] * 3,
    "Taxation": [5] * 25 + [4] * 7,
}
SUPERVISOR = "supervisor.wang"
RED = "rgb(197, 48, 48)"  # charts.MARKED_COLOUR


def seed(h: Harness) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    with h.rt.db.begin() as conn:
        for n, (department, levels) in enumerate(DEPARTMENTS.items()):
            for i, level in enumerate(levels):
                at = datetime(2026, 11, 1 + (i * 7 + n) % 26, 10, tzinfo=zone).astimezone(UTC)
                record_id, rating_id = seed_rating(
                    conn, level=level, at=at, department=department, window=f"W{n + 1}"
                )
                if level <= 2:
                    conn.execute(
                        sa.insert(tickets).values(
                            rating_id=rating_id,
                            record_id=record_id,
                            department=department,
                            tier="general",
                            state="open" if i % 2 else "responded",
                            opened_at=at,
                            due_at=at + timedelta(days=7),
                            paused_seconds=0,
                        )
                    )
    rollups.run_due(h.rt)


async def api(h: Harness, path: str, **params: str) -> dict:  # type: ignore[type-arg]
    key = h.api_key("supervisor")
    response = await h.client.get(path, params=params, headers=key)
    assert response.status_code == 200, response.text
    result: dict = response.json()  # type: ignore[type-arg]
    return result


async def test_a_supervisor_sees_the_charts_and_the_apis_figures(
    page: Page, live: Harness, tmp_path: Path
) -> None:
    seed(live)
    create_user(live, SUPERVISOR, "supervisor")
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    await sign_in(page, SUPERVISOR, PASSWORD)
    assert page.url.endswith("/dashboard")  # a supervisor's home
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto("/dashboard?period=2026-11&lang=en")

    ranked = (await api(live, "/api/v1/rankings", by="department", period="2026-11"))["ranked"]
    assert len(ranked) == len(DEPARTMENTS)
    bars = page.locator("#chart-departments svg g.bar")
    assert await bars.count() == len(ranked)
    for n in range(len(ranked)):
        box = await bars.nth(n).locator("rect").bounding_box()
        assert box is not None and box["width"] > 10 and box["height"] > 5  # drawn, not empty
    bottom = page.locator("#chart-departments svg g.bar.marked rect")
    assert await bottom.count() == 3  # the default bottom N
    fill = await bottom.first.evaluate("rect => getComputedStyle(rect).fill")
    assert fill == RED  # the chart's own stylesheet applied, under the nonce
    for chart in ("chart-days", "chart-levels", "chart-states", "chart-overdue"):
        assert await page.locator(f"#{chart} svg[role=img]").count() >= 1

    total = (
        await api(
            live, "/api/v1/stats", group_by="total", **{"from": "2026-11-01", "to": "2026-11-30"}
        )
    )["groups"][0]
    cell = page.locator("tr[data-figure=counted] td.value")
    assert await cell.inner_text() == str(total["counted"])
    good = await page.locator("tr[data-figure=good_rate] td.value").inner_text()
    assert good == f"{total['good_rate']:.2f}%"
    loop = await api(live, "/api/v1/stats/tickets", **{"from": "2026-11-01", "to": "2026-11-30"})
    overdue = await page.locator("tr[data-figure=overdue] td.value").inner_text()
    assert overdue == str(loop["overdue_now"]["total"])
    assert not violations

    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    if folder := os.environ.get("RATEBOT_DOCS_SCREENSHOTS"):
        await page.screenshot(path=str(Path(folder) / "dashboard.png"), full_page=True)
