"""An invitation that does not go out says why: held by the quiet hours (``quiet_hours``, in the
record and on the console, until it is sent), or suppressed (cooldown, opted out, no contact).
Regression: a case reported at night read ``scheduled`` with no reason and the console printed
nothing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot import worker
from tests.bot.conftest import Harness


async def invitation(h: Harness, record_no: str = "370200-2026-0001") -> dict[str, Any]:
    response = await h.client.get(f"/api/v1/service-records/{record_no}", headers=h.api_key())
    invitations: list[dict[str, Any]] = response.json()["invitations"]
    return invitations[0]


async def test_held_by_the_quiet_hours_says_so_until_it_is_sent(
    harness_quiet: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness_quiet
    h.clock.now = h.clock.now.replace(hour=14)  # 22:00 in Shanghai
    with caplog.at_level(logging.INFO, logger="ratebot.invitations"):
        reported = (await h.report()).json()["invitations"][0]
    assert (reported["status"], reported["reason"]) == ("scheduled", "quiet_hours")
    assert (
        "invitation of case 370200-2026-0001 held: quiet_hours (RATEBOT_QUIET_HOURS=21:00-08:00) "
        "until 2026-11-28T08:00+08:00"
    ) in caplog.messages
    h.clock.advance(hours=10)
    await worker.run_due(h.rt)
    sent = await invitation(h)
    assert (sent["status"], sent["reason"]) == ("sent", None)


async def test_a_suppressed_invitation_is_logged_with_its_reason(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.report("370200-2026-0001")
    with caplog.at_level(logging.INFO, logger="ratebot.invitations"):
        second = (await harness.report("370200-2026-0002")).json()["invitations"][0]
        await harness.report("370200-2026-0003", phone=None)
    assert (second["status"], second["reason"]) == ("suppressed", "cooldown")
    assert "invitation of case 370200-2026-0002 suppressed: cooldown" in caplog.messages
    assert "invitation of case 370200-2026-0003 suppressed: no_contact" in caplog.messages
    assert not any("+86" in message or "1381234" in message for message in caplog.messages)
