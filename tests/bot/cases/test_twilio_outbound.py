"""Invitations go out through the real twilio client, to a fake Twilio API on 127.0.0.1."""

from __future__ import annotations

import httpx

from bot.app import create_app
from tests.bot.conftest import PHONE, PUBLIC_URL, FakeClock, Harness, make_settings
from tests.fakes.twilio_api import FakeTwilio


async def test_invitation_is_sent_through_twilio(
    twilio_harness: Harness, fake_twilio: FakeTwilio
) -> None:
    response = await twilio_harness.report()
    assert response.status_code == 201
    [sent] = fake_twilio.messages
    assert sent["To"] == PHONE and sent["From"] == "+10005550100"
    assert "不动产登记" in sent["Body"] and "回复TD退订" in sent["Body"]
    assert sent["StatusCallback"] == PUBLIC_URL + "/channels/sms/status"
    assert fake_twilio.requests[0].account_sid == fake_twilio.account_sid
    message = response.json()["invitations"][0]["messages"][0]
    assert (
        message["provider"] == "twilio"
        and message["status"] == "queued"
        and message["provider_id"].startswith("SM")
    )


async def test_delivery_report_updates_the_status(
    twilio_harness: Harness, fake_twilio: FakeTwilio
) -> None:
    response = await twilio_harness.report()
    sid = response.json()["invitations"][0]["messages"][0]["provider_id"]
    for state in ("sent", "delivered", "sent"):  # a late "sent" must not undo "delivered"
        form = {"MessageSid": sid, "MessageStatus": state, "AccountSid": fake_twilio.account_sid}
        report = await twilio_harness.client.post(
            "/channels/sms/status",
            data=form,
            headers=twilio_harness.signed("/channels/sms/status", form),
        )
        assert report.status_code == 204
    lookup = await twilio_harness.client.get(
        "/api/v1/service-records/370200-2026-0001", headers=twilio_harness.api_key()
    )
    assert lookup.json()["invitations"][0]["messages"][0]["status"] == "delivered"


async def test_unsigned_delivery_report_is_403(twilio_harness: Harness) -> None:
    response = await twilio_harness.client.post(
        "/channels/sms/status", data={"MessageSid": "SM1", "MessageStatus": "failed"}
    )
    assert response.status_code == 403


async def test_twilio_refusal_is_recorded_as_failed(
    twilio_harness: Harness, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.refuse[PHONE] = (21610, "Attempt to send to unsubscribed recipient")
    response = await twilio_harness.report()
    assert response.status_code == 201
    invitation = response.json()["invitations"][0]
    assert invitation["status"] == "failed"
    assert "21610" in invitation["messages"][0]["error"]


async def test_unreachable_twilio_is_recorded_as_failed(
    database_url: str, clock: FakeClock
) -> None:
    settings = make_settings(
        database_url,
        twilio_account_sid="AC" + "1" * 32,
        twilio_from="+10005550100",
        twilio_api_url="http://127.0.0.1:9",  # nothing listens on the discard port
    )
    app = create_app(settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as client,
    ):
        h = Harness(client=client, rt=app.state.runtime, clock=clock)
        response = await h.report()
    assert response.status_code == 201
    assert response.json()["invitations"][0]["status"] == "failed"
