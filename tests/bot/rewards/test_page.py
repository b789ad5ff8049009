"""``GET /v/{code}``: the citizen's voucher page over HTTP — its content per state and language,
no personal data, escaping, and unknown codes. (It renders in a real browser in
tests/browser/.)"""

from __future__ import annotations

import logging

import pytest

from tests.bot.conftest import Harness
from tests.bot.parking_support import (
    HALL_NAME,
    earn_voucher,
    exit_body,
    parking_key,
    put_hall,
    recorded_waits,
    unknown_code,
)

RECORD = "370600-2026-000123"


async def test_an_issued_voucher_shows_hall_minutes_code_expiry_and_qr(harness: Harness) -> None:
    await put_hall(harness, free_minutes=120, valid_hours=48)
    code = await earn_voucher(harness, RECORD)
    response = await harness.client.get(f"/v/{code}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    page = response.text
    assert f"{code[:4]}-{code[4:8]}-{code[8:]}" in page and HALL_NAME in page
    assert "免费停车120分钟" in page and "有效期至2026-11-29 10:00" in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" viewBox=' in page and 'class="qr"' in page
    for personal in ("1234", RECORD, "+86"):
        assert personal not in page


@pytest.mark.parametrize(
    ("query", "headers", "expected"),
    [
        ("", {"Accept-Language": "en-GB,en;q=0.9"}, "120 minutes of free parking"),
        ("?lang=zh-TW", {"Accept-Language": "en"}, "免費停車120分鐘"),
        ("", {}, "免费停车120分钟"),  # the deployment's default
    ],
)
async def test_the_page_speaks_the_citizen_s_language(
    harness: Harness, query: str, headers: dict[str, str], expected: str
) -> None:
    await put_hall(harness, free_minutes=120)
    code = await earn_voucher(harness, RECORD)
    response = await harness.client.get(f"/v/{code}{query}", headers=headers)
    assert expected in response.text


async def test_a_redeemed_voucher_says_when_and_shows_no_code_to_scan(harness: Harness) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    await harness.client.post(
        f"/api/v1/parking/vouchers/{code}/redeem", json=exit_body(), headers=parking_key(harness)
    )
    page = (await harness.client.get(f"/v/{code}?lang=en")).text
    assert 'data-state="redeemed"' in page and "Used on 2026-11-27 10:00" in page
    assert "<svg" not in page


async def test_an_expired_voucher_says_so(harness: Harness) -> None:
    await put_hall(harness, valid_hours=24)
    code = await earn_voucher(harness, RECORD)
    harness.clock.advance(hours=24)
    page = (await harness.client.get(f"/v/{code}")).text
    assert 'data-state="expired"' in page and "已过期" in page and "<svg" not in page


@pytest.mark.parametrize("typed", ["AAAAAAAAAAA", "nonsense", "2222-2222-22Z"])
async def test_unknown_or_malformed_codes_get_a_localized_404_page(
    harness: Harness, typed: str
) -> None:
    response = await harness.client.get(f"/v/{typed}", headers={"Accept-Language": "en"})
    assert response.status_code == 404
    assert "We could not find this parking voucher" in response.text


async def test_an_address_guessing_codes_is_slowed_down_and_logged_masked(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    waits = recorded_waits(harness)
    guesses = [unknown_code() for _ in range(7)]
    with caplog.at_level(logging.WARNING, logger="ratebot.parking"):
        for guess in guesses:
            assert (await harness.client.get(f"/v/{guess}")).status_code == 404
    assert waits == [0.25, 0.5]  # five misses free, then doubling
    assert (await harness.client.get(f"/v/{code}")).status_code == 200  # slowed, not refused
    assert waits == [0.25, 0.5, 1.0]
    warnings = [r.getMessage() for r in caplog.records if r.name == "ratebot.parking"]
    assert len(warnings) == 3 and all("address 127****.0.1" in w for w in warnings)
    assert not any(guess in w for w in warnings for guess in guesses)


async def test_a_hall_name_is_escaped(harness: Harness) -> None:
    await put_hall(harness, name="<script>alert(1)</script>")
    await harness.report(RECORD, hall="YT-001")
    await harness.reply_text("3 3 3 3")
    code = (await harness.reply_text("0")).rsplit("/v/", 1)[1].strip()
    page = (await harness.client.get(f"/v/{code}")).text
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
