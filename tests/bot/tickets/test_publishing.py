"""Publishing a rectified case on the public results page, over the API (SQLite and PostgreSQL):
only a supervisor, only a rectified case, once per ticket, never a text that holds a phone,
id-card or case number or the clerk's name; withdrawing keeps the row; every act is an audit
row on the ticket."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from bot.tickets import guard
from bot.tickets.publishing import (
    REASON_CASE_NUMBER,
    REASON_CLERK,
    REASON_NUMBER,
    NotPublic,
    check_public_text,
    publish_case,
)
from bot.web.audit import Actor
from storage.tables import audit_log, published_cases
from tests.bot.conftest import Harness
from tests.bot.tickets.test_tickets_api import OURS, RECORD, act, bad_review, only_ticket

PUBLIC_TEXT = "窗口已调整材料清单，一次告知所需材料，并对工作人员开展服务规范培训。"


async def answered(h: Harness, outcome: str = "rectified") -> int:
    """A bad review its department verified and answered (``outcome``): the ticket's id."""
    await bad_review(h)
    ours = h.api_key("department", OURS)
    ticket_id = int((await only_ticket(h, ours))["id"])
    assert (await act(h, ticket_id, "acknowledge", ours, note="已核实")).status_code == 200
    response = await act(h, ticket_id, "respond", ours, outcome=outcome, text="已一次性告知材料")
    assert response.status_code == 200, response.text
    return ticket_id


def audit_actions(h: Harness, ticket_id: int) -> list[str]:
    with h.rt.db.connect() as conn:
        return list(
            conn.execute(
                sa.select(audit_log.c.action)
                .where(audit_log.c.entity == "ticket", audit_log.c.entity_id == ticket_id)
                .order_by(audit_log.c.id)
            ).scalars()
        )


def publications(h: Harness) -> list[Any]:
    with h.rt.db.connect() as conn:
        return list(conn.execute(sa.select(published_cases)).all())


async def test_a_supervisor_publishes_a_rectified_case_once_and_withdraws_it(
    harness: Harness,
) -> None:
    ticket_id = await answered(harness)
    supervisor = harness.api_key("supervisor")
    published = await act(harness, ticket_id, "publish", supervisor, text=f"  {PUBLIC_TEXT} ")
    assert published.status_code == 201, published.text
    body = published.json()
    assert body["ticket_id"] == ticket_id and body["text"] == PUBLIC_TEXT
    assert body["published_by"] == "test supervisor" and body["withdrawn_at"] is None
    again = await act(harness, ticket_id, "publish", supervisor, text=PUBLIC_TEXT)
    assert again.status_code == 409 and "published once" in again.json()["detail"]

    harness.clock.advance(days=1)
    withdrawn = await act(harness, ticket_id, "unpublish", supervisor)
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["withdrawn_by"] == "test supervisor"
    [row] = publications(harness)  # kept, not deleted
    assert row.text == PUBLIC_TEXT and row.withdrawn_at == harness.clock()
    assert (await act(harness, ticket_id, "unpublish", supervisor)).status_code == 409
    after = await act(harness, ticket_id, "publish", supervisor, text=PUBLIC_TEXT)
    assert after.status_code == 409  # once per ticket, even after a withdrawal
    assert audit_actions(harness, ticket_id)[-2:] == ["published", "withdrawn"]
    timeline = (
        await harness.client.get(f"/api/v1/tickets/{ticket_id}", headers=supervisor)
    ).json()["timeline"]
    assert timeline[-2]["who"]["role"] == "supervisor"
    assert timeline[-2]["after"]["text"] == PUBLIC_TEXT


async def test_only_a_rectified_case_is_published(harness: Harness) -> None:
    ticket_id = await answered(harness, outcome="explained")
    supervisor = harness.api_key("supervisor")
    response = await act(harness, ticket_id, "publish", supervisor, text=PUBLIC_TEXT)
    assert response.status_code == 409 and "only a rectified case" in response.json()["detail"]
    assert publications(harness) == []


