"""The SMS spine end to end: a case is reported, the citizen is invited, replies, and the rating
lands in the database — driven over HTTP exactly as the platform and Twilio drive it."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

from sqlmodel import Session as DbSession
from sqlmodel import select
from twilio.request_validator import RequestValidator

from bot import worker
from storage.models import Invitation, OptOut, Rating, ServiceRecord
from tests.bot.conftest import AUTH_TOKEN, PHONE, PUBLIC_URL, Harness

RECORD = "370200-2026-0001"


async def record(h: Harness, record_no: str = RECORD) -> dict:
    response = await h.client.get(
        f"/api/v1/service-records/{record_no}", headers=h.api_key("platform")
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_report_invites_by_console_outbox_with_masked_number(
    harness: Harness, capsys
) -> None:
    response = await harness.report()
    assert response.status_code == 201, response.text
    body = response.json()
    invitation = body["invitations"][0]
    assert invitation["status"] == "sent"
    assert invitation["messages"][0]["status"] == "sent (console)"
    assert invitation["messages"][0]["to"] == "+86 138****1234"
    assert body["record"]["citizen"]["phone"] == "+86 138****1234"
    printed = capsys.readouterr().out
    assert "+86 138****1234" in printed and "不动产登记" in printed and "5 非常满意" in printed
    assert "13812341234" not in printed and "13812341234" not in response.text


async def test_full_good_rating_with_dimensions_and_comment(harness: Harness) -> None:
    await harness.report()
    assert "服务态度" in await harness.reply_text("5")
    await harness.reply_text("4")
    await harness.reply_text("５")
    assert "0" in await harness.reply_text("五星")  # the optional comment: "reply 0 to skip"
    thanks = await harness.reply_text("窗口工作人员很耐心")
    assert thanks
    rating = (await record(harness))["rating"]
    assert rating["status"] == "complete"
    assert rating["level"] == 5 and rating["bad_review"] is False
    assert rating["dimensions"] == {"attitude": 4, "efficiency": 5, "convenience": 5}
    assert rating["comment"] == "窗口工作人员很耐心"
    assert rating["record_no"] == RECORD and rating["hall"] == "烟台市政务服务中心"
    assert rating["channel"] == "sms" and rating["unsolicited"] is False
    assert rating["submitted_at"] and rating["created_at"]


async def test_bad_review_collects_complaint_and_callback_wish(harness: Harness) -> None:
    await harness.report()
    await harness.reply_text("1 2 2 1")  # the shortcut: overall and three dimensions at once
    await harness.reply_text("13")
    await harness.reply_text("材料被要求补交了三次")
    await harness.reply_text("1")
    rating = (await record(harness))["rating"]
    assert rating["status"] == "complete" and rating["level"] == 1 and rating["bad_review"] is True
    assert rating["dimensions"] == {"attitude": 2, "efficiency": 2, "convenience": 1}
    assert rating["complaint"] == {
        "problems": ["attitude", "repeated_visits"],
        "details": "材料被要求补交了三次",
        "wants_callback": True,
    }
    assert rating["comment"] is None


async def test_four_stars_over_sms_are_a_good_review_of_four_not_a_bad_review_of_one(
    harness: Harness,
) -> None:
    """Regression: "★★★★" as the first answer, with four level questions open, was split into
    four answers of 1; the citizen was told sorry and asked what went wrong."""
    await harness.report()
    reply = await harness.reply_text("★★★★")
    assert "服务态度" in reply
    assert (await record(harness))["rating"]["level"] == 4
    for stars in ("⭐⭐⭐", "★★", "🌟"):
        await harness.reply_text(stars)
    await harness.reply_text("0")
    rating = (await record(harness))["rating"]
    assert rating["status"] == "complete"
    assert rating["level"] == 4 and rating["bad_review"] is False and rating["complaint"] is None
    assert rating["dimensions"] == {"attitude": 3, "efficiency": 2, "convenience": 1}


async def test_duplicate_delivery_gets_same_reply_and_changes_nothing(harness: Harness) -> None:
    await harness.report()
    first = await harness.sms("4", sid="SM-dup-1")
    again = await harness.sms("4", sid="SM-dup-1")
    assert again.status_code == 200 and again.text == first.text
    # the next answer is the attitude dimension, not a second overall level
    await harness.reply_text("3")
    with DbSession(harness.rt.db) as db:
        ratings = db.exec(select(Rating)).all()
    assert len(ratings) == 1 and ratings[0].level == 4


async def test_concurrent_deliveries_for_one_number_lose_no_answer(harness: Harness) -> None:
    await harness.report()
    await harness.reply_text("5")
    replies = await asyncio.gather(harness.sms("4", sid="SM-a"), harness.sms("3", sid="SM-b"))
    assert all(r.status_code == 200 for r in replies)
    await harness.reply_text("2")
    await harness.reply_text("0")
    rating = (await record(harness))["rating"]
    assert rating["status"] == "complete"
    assert sorted(rating["dimensions"].values()) == [
        2,
        3,
        4,
    ]  # both racing answers kept, in some order


async def test_same_record_twice_is_200_and_invites_nobody_again(harness: Harness) -> None:
    assert (await harness.report()).status_code == 201
    second = await harness.report()
    assert second.status_code == 200
    assert len(second.json()["invitations"]) == 1


async def test_unsolicited_rating_is_kept_and_marked(harness: Harness) -> None:
    assert "非常满意" in await harness.reply_text("满意", phone="+8613900000000")
    response = await harness.client.get("/api/v1/ratings", headers=harness.api_key("admin"))
    items = response.json()["items"]
    assert len(items) == 1
    assert (
        items[0]["unsolicited"] is True and items[0]["record_no"] is None and items[0]["level"] == 4
    )


async def test_unsolicited_first_message_that_is_not_a_level_gets_the_opening_question(
    harness: Harness,
) -> None:
    reply = await harness.reply_text("你好", phone="+8613900000000")
    assert "5 非常满意" in reply
    with DbSession(harness.rt.db) as db:
        assert db.exec(select(Rating)).all() == []


async def test_stop_opts_out_once_and_later_invitations_are_suppressed(harness: Harness) -> None:
    await harness.report()
    await harness.reply_text("5")
    assert await harness.reply_text("TD")
    assert await harness.reply_text("退订") == ""  # confirmed once
    with DbSession(harness.rt.db) as db:
        assert len(db.exec(select(OptOut)).all()) == 1
        rating = db.exec(select(Rating)).one()
    assert rating.status == "incomplete" and rating.level == 5  # what was answered is kept
    harness.clock.advance(days=2)
    second = await harness.report("370200-2026-0002")
    invitation = second.json()["invitations"][0]
    assert invitation["status"] == "suppressed" and invitation["reason"] == "opted_out"
    assert await harness.reply_text("START")
    harness.clock.advance(days=2)
    third = await harness.report("370200-2026-0003")
    assert third.json()["invitations"][0]["status"] == "sent"


async def test_recently_invited_citizen_is_not_invited_again(harness: Harness) -> None:
    await harness.report()
    second = await harness.report("370200-2026-0002")
    invitation = second.json()["invitations"][0]
    assert invitation["status"] == "suppressed" and invitation["reason"] == "cooldown"


async def test_record_without_contact_is_suppressed_with_reason(harness: Harness) -> None:
    response = await harness.report(phone=None)
    assert response.json()["invitations"][0]["reason"] == "no_contact"


async def test_retries_exhausted_keeps_incomplete_rating(harness: Harness) -> None:
    await harness.report()
    await harness.reply_text("5")
    first = await harness.reply_text("很好")
    assert "服务态度" in first  # the same question again, with a hint
    await harness.reply_text("不知道")
    goodbye = await harness.reply_text("随便")
    assert goodbye
    rating = (await record(harness))["rating"]
    assert rating["status"] == "incomplete" and rating["level"] == 5 and rating["dimensions"] == {}
    # a late message hears the case is rated, and changes nothing
    assert await harness.reply_text("4")
    assert (await record(harness))["rating"]["level"] == 5


async def test_retries_without_level_make_no_rating(harness: Harness) -> None:
    await harness.report()
    for text in ("好", "嗯", "啊"):
        await harness.reply_text(text)
    assert (await record(harness))["rating"] is None


async def test_finished_rating_is_not_overwritten(harness: Harness) -> None:
    await harness.report()
    await harness.reply_text("5 5 5 5")
    await harness.reply_text("0")
    await harness.reply_text("1")
    rating = (await record(harness))["rating"]
    assert rating["level"] == 5 and rating["status"] == "complete"


async def test_help_explains_and_asks_again(harness: Harness) -> None:
    await harness.report()
    reply = await harness.reply_text("帮助")
    assert "5 非常满意" in reply


async def test_text_of_every_kind_is_stored_verbatim(harness: Harness) -> None:
    # 10 000 characters that still fit the 64 KiB form once percent-encoded
    comment = "'; DROP TABLE ratings; --\x07\u202e🙂 " + "长" * 2_000 + "x" * 7_971
    assert len(comment) == 10_000
    await harness.report()
    await harness.reply_text("5455")
    await harness.reply_text(comment)
    assert (await record(harness))["rating"]["comment"] == comment


async def test_quiet_hours_hold_the_invitation_until_morning(harness_quiet: Harness) -> None:
    h = harness_quiet
    h.clock.now = h.clock.now.replace(hour=14)  # 22:00 in Shanghai
    response = await h.report()
    invitation = response.json()["invitations"][0]
    assert invitation["status"] == "scheduled"
    assert invitation["scheduled_at"].startswith("2026-11-28T00:00:00")  # 08:00 local
    await worker.run_due(h.rt)
    assert (await record(h))["invitations"][0]["status"] == "scheduled"
    h.clock.advance(hours=10)
    await worker.run_due(h.rt)
    await worker.run_due(h.rt)  # a second worker pass sends nothing twice
    invitation = (await record(h))["invitations"][0]
    assert invitation["status"] == "sent" and len(invitation["messages"]) == 1


async def test_one_reminder_when_no_reply(harness: Harness) -> None:
    await harness.report()
    harness.clock.advance(hours=5)
    await worker.run_due(harness.rt)
    await worker.run_due(harness.rt)
    messages = (await record(harness))["invitations"][0]["messages"]
    assert [m["purpose"] for m in messages] == ["invitation", "reminder"]


async def test_no_reminder_after_a_reply(harness: Harness) -> None:
    await harness.report()
    await harness.reply_text("5")
    harness.clock.advance(hours=5)
    await worker.run_due(harness.rt)
    messages = (await record(harness))["invitations"][0]["messages"]
    assert [m["purpose"] for m in messages] == ["invitation"]


async def test_expired_conversation_keeps_incomplete_rating(harness: Harness) -> None:
    await harness.report()
    await harness.reply_text("2")
    await harness.reply_text("3")
    harness.clock.advance(hours=24)
    await worker.run_due(harness.rt)  # not yet expired: nothing changes
    assert (await record(harness))["rating"]["status"] == "in_progress"
    harness.clock.advance(hours=49)
    await worker.run_due(harness.rt)
    rating = (await record(harness))["rating"]
    assert rating["status"] == "incomplete" and rating["level"] == 2
    assert rating["dimensions"] == {"attitude": 3}


async def test_twiml_reply_is_valid_messaging_twiml(harness: Harness) -> None:
    await harness.report()
    response = await harness.sms("5")
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    assert root.tag == "Response" and [child.tag for child in root] == ["Message"]


async def test_phone_number_is_never_stored_in_clear(harness: Harness) -> None:
    await harness.report()
    await harness.reply_text("5")
    with DbSession(harness.rt.db) as db:
        rec = db.exec(select(ServiceRecord)).one()
        invitation = db.exec(select(Invitation)).one()
    dumped = repr(rec.model_dump()) + repr(invitation.model_dump())
    assert "13812341234" not in dumped
    assert harness.rt.privacy.decrypt(rec.phone_enc or "") == PHONE


async def test_workers_running_at_once_send_each_invitation_and_reminder_once(
    harness_quiet: Harness,
) -> None:
    h = harness_quiet
    h.clock.now = h.clock.now.replace(hour=14)  # 22:00 in Shanghai: all three wait for the morning
    for n in range(3):
        await h.report(f"370200-2026-01{n}", phone=f"+861390000000{n}")
    h.clock.advance(hours=10)
    await asyncio.gather(*(worker.run_due(h.rt) for _ in range(4)))
    h.clock.advance(hours=5)
    await asyncio.gather(*(worker.run_due(h.rt) for _ in range(4)))
    for n in range(3):
        messages = (await record(h, f"370200-2026-01{n}"))["invitations"][0]["messages"]
        assert [m["purpose"] for m in messages] == ["invitation", "reminder"]


async def test_busy_conversation_asks_to_resend_and_remembers_nothing(harness: Harness) -> None:
    from bot.conversation.turn import conversation_key
    from storage.state import conversation_store_from_url

    await harness.rt.store.close()
    harness.rt.store = conversation_store_from_url(harness.rt.settings.redis_url, lock_timeout=0.2)
    await harness.report()
    key = conversation_key("sms", harness.rt.privacy.contact_hash(PHONE))
    async with harness.rt.store.turn(key):  # another turn holds the conversation
        busy = await harness.reply_text("5", sid="SM-busy")
    assert "稍后" in busy
    assert "服务态度" in await harness.reply_text("5", sid="SM-busy")  # the resend counts


async def test_send_interrupted_midway_is_marked_failed_not_sent_twice(harness: Harness) -> None:
    await harness.report()
    with DbSession(harness.rt.db) as db:
        invitation = db.exec(select(Invitation)).one()
        invitation.status = "sending"  # as if the process died between claim and provider
        db.add(invitation)
        db.commit()
    harness.clock.advance(minutes=11)
    await worker.run_due(harness.rt)
    invitation = (await record(harness))["invitations"][0]
    assert invitation["status"] == "failed" and invitation["reason"] == "interrupted"
    assert len(invitation["messages"]) == 1


async def test_expiry_keeps_the_rating_when_the_state_store_lost_it(harness: Harness) -> None:
    """Regression guard: an in-memory store that restarted must not leave a rating in progress."""
    from storage.state import conversation_store_from_url

    await harness.report()
    await harness.reply_text("4")
    await harness.rt.store.close()
    harness.rt.store = conversation_store_from_url(None)  # everything the store held is gone
    harness.clock.advance(hours=73)
    await worker.run_due(harness.rt)
    rating = (await record(harness))["rating"]
    assert rating["status"] == "incomplete" and rating["level"] == 4


async def test_a_form_that_is_not_utf8_or_too_long_is_400_and_rates_nothing(
    harness: Harness,
) -> None:
    form = "From=%2B8613800138000&MessageSid=SM1&Body=%FF"  # a byte that is no UTF-8
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"}
    response = await harness.client.post("/channels/sms", content=form, headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"] == "the form is not UTF-8"
    many = "&".join(f"f{n}=1" for n in range(1001))
    response = await harness.client.post("/channels/sms", content=many, headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"] == "more than 1000 form fields"
    with DbSession(harness.rt.db) as db:
        assert db.exec(select(Rating)).all() == []


async def test_a_signature_of_the_url_with_its_port_is_accepted_too(harness: Harness) -> None:
    """Twilio signs the URL as it was configured; one that names the default port is valid."""
    form = {"From": PHONE, "To": "+8610690000", "Body": "5", "MessageSid": "SM-port"}
    netloc = urlsplit(PUBLIC_URL)
    port = 443 if netloc.scheme == "https" else 80
    with_port = f"{netloc.scheme}://{netloc.hostname}:{port}/channels/sms"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(with_port, form)
    headers = {"X-Twilio-Signature": signature}
    response = await harness.client.post("/channels/sms", data=form, headers=headers)
    assert response.status_code == 200
    wrong = {"X-Twilio-Signature": signature[:-2] + "AA"}
    response = await harness.client.post("/channels/sms", data={**form, "MessageSid": "SM-x"},
                                         headers=wrong)  # fmt: skip
    assert response.status_code == 403
