"""What the fuzzers found, and the limits on what a client may send: each a clear 4xx, never a
500 (tests/bot/web/test_fuzz_api.py and tests/bot/webhooks/test_fuzz_webhooks.py find more)."""

from __future__ import annotations

import pytest

from tests.bot.conftest import Harness
from tests.samples import service_record


@pytest.mark.parametrize("to", ["-3.253617168056004e-126", "1700000000", "1e3"])
async def test_a_number_is_no_time(harness: Harness, to: str) -> None:
    """Regression: pydantic read ``?to=-3e-126`` as 1970-01-01 (seconds since 1970), which the
    schema (an ISO 8601 time) does not allow; the fuzzer's request was answered 200."""
    response = await harness.client.get(
        "/api/v1/ratings", params={"to": to}, headers=harness.api_key("admin")
    )
    assert response.status_code == 422 and "ISO 8601" in str(response.json()["detail"])
    body = service_record() | {"completed_at": 1_790_000_000}
    reported = await harness.client.post(
        "/api/v1/service-records", json=body, headers=harness.api_key("platform")
    )
    assert reported.status_code == 422
    fine = await harness.client.get(
        "/api/v1/ratings",
        params={"to": "2026-11-27T10:00:00+08:00"},
        headers=harness.api_key("admin"),
    )
    assert fine.status_code == 200


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/api/v1/exports/tickets.csv?from=0001-01-01&to=0002-01-01", "supervisor"),
        ("/api/v1/exports/ratings.csv?from=0001-01-01&to=0001-01-02", "supervisor"),
        ("/api/v1/stats?group_by=district&from=0001-01-01&to=0001-12-31", "supervisor"),
        ("/api/v1/reports/vouchers?to=0001-01-01", "admin"),
        ("/api/v1/reports/vouchers?from=9999-12-31", "admin"),
    ],
)
async def test_days_at_the_ends_of_the_calendar_are_422_not_500(
    harness: Harness, path: str, role: str
) -> None:
    """Regression: 0001-01-01 in Shanghai is before the first UTC instant (OverflowError), and
    0001-01-01 less the report's default 29 days is no date: both were 500s."""
    response = await harness.client.get(path, headers=harness.api_key(role))
    assert response.status_code == 422, response.text
    assert "2000-2100" in response.json()["detail"]


async def test_more_than_a_hundred_headers_is_431(harness: Harness) -> None:
    headers = {f"x-h{n}": "v" for n in range(101)}
    response = await harness.client.get("/healthz", headers=headers)
    assert response.status_code == 431 and "100 headers" in response.json()["detail"]
    assert (
        await harness.client.get("/healthz", headers=dict(list(headers.items())[:90]))
    ).is_success


async def test_the_staff_contacts_take_a_larger_body_than_other_routes(harness: Harness) -> None:
    """Up to 10,000 contacts of each kind: more than any route's 64 KiB, within its 2 MiB."""
    admin = harness.api_key("admin")
    openids = [f"o{n:027d}" for n in range(5000)]  # about 160 KB
    response = await harness.client.put(
        "/api/v1/staff-contacts", json={"wechat_openids": openids}, headers=admin
    )
    assert response.status_code == 200, response.text
    too_many = await harness.client.put(
        "/api/v1/staff-contacts", json={"wechat_openids": openids * 3}, headers=admin
    )
    assert too_many.status_code == 422  # over 10,000: the list's own limit
    huge = await harness.client.put(
        "/api/v1/staff-contacts", content=b"[" + b" " * (3 * 1024 * 1024) + b"]", headers=admin
    )
    assert huge.status_code == 413
    other = await harness.client.post(
        "/api/v1/service-records", content=b" " * (70 * 1024), headers=harness.api_key("platform")
    )
    assert other.status_code == 413


@pytest.mark.parametrize(
    "body", [b"[" * 30000 + b"]" * 30000, b'{"a":' * 5000 + b"1" + b"}" * 5000]
)
async def test_json_nested_too_deeply_is_refused_not_500(harness: Harness, body: bytes) -> None:
    response = await harness.client.post(
        "/api/v1/service-records",
        content=body,
        headers={**harness.api_key("platform"), "content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500 and response.json()["detail"]


async def test_the_schema_documents_every_error_with_its_reason(harness: Harness) -> None:
    schema = (await harness.client.get("/openapi.json")).json()
    ticket = schema["paths"]["/api/v1/tickets/{ticket_id}"]["get"]["responses"]
    assert {"400", "401", "403", "404", "413", "422", "503"} <= set(ticket)
    assert ticket["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    gate = schema["paths"]["/api/v1/parking/vouchers/{code}"]["get"]["responses"]
    assert "429" in gate
