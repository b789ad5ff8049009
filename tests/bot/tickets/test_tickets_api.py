"""The closed loop over HTTP, on SQLite and on PostgreSQL + Redis: a bad review given by SMS opens
one ticket for its department, which acknowledges, responds, appeals; supervisors triage and
change tiers; reviewers decide; every act is an audit entry; bad input is refused with reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from bot.tickets import jobs
from storage.tables import audit_log, ratings
from tests.bot.conftest import PHONE, Harness

OURS = "市自然资源局"  # the sample case's department
THEIRS = "市市场监督管理局"
RECORD = "370200-2026-0001"


async def bad_review(h: Harness, *, problems: str = "13", record_no: str = RECORD) -> None:
    """Report the case and give it a bad review over SMS (attitude and repeated visits)."""
    await h.report(record_no)
    await h.reply_text("1 2 2 1")
    await h.reply_text(problems)
    await h.reply_text("材料被要求补交了三次")
    await h.reply_text("2")  # no callback


def only_ticket(h: Harness, key: dict[str, str]) -> Any:
    async def get() -> dict[str, Any]:
        response = await h.client.get("/api/v1/tickets", headers=key)
        assert response.status_code == 200, response.text
        [item] = response.json()["items"]
        return dict(item)

    return get()


async def act(h: Harness, ticket_id: int, what: str, key: dict[str, str], **body: Any) -> Any:
    return await h.client.post(f"/api/v1/tickets/{ticket_id}/{what}", json=body, headers=key)


async def test_a_bad_review_opens_one_ticket_for_its_department(harness: Harness) -> None:
    await bad_review(harness)
    ours = harness.api_key("department", OURS)
    ticket = await only_ticket(harness, ours)
    assert ticket["state"] == "open" and ticket["department"] == OURS
    # attitude maps to the immediate tier: one working day after Friday 27 Nov is Monday 30,
    # due at its end (midnight in Shanghai)
    assert ticket["tier"] == "immediate"
    assert datetime.fromisoformat(ticket["due_at"]) == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert ticket["overdue"] is False
    full = (await harness.client.get(f"/api/v1/tickets/{ticket['id']}", headers=ours)).json()
    assert full["rating"]["level"] == 1 and full["rating"]["complaint"]["problems"] == [
        "attitude",
        "repeated_visits",
    ]
    assert full["case"]["record_no"] == RECORD
    assert full["case"]["citizen"]["phone"] == "+86 138****1234"
    assert PHONE.removeprefix("+86") not in str(full)
    assert [entry["action"] for entry in full["timeline"]] == ["opened"]


async def test_the_finishing_message_twice_opens_one_ticket(harness: Harness) -> None:
    await harness.report()
    for answer in ("1 2 2 1", "5", "材料"):
        await harness.reply_text(answer)
    first = await harness.sms("2", sid="SM-final")
    again = await harness.sms("2", sid="SM-final")
    assert first.text == again.text
    supervisor = harness.api_key("supervisor")
    listed = (await harness.client.get("/api/v1/tickets", headers=supervisor)).json()
    assert listed["total"] == 1
    assert listed["items"][0]["tier"] == "general"  # fees: no mapped problem


async def test_a_good_review_opens_no_ticket(harness: Harness) -> None:
    await harness.report()
    for answer in ("4 4 4 4", "0"):
        await harness.reply_text(answer)
    listed = await harness.client.get("/api/v1/tickets", headers=harness.api_key("supervisor"))
    assert listed.json()["total"] == 0


async def test_an_unsolicited_bad_review_waits_in_triage(harness: Harness) -> None:
    for answer in ("1 1 1 1", "1", "0", "2"):
        await harness.reply_text(answer)
    supervisor = harness.api_key("supervisor")
    ticket = await only_ticket(harness, supervisor)
    assert ticket["department"] is None
    ours = harness.api_key("department", OURS)
    assert (await harness.client.get("/api/v1/tickets", headers=ours)).json()["total"] == 0
    response = await act(harness, ticket["id"], "assign", supervisor, department=OURS)
    assert response.status_code == 200, response.text
    assert response.json()["department"] == OURS
    assert (await only_ticket(harness, ours))["id"] == ticket["id"]


async def test_another_departments_ticket_is_403(harness: Harness) -> None:
    await bad_review(harness)
    ticket = await only_ticket(harness, harness.api_key("supervisor"))
    theirs = harness.api_key("department", THEIRS)
    assert (await harness.client.get("/api/v1/tickets", headers=theirs)).json()["total"] == 0
    response = await harness.client.get(f"/api/v1/tickets/{ticket['id']}", headers=theirs)
    assert response.status_code == 403 and "another department" in response.json()["detail"]
    response = await act(harness, ticket["id"], "acknowledge", theirs, note="核实")
    assert response.status_code == 403


async def test_acknowledge_then_respond_with_a_timeline(harness: Harness) -> None:
    await bad_review(harness)
    ours = harness.api_key("department", OURS)
    ticket_id = (await only_ticket(harness, ours))["id"]
    early = await act(harness, ticket_id, "respond", ours, outcome="rectified", text="已整改")
    assert early.status_code == 409 and "the ticket is open" in early.json()["detail"]
    acknowledged = await act(harness, ticket_id, "acknowledge", ours, note="已电话核实")
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["state"] == "acknowledged"
    again = await act(harness, ticket_id, "acknowledge", ours, note="再次")
    assert again.status_code == 409 and "acknowledged" in again.json()["detail"]
    harness.clock.advance(hours=2)
    responded = await act(
        harness, ticket_id, "respond", ours, outcome="explained", text="该诉求无法律依据，已解释"
    )
    assert responded.status_code == 200, responded.text
    body = responded.json()
    assert body["state"] == "responded" and body["outcome"] == "explained"
    assert body["response"] == "该诉求无法律依据，已解释"
    assert [e["action"] for e in body["timeline"]] == ["opened", "acknowledge", "respond"]
    assert body["timeline"][1]["who"]["role"] == "department"
    assert body["timeline"][2]["before"]["state"] == "acknowledged"


@pytest.mark.parametrize(
    ("what", "body", "status"),
    [
        ("acknowledge", {"note": "x" * 4001}, 422),
        ("acknowledge", {}, 422),
        ("respond", {"outcome": "fixed", "text": "已整改"}, 422),
        ("appeal", {"ground": "rude", "statement": "x"}, 422),
        ("tier", {"tier": "someday"}, 422),
    ],
)
async def test_bad_input_is_refused_with_a_reason(
    harness: Harness, what: str, body: dict[str, Any], status: int
) -> None:
    await bad_review(harness)
    key = harness.api_key("admin")
    ticket_id = (await only_ticket(harness, key))["id"]
    response = await act(harness, ticket_id, what, key, **body)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


async def test_unknown_tickets_and_missing_keys(harness: Harness) -> None:
    key = harness.api_key("admin")
    assert (await harness.client.get("/api/v1/tickets/999", headers=key)).status_code == 404
    huge = await harness.client.get(f"/api/v1/tickets/{2**40}", headers=key)
    assert huge.status_code == 422  # no row, and no integer overflow in the database
    metrics = (await harness.client.get("/metrics")).text
    assert "ratebot_tickets_opened_total" in metrics and "ratebot_tickets_overdue" in metrics
    assert (await act(harness, 999, "acknowledge", key, note="x")).status_code == 404
    assert (await harness.client.get("/api/v1/tickets")).status_code == 401
    platform = harness.api_key("platform")
    assert (await harness.client.get("/api/v1/tickets", headers=platform)).status_code == 403
    reviewer = harness.api_key("reviewer")
    await bad_review(harness)
    ticket_id = (await only_ticket(harness, reviewer))["id"]
    refused = await act(harness, ticket_id, "acknowledge", reviewer, note="x")
    assert refused.status_code == 403 and "reviewer may not" in refused.json()["detail"]


async def test_a_supervisor_changes_the_tier_and_the_deadline_follows(harness: Harness) -> None:
    await bad_review(harness)
    supervisor = harness.api_key("supervisor")
    ticket_id = (await only_ticket(harness, supervisor))["id"]
    response = await act(harness, ticket_id, "tier", supervisor, tier="complex")
    assert response.status_code == 200, response.text
    # 15 working days after Friday 27 Nov: Friday 18 Dec, due at its end
    assert datetime.fromisoformat(response.json()["due_at"]) == datetime(
        2026, 12, 18, 16, 0, tzinfo=UTC
    )
    department = harness.api_key("department", OURS)
    refused = await act(harness, ticket_id, "tier", department, tier="general")
    assert refused.status_code == 403


async def test_the_phone_number_is_shown_for_the_callback_audited_and_not_cached(
    harness: Harness,
) -> None:
    await bad_review(harness)
    ours = harness.api_key("department", OURS)
    ticket_id = (await only_ticket(harness, ours))["id"]
    response = await act(harness, ticket_id, "contact", ours)
    assert response.status_code == 200, response.text
    assert response.json() == {"phone": PHONE}
    assert response.headers["cache-control"] == "no-store"
    audit = await harness.client.get(
        "/api/v1/audit", params={"entity": "contact"}, headers=harness.api_key("supervisor")
    )
    [entry] = audit.json()["items"]
    assert entry["action"] == "revealed" and entry["entity_id"] == ticket_id
    assert PHONE not in audit.text
    theirs = harness.api_key("department", THEIRS)
    assert (await act(harness, ticket_id, "contact", theirs)).status_code == 403


async def test_an_upheld_malicious_appeal_excludes_the_rating_and_closes_the_ticket(
    harness: Harness,
) -> None:
    await bad_review(harness)
    ours = harness.api_key("department", OURS)
    ticket_id = (await only_ticket(harness, ours))["id"]
    filed = await act(harness, ticket_id, "appeal", ours, ground="malicious", statement="恶意差评")
    assert filed.status_code == 200, filed.text
    assert filed.json()["state"] == "appealed" and filed.json()["paused"] is True
    twice = await act(harness, ticket_id, "appeal", ours, ground="untrue", statement="again")
    assert twice.status_code == 409
    reviewer = harness.api_key("reviewer")
    [appeal] = (await harness.client.get("/api/v1/appeals", headers=reviewer)).json()["items"]
    assert appeal["ground"] == "malicious" and appeal["state"] == "pending"
    refused = await harness.client.post(
        f"/api/v1/appeals/{appeal['id']}/decide", json={"upheld": True, "note": "x"}, headers=ours
    )
    assert refused.status_code == 403
    decided = await harness.client.post(
        f"/api/v1/appeals/{appeal['id']}/decide",
        json={"upheld": True, "note": "经核查属恶意差评"},
        headers=reviewer,
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["state"] == "upheld"
    again = await harness.client.post(
        f"/api/v1/appeals/{appeal['id']}/decide",
        json={"upheld": False, "note": "x"},
        headers=reviewer,
    )
    assert again.status_code == 409
    ticket = (await harness.client.get(f"/api/v1/tickets/{ticket_id}", headers=ours)).json()
    assert ticket["state"] == "closed" and ticket["outcome"] == "appeal_upheld"
    # the rating stays, readable, marked out of the statistics
    assert ticket["rating"]["level"] == 1
    assert ticket["rating"]["excluded"]["reason"] == "appeal upheld: malicious"
    assert ticket["rating"]["excluded"]["by"] == "test reviewer"
    with harness.rt.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ratings)).scalar() == 1


async def test_a_rejected_appeal_puts_the_ticket_back_and_the_deadline_counts_the_pause(
    harness: Harness,
) -> None:
    await bad_review(harness)
    ours = harness.api_key("department", OURS)
    ticket = await only_ticket(harness, ours)
    await act(harness, ticket["id"], "acknowledge", ours, note="已核实")
    await act(harness, ticket["id"], "appeal", ours, ground="untrue", statement="与事实不符")
    harness.clock.advance(hours=5)
    reviewer = harness.api_key("reviewer")
    [appeal] = (await harness.client.get("/api/v1/appeals", headers=reviewer)).json()["items"]
    await harness.client.post(
        f"/api/v1/appeals/{appeal['id']}/decide",
        json={"upheld": False, "note": "评价属实"},
        headers=reviewer,
    )
    after = (await harness.client.get(f"/api/v1/tickets/{ticket['id']}", headers=ours)).json()
    assert after["state"] == "acknowledged" and after["rating"]["excluded"] is None
    paused = datetime.fromisoformat(after["due_at"]) - datetime.fromisoformat(ticket["due_at"])
    assert paused.total_seconds() == 5 * 3600


async def test_an_upheld_not_ours_appeal_reassigns_and_restarts_the_deadline(
    harness: Harness,
) -> None:
    await bad_review(harness)
    ours = harness.api_key("department", OURS)
    ticket = await only_ticket(harness, ours)
    await act(harness, ticket["id"], "appeal", ours, ground="not_ours", statement="非本部门办理")
    harness.clock.advance(days=3)  # Monday 30 Nov
    reviewer = harness.api_key("reviewer")
    [appeal] = (await harness.client.get("/api/v1/appeals", headers=reviewer)).json()["items"]
    await harness.client.post(
        f"/api/v1/appeals/{appeal['id']}/decide",
        json={"upheld": True, "note": "应由市场监管局处理", "department": THEIRS},
        headers=reviewer,
    )
    theirs = harness.api_key("department", THEIRS)
    moved = await only_ticket(harness, theirs)
    assert moved["state"] == "open" and moved["department"] == THEIRS
    # a new deadline: one working day after Monday 30 Nov
    assert datetime.fromisoformat(moved["due_at"]) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert (await harness.client.get("/api/v1/tickets", headers=ours)).json()["total"] == 0


async def test_an_overdue_ticket_is_escalated_once(harness: Harness) -> None:
    await bad_review(harness)
    supervisor = harness.api_key("supervisor")
    ticket_id = (await only_ticket(harness, supervisor))["id"]
    harness.clock.advance(days=4)  # Tuesday 1 Dec 10:00: past Monday's end
    assert jobs.run_due(harness.rt, harness.clock()) == 1
    assert jobs.run_due(harness.rt, harness.clock()) == 0
    overdue = await harness.client.get(
        "/api/v1/tickets", params={"overdue": "true"}, headers=supervisor
    )
    [item] = overdue.json()["items"]
    assert item["id"] == ticket_id and item["overdue"] and item["escalated_at"]
    timeline = (await harness.client.get(f"/api/v1/tickets/{ticket_id}", headers=supervisor)).json()
    assert [e["action"] for e in timeline["timeline"]] == ["opened", "escalated"]


async def test_the_audit_log_refuses_update_and_delete(harness: Harness) -> None:
    await bad_review(harness)
    for statement in (sa.update(audit_log).values(reason="rewritten"), sa.delete(audit_log)):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), harness.rt.db.begin() as conn:
            conn.execute(statement)
    with harness.rt.db.connect() as conn:
        reasons = sa.select(audit_log.c.reason).where(audit_log.c.entity == "ticket")
        assert conn.execute(reasons).scalars().all() == [None]
