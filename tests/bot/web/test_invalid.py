"""A request the API cannot read gets one readable ``detail`` sentence, as every other error of
the API does (regression: FastAPI's list of pydantic errors, which never named the header)."""

from __future__ import annotations

import pytest

from tests.bot.conftest import Harness
from tests.samples import service_record

RECORDS = "/api/v1/service-records"


async def test_malformed_json_says_where_it_broke(harness: Harness) -> None:
    response = await harness.client.post(
        RECORDS,
        content=b'{"record_no": "R1",,}',
        headers={**harness.api_key(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": "the body is not valid JSON: Expecting property name enclosed in double "
        "quotes (at character 19)"
    }


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        (None, "this request has no Content-Type header"),
        ("text/plain", "this request has Content-Type: text/plain"),
        ("application/x-www-form-urlencoded", "Content-Type: application/x-www-form-urlencoded"),
    ],
)
async def test_a_body_not_sent_as_json_names_the_header(
    harness: Harness, content_type: str | None, said: str
) -> None:
    import json

    headers = harness.api_key()
    if content_type:
        headers["Content-Type"] = content_type
    body = json.dumps(service_record("R-CT")).encode()
    response = await harness.client.post(RECORDS, content=body, headers=headers)
    assert response.status_code == 415, response.text
    detail = response.json()["detail"]
    assert detail.startswith("send the body as JSON with the header Content-Type: application/json")
    assert said in detail
    # The same body with the header is taken.
    headers["Content-Type"] = "application/json; charset=utf-8"
    assert (await harness.client.post(RECORDS, content=body, headers=headers)).status_code == 201


async def test_field_and_query_errors_are_one_sentence_naming_each(harness: Harness) -> None:
    body = {**service_record("R-F"), "record_no": "", "channel": "fax"}
    response = await harness.client.post(RECORDS, json=body, headers=harness.api_key())
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert "record_no: String should have at least 1 character" in detail
    assert "channel: Input should be 'sms', 'voice', 'wechat' or 'telegram'" in detail
    ratings = await harness.client.get("/api/v1/ratings?level=6", headers=harness.api_key("admin"))
    assert ratings.status_code == 422
    assert ratings.json()["detail"].startswith("query parameter level: ")


async def test_an_empty_json_body_is_asked_for(harness: Harness) -> None:
    response = await harness.client.post(
        RECORDS, headers={**harness.api_key(), "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json() == {"detail": "the request needs a JSON body"}
