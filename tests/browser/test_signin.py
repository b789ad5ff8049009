"""Signing in in a real browser (headless Chromium through Playwright): each role lands on its
home and sees its name and its pages, signs out; a forged POST is refused; five wrong
passwords lock the account."""

from __future__ import annotations

import pytest
from playwright.async_api import ConsoleMessage, Page

from locales import gettext
from tests.bot.conftest import Harness
from tests.bot.pages.support import PASSWORD, create_user
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.slow

ROLES = [  # role, departments, home, the staff pages its nav shows
    ("department", ["市税务局"], "/desk", ["/desk"]),
    ("reviewer", [], "/review", ["/review"]),
    ("supervisor", [], "/dashboard", ["/desk", "/review", "/dashboard"]),
    ("admin", [], "/dashboard", ["/desk", "/review", "/dashboard"]),
]


def zh(message_id: str, **params: object) -> str:
    return gettext("zh_Hans_CN", message_id, **params)


async def test_each_role_signs_in_lands_on_its_home_and_signs_out(
    page: Page, live: Harness
) -> None:
    blocked: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            blocked.append(message.text)

    page.on("console", watch)
    base = str(live.client.base_url)
    for role, departments, home, pages in ROLES:
        name = f"{role}.user"
        create_user(live, name, role, departments)
        await sign_in(page, name, PASSWORD)
        assert page.url == base + home, role

        await page.goto("/account")
        assert await page.text_content("header .who a.me") == name
        assert await page.text_content("[data-field=name]") == name
        assert await page.text_content("[data-field=role]") == zh(f"page.role.{role}")
        if departments:
            assert await page.text_content("[data-field=departments]") == "市税务局"
        shown = await page.eval_on_selector_all(
            "nav.pages a", "links => links.map(a => a.getAttribute('href'))"
        )
        assert shown == [*pages, "/results"], role
        # the stylesheet was served and applied (no CSP refusal)
        assert await page.eval_on_selector("main", "m => getComputedStyle(m).maxWidth") != "none"

        async with page.expect_navigation():
            await page.click("header .who button[type=submit]")
        assert page.url == base + "/login"
        await page.goto("/account")
        assert page.url.startswith(base + "/login?next=")  # signed out on the server too
    assert not blocked


async def test_a_forged_post_without_the_token_is_refused(page: Page, live: Harness) -> None:
    create_user(live, "li.na", "admin")
    await sign_in(page, "li.na", PASSWORD, next_path="/account")
    assert page.url.endswith("/account")
    # the sign-out form, its token taken out (as a forged form from elsewhere would lack it)
    await page.eval_on_selector("main form input[name=csrf_token]", "input => input.remove()")
    async with page.expect_navigation():
        await page.click("main form button[type=submit]")
    assert await page.text_content("section.error h1") == "403"
    assert zh("page.error.csrf") in (await page.text_content("section.error") or "")

    await page.goto("/account")  # refused: still signed in
    assert await page.text_content("[data-field=name]") == "li.na"


async def test_five_wrong_passwords_lock_the_account(page: Page, live: Harness) -> None:
    create_user(live, "li.na", "admin")
    for attempt in range(5):
        await sign_in(page, "li.na", f"wrong password {attempt}")
        alert = await page.text_content("p.problem")
        expected = zh("page.login.locked", minutes=15) if attempt == 4 else zh("page.login.wrong")
        assert alert == expected, attempt
    await sign_in(page, "li.na", PASSWORD)  # the right one, too late
    assert await page.text_content("p.problem") == zh("page.login.locked", minutes=15)
    await page.goto("/account")
    assert "/login" in page.url
