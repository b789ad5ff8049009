"""The browser tests' shared parts: Debian's Chromium (no browser download), the app served by
a real uvicorn on 127.0.0.1, a Playwright page on it, and signing in through the form."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import Page, async_playwright

from bot.app import create_app
from storage.db import upgrade
from tests.bot.conftest import FakeClock, Harness, make_settings
from tests.conftest import require_service

BROWSER_TIMEOUT = 60  # seconds for Chromium to start, load and print the page
PHONE_SCREEN = {"width": 412, "height": 915}


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (``apt-get install chromium``); skips locally, fails on CI, if absent."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")

    def check() -> None:
        if path is None:
            raise FileNotFoundError("no chromium on PATH")
        subprocess.run([path, "--version"], check=True, capture_output=True, timeout=30)

    require_service(
        "Chromium",
        check,
        where="PATH",
        hint="install it with `apt-get install -y --no-install-recommends chromium`",
    )
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Harness]:
    """The app served by uvicorn on 127.0.0.1 (SQLite), driven over real HTTP. Its public URL
    stays the https one Twilio's signatures are made for: its cookies are Secure, which
    Chromium keeps for 127.0.0.1 as it would for https."""
    database_url = f"sqlite:///{tmp_path}/ratebot.db"
    upgrade(database_url)
    clock = FakeClock()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = create_app(make_settings(database_url), clock=clock)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield Harness(client=client, rt=app.state.runtime, clock=clock, app=app)
    server.should_exit = True
    await serving


@pytest.fixture
async def page(chromium: str, live: Harness) -> AsyncIterator[Page]:
    """A fresh headless Chromium tab (a phone's screen) whose relative URLs go to ``live``."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        context = await browser.new_context(
            base_url=str(live.client.base_url), viewport=PHONE_SCREEN, locale="zh-CN"
        )
        context.set_default_timeout(BROWSER_TIMEOUT * 1000)
        tab = await context.new_page()
        try:
            yield tab
        finally:
            await context.close()
            await browser.close()


async def sign_in(page: Page, name: str, password: str, *, next_path: str = "") -> None:
    """Fill in and send the sign-in form as a person would; waits for the page it leads to."""
    await page.goto(f"/login?next={next_path}" if next_path else "/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    async with page.expect_navigation():
        await page.click("form.stack button[type=submit]")
