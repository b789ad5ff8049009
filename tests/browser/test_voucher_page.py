"""The citizen's voucher page in a real headless browser: Debian's Chromium, started by the test,
loads ``/v/{code}`` from a real uvicorn server and must show the code, the hall, the minutes and
the QR code."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.bot.conftest import Harness
from tests.bot.parking_support import HALL_NAME, earn_voucher, put_hall
from tests.browser.conftest import BROWSER_TIMEOUT


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