async def test_an_open_ticket_is_not_published(harness: Harness) -> None:
    await bad_review(harness)
    supervisor = harness.api_key("supervisor")
    ticket_id = (await only_ticket(harness, supervisor))["id"]
    response = await act(harness, ticket_id, "publish", supervisor, text=PUBLIC_TEXT)
    assert response.status_code == 409 and "this ticket is open" in response.json()["detail"]


async def test_only_a_supervisor_publishes(harness: Harness) -> None:
    ticket_id = await answered(harness)
    for role, extra in (("department", (OURS,)), ("reviewer", ())):
        key = harness.api_key(role, *extra)
        response = await act(harness, ticket_id, "publish", key, text=PUBLIC_TEXT)
        assert response.status_code == 403, (role, response.text)
    assert publications(harness) == []
    admin = harness.api_key("admin")
    assert (await act(harness, ticket_id, "publish", admin, text=PUBLIC_TEXT)).status_code == 201
    department = harness.api_key("department", OURS)
    assert (await act(harness, ticket_id, "unpublish", department)).status_code == 403


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("已回访市民，电话13812341234，满意", "long number"),
        ("回访号码 138 1234 5678", "long number"),
        ("咨询 0535-6688123", "long number"),
        ("身份证37068219900101123X已核验", "long number"),
        (f"办件{RECORD}已整改", "case number"),
        ("已对张三进行批评教育", "clerk"),
    ],
)
async def test_a_text_that_identifies_somebody_is_refused_with_a_reason(
    harness: Harness, text: str, found: str
) -> None:
    ticket_id = await answered(harness)
    actions = audit_actions(harness, ticket_id)
    response = await act(harness, ticket_id, "publish", harness.api_key("supervisor"), text=text)
    assert response.status_code == 422 and found in response.json()["detail"]
    assert publications(harness) == []
    assert audit_actions(harness, ticket_id) == actions  # refused: no audit row either


async def test_unknown_and_unpublished_tickets(harness: Harness) -> None:
    supervisor = harness.api_key("supervisor")
    response = await act(harness, 999_999, "publish", supervisor, text=PUBLIC_TEXT)
    assert response.status_code == 404
    ticket_id = await answered(harness)
    response = await act(harness, ticket_id, "unpublish", supervisor)
    assert response.status_code == 404 and "never published" in response.json()["detail"]
    for body in ({}, {"text": ""}, {"text": "x" * 4001}, {"text": "好", "extra": 1}):
        response = await harness.client.post(
            f"/api/v1/tickets/{ticket_id}/publish", json=body, headers=supervisor
        )
        assert response.status_code == 422, body


# --- the check itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "已于2026-11-27完成整改，3个工作日内回访。",
        "2026/12/01 起材料清单上墙公示",
        "窗口增设2个，等候时间缩短至15分钟",
        "Office hours now 8:30-17:30.",
    ],
)
def test_dates_and_short_numbers_pass(text: str) -> None:
    assert check_public_text(text, record_no="370200-2026-0001", clerk="张三") == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("电话１３８１２３４１２３４", REASON_NUMBER),  # full-width digits
        ("手机 138-1234-5678", REASON_NUMBER),
        ("身份证号 370682199001011234", REASON_NUMBER),
        ("旧证号 370682900101123", REASON_NUMBER),
        ("案号 seed-0042 已办结", REASON_CASE_NUMBER),  # the case's own number, any shape
        ("张三 已调岗", REASON_CLERK),
    ],
)
def test_numbers_case_numbers_and_the_clerk_are_refused(text: str, reason: str) -> None:
    with pytest.raises(NotPublic) as refused:
        check_public_text(text, record_no="SEED-0042", clerk="张三")
    assert refused.value.reason == reason


async def test_the_act_itself_refuses_a_department_user(harness: Harness) -> None:
    # The desk's button calls publish_case directly, past no API role check: the act checks.
    ticket_id = await answered(harness)
    clerk = Actor(
        kind="user", id=1, name="某科室", role="department", departments=frozenset({OURS})
    )
    with pytest.raises(guard.Refused), harness.rt.db.begin() as conn:
        publish_case(conn, clerk, ticket_id, PUBLIC_TEXT, harness.clock())
    assert publications(harness) == []
