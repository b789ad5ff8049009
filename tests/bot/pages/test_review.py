"""The reviewers' queue over HTTP, on SQLite and on PostgreSQL + Redis: pending appeals and fraud
flags with their ratings, statements and rules; a reviewer's decision through the page changes
the ticket, the rating and the figures exactly as the API's does; supervisors look, only
reviewers decide; a refused decision shows the queue again with the reason."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bot.results import rollups
from storage.tables import appeals, flags, ratings, tickets
from tests.bot.conftest import Harness
from tests.bot.pages.test_desk import audit_actions, signed_in, state_of, the_bad_review
from tests.bot.tickets.test_queues import OURS, THEIRS

NOVEMBER = {"group_by": "department", "from": "2026-11-01", "to": "2026-11-30"}


async def appealed(h: Harness, ground: str = "malicious", statement: str = "恶意差评") -> int:
    """A bad review appealed by its department through the desk: the appeal's id."""
    ticket_id = await the_bad_review(h)
    token = await signed_in(h, "科员甲", "department", OURS)
    done = await h.client.post(
        f"/desk/tickets/{ticket_id}/appeal",
        data={"csrf_token": token, "ground": ground, "statement": statement},
    )
    assert done.status_code == 303, done.text
    h.client.cookies.clear()
    with h.rt.db.connect() as conn:
        return int(conn.execute(sa.select(appeals.c.id)).scalar_one())


async def counted_bad(h: Harness) -> int:
    """The department's bad reviews in the figures, as ``GET /api/v1/stats`` gives them."""
    rollups.run_due(h.rt)
    response = await h.client.get("/api/v1/stats", params=NOVEMBER, headers=h.api_key("supervisor"))
    assert response.status_code == 200, response.text
    groups = {g["key"]: g for g in response.json()["groups"]}
    return int(groups[OURS]["bad"]) if OURS in groups else 0


async def test_a_reviewer_upholds_an_appeal_and_the_rating_leaves_the_figures(
    harness: Harness,
) -> None:
    appeal_id = await appealed(harness, statement="该市民当日并未到窗口办事")
    assert await counted_bad(harness) == 1  # a pending appeal leaves the rating counted
    token = await signed_in(harness, "审核员", "reviewer")
    queue = await harness.client.get("/review")
    assert queue.status_code == 200, queue.text
    item = queue.text.split(f'data-appeal="{appeal_id}"', 1)[1].split("</article>", 1)[0]
    assert "该市民当日并未到窗口办事" in item and "恶意差评" in item
    assert "材料被要求补交了三次" in item  # the rating's own words
    assert "★☆☆☆☆" in item

    decided = await harness.client.post(
        f"/review/appeals/{appeal_id}/decide",
        data={"csrf_token": token, "verdict": "uphold", "note": "经核查属恶意差评"},
    )
    assert decided.status_code == 303
    assert decided.headers["location"] == "/review?done=appeal_upheld"
    with harness.rt.db.connect() as conn:
        appeal = conn.execute(sa.select(appeals)).one()
        rating = conn.execute(sa.select(ratings)).one()
    assert appeal.state == "upheld" and appeal.decided_by == "审核员"
    assert rating.excluded_at is not None and rating.excluded_by == "审核员"
    assert state_of(harness, appeal.ticket_id) == "closed"
    assert audit_actions(harness, "appeal", appeal_id)[-1] == ("upheld", "user", "审核员")
    assert await counted_bad(harness) == 0
    after = (await harness.client.get("/review?done=appeal_upheld")).text
    assert f'data-appeal="{appeal_id}"' not in after and 'data-count="appeals">0<' in after


async def test_a_rejected_appeal_sends_the_ticket_back_and_keeps_the_rating_counted(
    harness: Harness,
) -> None:
    appeal_id = await appealed(harness)
    token = await signed_in(harness, "审核员", "reviewer")
    decided = await harness.client.post(
        f"/review/appeals/{appeal_id}/decide",
        data={"csrf_token": token, "verdict": "reject", "note": "证据不足"},
    )
    assert decided.headers["location"] == "/review?done=appeal_rejected"
    with harness.rt.db.connect() as conn:
        ticket_id = conn.execute(sa.select(appeals.c.ticket_id)).scalar_one()
        assert conn.execute(sa.select(ratings.c.excluded_at)).scalar() is None
    assert state_of(harness, ticket_id) == "open"
    assert await counted_bad(harness) == 1


async def test_an_upheld_not_ours_appeal_goes_on_to_the_department_named(
    harness: Harness,
) -> None:
    appeal_id = await appealed(harness, ground="not_ours", statement="该事项由市场监管局办理")
    token = await signed_in(harness, "审核员", "reviewer")
    queue = (await harness.client.get("/review")).text
    assert 'name="department"' in queue  # only a not_ours appeal asks where it goes
    await harness.client.post(
        f"/review/appeals/{appeal_id}/decide",
        data={"csrf_token": token, "verdict": "uphold", "note": "确非本部门", "department": THEIRS},
    )
    with harness.rt.db.connect() as conn:
        ticket = conn.execute(sa.select(tickets)).one()
    assert ticket.department == THEIRS and ticket.state == "open"


