"""The whole loop on a bad review, over SMS, on SQLite and on PostgreSQL + Redis: the review opens
a ticket, the department verifies and answers it, the citizen is told by SMS and rates the case
again (evaluation count 2), and the ticket closes with that level. Also: an upheld malicious
appeal warns its citizen once; the re-rating window closes an unanswered ticket; fraud rules
flag ratings and hold back their vouchers."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from bot import worker
from bot.tickets import jobs
from storage.tables import flags, ratings
from tests.bot.conftest import PHONE, Harness
from tests.bot.tickets.test_tickets_api import OURS, RECORD, act, bad_review, only_ticket
from tests.bot.webhooks.test_wechat import (  # noqa: F401 - fake_wechat and wx are fixtures
    OPENID,
    WX,
    cs_text,
    fake_wechat,
    report,
    wx,
)


async def answer_ticket(
    h: Harness, ticket_id: int, outcome: str = "rectified", text: str = "已整改"
) -> None:
    key = h.api_key("department", OURS)
    done = await act(h, ticket_id, "acknowledge", key, note="已电话核实")
    assert done.status_code == 200, done.text
    done = await act(h, ticket_id, "respond", key, outcome=outcome, text=text)
    assert done.status_code == 200, done.text


def outbox(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


async def test_a_bad_review_answered_and_rated_again_by_sms(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await bad_review(harness)
    ticket_id = (await only_ticket(harness, harness.api_key("supervisor")))["id"]
    harness.clock.advance(hours=3)
    await answer_ticket(harness, ticket_id, text="已对窗口人员批评教育，并一次性告知所需材料")
    outbox(capsys)
    await worker.run_due(harness.rt)
    told = outbox(capsys)
    assert "市自然资源局已作出整改：已对窗口人员批评教育" in told
    assert "再次评价" in told and "5 非常满意" in told  # the first question follows
    assert "+86 138****1234" in told and PHONE.removeprefix("+86") not in told
    await worker.run_due(harness.rt)
    assert outbox(capsys) == ""  # told once
    for reply in ("4 4 5 4", "0"):
        await harness.reply_text(reply)
    supervisor = harness.api_key("supervisor")
    ticket = (await harness.client.get(f"/api/v1/tickets/{ticket_id}", headers=supervisor)).json()
    assert ticket["state"] == "closed" and ticket["closed_reason"] == "rerated"
    assert ticket["rerating_level"] == 4
    assert ticket["rerating"]["evaluation_count"] == 2 and ticket["rerating"]["level"] == 4
    assert [e["action"] for e in ticket["timeline"]] == [
        "opened",
        "acknowledge",
        "respond",
        "rerated",
    ]
    # one re-rating per ticket: a further reply is told the case is rated
    assert "已完成" in await harness.reply_text("5")
    with harness.rt.db.connect() as conn:
        counts = conn.execute(
            sa.select(ratings.c.evaluation_count, sa.func.count()).group_by(
                ratings.c.evaluation_count
            )
        ).all()
    assert sorted(counts) == [(1, 1), (2, 1)]


async def test_a_bad_re_rating_is_recorded_on_the_closed_ticket_and_opens_none(
    harness: Harness,
) -> None:
    await bad_review(harness)
    supervisor = harness.api_key("supervisor")
    ticket_id = (await only_ticket(harness, supervisor))["id"]
    await answer_ticket(harness, ticket_id, outcome="explained", text="该诉求无法律依据")
    await worker.run_due(harness.rt)
    for reply in ("1 1 1 1", "1", "0", "2"):
        await harness.reply_text(reply)
    listed = (await harness.client.get("/api/v1/tickets", headers=supervisor)).json()
    assert listed["total"] == 1
    [ticket] = listed["items"]
    assert ticket["state"] == "closed" and ticket["rerating_level"] == 1


async def test_the_re_rating_window_closes_a_ticket_nobody_rated_again(harness: Harness) -> None:
    await bad_review(harness)
    supervisor = harness.api_key("supervisor")
    ticket_id = (await only_ticket(harness, supervisor))["id"]
    await answer_ticket(harness, ticket_id)
    harness.clock.advance(days=7, minutes=1)
    assert jobs.run_due(harness.rt, harness.clock()) == 1
    ticket = (await harness.client.get(f"/api/v1/tickets/{ticket_id}", headers=supervisor)).json()
    assert ticket["state"] == "closed" and ticket["closed_reason"] == "window"


async def test_an_upheld_malicious_appeal_warns_its_citizen_once(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await bad_review(harness)
    ours = harness.api_key("department", OURS)
    ticket_id = (await only_ticket(harness, ours))["id"]
    await act(harness, ticket_id, "appeal", ours, ground="malicious", statement="恶意差评")
    reviewer = harness.api_key("reviewer")
    [appeal] = (await harness.client.get("/api/v1/appeals", headers=reviewer)).json()["items"]
    await harness.client.post(
        f"/api/v1/appeals/{appeal['id']}/decide",
        json={"upheld": True, "note": "经核查属恶意差评"},
        headers=reviewer,
    )
    outbox(capsys)
    await worker.run_due(harness.rt)
    await worker.run_due(harness.rt)
    warned = outbox(capsys)
    assert warned.count("不计入统计") == 1 and "不动产登记" in warned


async def test_a_rating_from_a_staff_contact_is_flagged_and_earns_no_voucher_until_cleared(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.bot.parking_support import put_hall

    await put_hall(harness)
    admin = harness.api_key("admin")
    listed = await harness.client.put(
        "/api/v1/staff-contacts", json={"phones": ["13812341234"]}, headers=admin
    )
    assert listed.status_code == 200 and listed.json() == {"contacts": 1}
    await harness.report()
    for reply in ("5 5 5 5", "0"):
        await harness.reply_text(reply)
    reviewer = harness.api_key("reviewer")
    [flag] = (await harness.client.get("/api/v1/flags", headers=reviewer)).json()["items"]
    assert flag["rule"] == "staff_contact" and flag["state"] == "pending"
    record = (
        await harness.client.get(f"/api/v1/service-records/{RECORD}", headers=harness.api_key())
    ).json()
    assert record["rating"]["flagged"] is True
    with harness.rt.db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM vouchers")).scalar() == 0
    decided = await harness.client.post(
        f"/api/v1/flags/{flag['id']}/decide",
        json={"confirmed": False, "note": "工作人员以群众身份办事，评价有效"},
        headers=reviewer,
    )
    assert decided.status_code == 200, decided.text
    record = (
        await harness.client.get(f"/api/v1/service-records/{RECORD}", headers=harness.api_key())
    ).json()
    assert record["rating"]["flagged"] is False
    capsys.readouterr()
    await worker.run_due(harness.rt)
    await worker.run_due(harness.rt)
    told = capsys.readouterr().out
    assert told.count("停车") >= 1 and told.count("[outbox sms]") == 1  # the voucher, once
    with harness.rt.db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM vouchers")).scalar() == 1


async def test_a_contact_that_rates_too_often_is_flagged(harness: Harness) -> None:
    for n in range(7):
        record_no = f"370200-2026-01{n:02d}"
        await harness.report(record_no)
        harness.clock.advance(hours=25)  # past the invitation cooldown
        for reply in ("5 5 5 5", "0"):
            await harness.reply_text(reply)
    with harness.rt.db.connect() as conn:
        caught = conn.execute(
            sa.select(flags.c.rule, ratings.c.record_id)
            .join(ratings, ratings.c.id == flags.c.rating_id)
            .order_by(ratings.c.record_id)
        ).all()
    # the sixth and the seventh ratings are more than five within 30 days
    assert caught == [("contact_ratings", 6), ("contact_ratings", 7)]


async def test_a_burst_of_top_ratings_for_one_window_is_flagged(harness: Harness) -> None:
    phones = [f"+86139000{n:05d}" for n in range(12)]
    for n, phone in enumerate(phones):
        await harness.report(f"370200-2026-02{n:02d}", phone=phone)
        for reply in ("5 5 5 5", "0"):
            await harness.reply_text(reply, phone=phone)
    assert jobs.run_due(harness.rt, harness.clock()) == 12  # more than 10 in 30 minutes
    assert jobs.run_due(harness.rt, harness.clock()) == 0
    with harness.rt.db.connect() as conn:
        rows: list[Any] = conn.execute(sa.select(flags.c.rule, flags.c.detail)).all()
    assert {rule for rule, _ in rows} == {"top_burst"}
    assert (
        "for clerk 张三 at 烟台市政务服务中心" in rows[0].detail
    )  # the clerk first, then the window


async def test_escalated_once_by_two_workers_across_a_holiday_and_an_adjusted_weekend(
    harness: Harness,
) -> None:
    """Opened on Thursday 24 Sep 2026 with five working days: Mid-Autumn (25–27 Sep) and
    National Day (1–7 Oct) are off, Saturday 10 Oct is an adjusted working day. Due at the end
    of Friday 9 Oct; two workers looking at once escalate it once."""
    import threading
    from datetime import UTC, datetime

    harness.clock.now = datetime(2026, 9, 24, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    await bad_review(harness, problems="4")  # fees: the general tier
    supervisor = harness.api_key("supervisor")
    ticket = await only_ticket(harness, supervisor)
    assert datetime.fromisoformat(ticket["due_at"]) == datetime(2026, 10, 9, 16, 0, tzinfo=UTC)
    harness.clock.now = datetime(2026, 10, 9, 15, 0, tzinfo=UTC)  # 23:00 on the last day
    assert jobs.run_due(harness.rt, harness.clock()) == 0
    harness.clock.now = datetime(2026, 10, 10, 0, 30, tzinfo=UTC)  # 08:30 on the working Saturday
    results: list[int] = []
    start = threading.Barrier(2)

    def one_worker() -> None:
        start.wait()
        results.append(jobs.run_due(harness.rt, harness.clock()))

    workers = [threading.Thread(target=one_worker) for _ in range(2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert sorted(results) == [0, 1]
    full = (await harness.client.get(f"/api/v1/tickets/{ticket['id']}", headers=supervisor)).json()
    assert [e["action"] for e in full["timeline"]] == ["opened", "escalated"]
    assert full["overdue"] is True


async def test_a_wechat_bad_review_answered_and_rated_again_in_wechat(wx: WX) -> None:  # noqa: F811
    h = wx.h
    await report(wx, wechat_openid=OPENID)
    for answer in ("1 2 2 1", "13", "材料被要求补交了三次", "2"):
        await wx.say(answer)
    supervisor = h.api_key("supervisor")
    ticket_id = (await only_ticket(h, supervisor))["id"]
    await answer_ticket(h, ticket_id, text="已一次性告知所需材料")
    sent_before = len(wx.fake.custom)
    await worker.run_due(h.rt)
    told = [cs_text(call) for call in wx.fake.custom[sent_before:]]
    assert any("已作出整改：已一次性告知所需材料" in text for text in told)
    assert all(call.body["touser"] == OPENID for call in wx.fake.custom[sent_before:])
    await wx.say("5 4 4 4")
    await wx.say("0")
    ticket = (await h.client.get(f"/api/v1/tickets/{ticket_id}", headers=supervisor)).json()
    assert ticket["state"] == "closed" and ticket["rerating_level"] == 5
    assert ticket["rerating"]["provider"] == "wechat"
