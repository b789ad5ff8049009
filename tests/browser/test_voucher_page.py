"""The citizen's voucher page in a real headless browser: Debian's Chromium, started by the test,
loads ``/v/{code}`` from a real uvicorn server and must show the code, the hall, the minutes and
the QR code."""

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

from bot.app import create_app
from storage.db import upgrade
from tests.bot.conftest import FakeClock, Harness, make_settings
from tests.bot.parking_support import HALL_NAME, earn_voucher, put_hall
from tests.conftest import require_service

BROWSER_TIMEOUT = 60  # seconds for Chromium to start, load and print the page


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
    """The app served by uvicorn on 127.0.0.1 (SQLite), driven over real HTTP."""
    database_url = f"sqlite:///{tmp_path}/ratebot.db"
    upgrade(database_url)
    clock = FakeClock()
    app = create_app(make_settings(database_url), clock=clock)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield Harness(client=client, rt=app.state.runtime, clock=clock)
    server.should_exit = True
    await serving


async def browse(chromium: str, url: str, *args: str, profile: Path) -> str:
    """Chromium's ``--dump-dom`` of ``url`` (the DOM after the page loaded), as text."""
    process = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=412,915",  # a phone's screen
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=BROWSER_TIMEOUT)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_the_voucher_page_renders_in_headless_chromium(
    chromium: str, live: Harness, tmp_path: Path
) -> None:
    await put_hall(live, free_minutes=120, valid_hours=48)
    code = await earn_voucher(live, "370600-2026-000123")
    url = f"{live.client.base_url}/v/{code}?lang=zh-CN"
    dom = await browse(chromium, url, "--dump-dom", profile=tmp_path / "profile")
    assert f"{code[:4]}-{code[4:8]}-{code[8:]}" in dom
    assert HALL_NAME in dom and "免费停车120分钟" in dom and "2026-11-29 10:00" in dom
    assert 'class="qr"' in dom and "<svg" in dom and "<path" in dom  # the QR code's modules

    # without ?lang the browser's own language (headless Chromium asks for en-US)
    english = await browse(
        chromium, f"{live.client.base_url}/v/{code}", "--dump-dom", profile=tmp_path / "en"
    )
    assert "120 minutes of free parking" in english and 'lang="en"' in english

    shot = tmp_path / "voucher.png"
    await browse(chromium, url, f"--screenshot={shot}", profile=tmp_path / "shot")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