async def test_a_decision_refused_shows_the_queue_again_with_the_reason(
    harness: Harness,
) -> None:
    appeal_id = await appealed(harness)
    token = await signed_in(harness, "审核员", "reviewer")
    no_note = await harness.client.post(
        f"/review/appeals/{appeal_id}/decide",
        data={"csrf_token": token, "verdict": "uphold", "note": " "},
    )
    assert no_note.status_code == 422 and f'data-refusal="appeal-{appeal_id}"' in no_note.text
    no_verdict = await harness.client.post(
        f"/review/appeals/{appeal_id}/decide",
        data={"csrf_token": token, "verdict": "maybe", "note": "想想"},
    )
    assert no_verdict.status_code == 422 and "想想" in no_verdict.text  # the note is kept
    await harness.client.post(
        f"/review/appeals/{appeal_id}/decide",
        data={"csrf_token": token, "verdict": "reject", "note": "证据不足"},
    )
    again = await harness.client.post(
        f"/review/appeals/{appeal_id}/decide",
        data={"csrf_token": token, "verdict": "uphold", "note": "改判"},
        params={"lang": "en"},
    )
    assert again.status_code == 409 and "This was decided already." in again.text
    unknown = await harness.client.post(
        "/review/flags/99999/decide", data={"csrf_token": token, "verdict": "clear", "note": "x"}
    )
    assert unknown.status_code == 404
    forged = await harness.client.post(
        f"/review/appeals/{appeal_id}/decide", data={"verdict": "uphold", "note": "x"}
    )
    assert forged.status_code == 403


async def staff_flagged(h: Harness) -> int:
    """A top rating from a registered staff contact (flagged by the rule): the flag's id."""
    listed = await h.client.put(
        "/api/v1/staff-contacts", json={"phones": ["13812341234"]}, headers=h.api_key("admin")
    )
    assert listed.status_code == 200, listed.text
    await h.report()
    for reply in ("5 5 5 5", "<script>alert(1)</script>服务很好"):
        await h.reply_text(reply)
    with h.rt.db.connect() as conn:
        return int(conn.execute(sa.select(flags.c.id)).scalar_one())


@pytest.mark.parametrize(("verdict", "flagged"), [("clear", False), ("confirm", True)])
async def test_a_reviewer_decides_a_fraud_flag(
    harness: Harness, verdict: str, flagged: bool
) -> None:
    flag_id = await staff_flagged(harness)
    token = await signed_in(harness, "审核员", "reviewer")
    queue = (await harness.client.get("/review")).text
    item = queue.split(f'data-flag="{flag_id}"', 1)[1].split("</article>", 1)[0]
    assert "工作人员本人评价" in item and "rated by a staff contact" in item  # the rule
    assert "&lt;script&gt;alert(1)&lt;/script&gt;服务很好" in item and "<script>" not in queue
    decided = await harness.client.post(
        f"/review/flags/{flag_id}/decide",
        data={"csrf_token": token, "verdict": verdict, "note": "已核查"},
    )
    assert decided.status_code == 303
    with harness.rt.db.connect() as conn:
        flag = conn.execute(sa.select(flags)).one()
        assert conn.execute(sa.select(ratings.c.flagged)).scalar() is flagged
    assert flag.state == ("cleared" if verdict == "clear" else "confirmed")
    assert audit_actions(harness, "flag", flag_id)[-1][1:] == ("user", "审核员")


async def test_a_supervisor_looks_but_does_not_decide(harness: Harness) -> None:
    appeal_id = await appealed(harness)
    token = await signed_in(harness, "主任", "supervisor")
    queue = await harness.client.get("/review")
    assert queue.status_code == 200 and "data-look-only" in queue.text
    assert f'data-appeal="{appeal_id}"' in queue.text and "data-decide" not in queue.text
    refused = await harness.client.post(
        f"/review/appeals/{appeal_id}/decide",
        data={"csrf_token": token, "verdict": "uphold", "note": "x"},
    )
    assert refused.status_code == 403
    with harness.rt.db.connect() as conn:
        assert conn.execute(sa.select(appeals.c.state)).scalar() == "pending"


async def test_a_department_may_not_open_the_queue(harness: Harness) -> None:
    await signed_in(harness, "科员甲", "department", OURS)
    assert (await harness.client.get("/review")).status_code == 403


@pytest.mark.parametrize(
    ("lang", "title"),
    [
        ("zh-CN", "申诉与异常评价审核"),
        ("zh-TW", "申訴與異常評價審核"),
        ("en", "Appeals and fraud flags"),
    ],
)
async def test_the_queue_renders_in_each_locale(harness: Harness, lang: str, title: str) -> None:
    await appealed(harness)
    await signed_in(harness, "审核员", "reviewer")
    page = await harness.client.get("/review", params={"lang": lang})
    assert page.status_code == 200 and title in page.text
    assert "page.review." not in page.text and "page.ticket." not in page.text
