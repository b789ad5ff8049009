"""Bad input gets a clear error and loses nothing — never a 500 for what a client can send."""

from __future__ import annotations

import pytest

from tests.bot.conftest import PHONE, Harness


async def test_missing_signature_is_403(harness: Harness) -> None:
    form = {"From": PHONE, "Body": "5", "MessageSid": "SM1"}
    response = await harness.client.post("/channels/sms", data=form)
    assert response.status_code == 403 and "Signature" in response.json()["detail"]


async def test_wrong_signature_is_403(harness: Harness) -> None:
    form = {"From": PHONE, "Body": "5", "MessageSid": "SM1"}
    headers = harness.signed("/channels/sms", {**form, "Body": "1"})  # signed for other content
    response = await harness.client.post("/channels/sms", data=form, headers=headers)
    assert response.status_code == 403


async def test_signature_for_another_url_is_403(harness: Harness) -> None:
    form = {"From": PHONE, "Body": "5", "MessageSid": "SM1"}
    response = await harness.client.post(
        "/channels/sms", data=form, headers=harness.signed("/channels/voice", form)
    )
    assert response.status_code == 403


async def test_body_over_64_kib_is_413(harness: Harness) -> None:
    form = {"From": PHONE, "Body": "x" * (70 * 1024), "MessageSid": "SM1"}
    response = await harness.client.post(
        "/channels/sms", data=form, headers=harness.signed("/channels/sms", form)
    )
    assert response.status_code == 413 and "larger" in response.json()["detail"]


async def test_chunked_body_over_64_kib_is_413(harness: Harness) -> None:
    async def chunks():
        for _ in range(80):
            yield b"Body=" + b"x" * 1024

    response = await harness.client.post(
        "/channels/sms",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


async def test_json_body_to_the_sms_webhook_is_400(harness: Harness) -> None:
    response = await harness.client.post("/channels/sms", json={"From": PHONE})
    assert response.status_code == 400 and "x-www-form-urlencoded" in response.json()["detail"]


async def test_empty_body_is_403_not_500(harness: Harness) -> None:
    response = await harness.client.post(
        "/channels/sms", content=b"", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 403


async def test_signed_form_missing_fields_is_400(harness: Harness) -> None:
    form = {"Body": "5"}
    response = await harness.client.post(
        "/channels/sms", data=form, headers=harness.signed("/channels/sms", form)
    )
    assert response.status_code == 400 and "From" in response.json()["detail"]


async def test_garbage_form_bytes_are_refused_not_500(harness: Harness) -> None:
    response = await harness.client.post(
        "/channels/sms",
        content=b"%ff%fe=\x00\x01&&==",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (400, 403)


async def test_empty_sms_body_is_an_unusable_answer(harness: Harness) -> None:
    await harness.report()
    assert "5 非常满意" in await harness.reply_text("")


async def test_sms_webhook_is_404_when_not_configured(database_url: str, clock) -> None:
    import httpx

    from bot.app import create_app
    from tests.bot.conftest import make_settings

    app = create_app(make_settings(database_url, twilio_auth_token=None), clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.post("/channels/sms", data={"From": PHONE})
    assert response.status_code == 404 and "RATEBOT_TWILIO_AUTH_TOKEN" in response.json()["detail"]


async def test_no_api_key_is_401(harness: Harness) -> None:
    response = await harness.client.post("/api/v1/service-records", json={})
    assert response.status_code == 401 and response.json()["detail"]


async def test_unknown_api_key_is_401(harness: Harness) -> None:
    response = await harness.client.get(
        "/api/v1/ratings", headers={"Authorization": "Bearer rbk_nope"}
    )
    assert response.status_code == 401


async def test_wrong_role_is_403(harness: Harness) -> None:
    response = await harness.client.get("/api/v1/ratings", headers=harness.api_key("platform"))
    assert response.status_code == 403 and "role" in response.json()["detail"]


async def test_malformed_json_is_422_with_reason(harness: Harness) -> None:
    response = await harness.client.post(
        "/api/v1/service-records",
        content=b"{not json",
        headers={**harness.api_key(), "content-type": "application/json"},
    )
    assert response.status_code == 422 and "JSON" in str(response.json()["detail"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("record_no", ""),
        ("record_no", "x" * 65),
        ("record_no", "bad\nnumber"),
        ("completed_at", "2026-11-27T09:30:00"),  # no time zone: ambiguous
        ("citizen", {"phone": "not a phone"}),
        ("channel", "fax"),
        ("item_name", None),
        ("item_name", "不动产\x00登记"),
        ("citizen", {"phone": "13812341234", "locale": "en\x00"}),
    ],
)
async def test_invalid_service_record_is_422_and_stores_nothing(
    harness: Harness, field: str, value: object
) -> None:
    response = await harness.report(**{field: value})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    lookup = await harness.client.get(
        "/api/v1/service-records/370200-2026-0001", headers=harness.api_key()
    )
    assert lookup.status_code == 404


async def test_unknown_record_is_404(harness: Harness) -> None:
    response = await harness.client.get("/api/v1/service-records/nope", headers=harness.api_key())
    assert response.status_code == 404 and "nope" in response.json()["detail"]


async def test_bad_rating_filters_are_422(harness: Harness) -> None:
    admin = harness.api_key("admin")
    for query in ("level=6", "level=abc", "page=0", "from=yesterday", "status=deleted"):
        response = await harness.client.get(f"/api/v1/ratings?{query}", headers=admin)
        assert response.status_code == 422, query


async def test_nul_character_in_sms_is_400_and_changes_nothing(harness: Harness) -> None:
    await harness.report()
    form = {"From": PHONE, "Body": "5\x00", "MessageSid": "SM-nul"}
    response = await harness.client.post(
        "/channels/sms", data=form, headers=harness.signed("/channels/sms", form)
    )
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    assert "服务态度" in await harness.reply_text("5")  # the conversation is where it was
