"""``GET /``: a page naming the service and its version, linking the API's reference, the health
check, the sign-in and staff pages and the public results, in each language; JSON for a JSON
client."""

from __future__ import annotations

import re

import pytest

from bot import version
from bot.pages.home import LINKS
from tests.bot.conftest import Harness


@pytest.mark.parametrize(
    ("lang", "words"),
    [("en", "API reference"), ("zh_Hans_CN", "接口文档"), ("zh_Hant_TW", "介面文件")],
)
async def test_the_front_page_names_the_service_and_links_the_way_on(
    harness: Harness, lang: str, words: str
) -> None:
    response = await harness.client.get("/", params={"lang": lang})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in response.headers
    page = response.text
    assert words in page and "home." not in page  # translated, no bare id
    assert re.search(rf'data-field="version">ratebot \S+ {re.escape(version())}<', page), page
    hrefs = set(re.findall(r'href="([^"?]+)"', page))
    assert {"/docs", "/healthz", "/login", "/desk", "/review", "/dashboard", "/results"} <= hrefs
    for href in ("/docs", "/healthz", "/login", "/results"):  # each answers
        assert (await harness.client.get(href)).status_code == 200, href


async def test_a_json_client_gets_the_same_as_json(harness: Harness) -> None:
    response = await harness.client.get("/", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json() == {"service": "ratebot", "version": version(), "links": LINKS}
    browser = await harness.client.get("/", headers={"Accept": "text/html,application/json;q=0.9"})
    assert browser.headers["content-type"].startswith("text/html")
