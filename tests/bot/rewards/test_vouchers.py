"""Issuing parking vouchers: who earns one (any finished first rating of a real case at a hall
with parking, whatever its level), who does not, and that a case gets one exactly once even when
its finishing message comes twice or two workers race — on SQLite and on real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa

from bot import worker
from bot.conversation.turn import Conversations, conversation_key, load_session
from bot.rewards.vouchers import (
    ALPHABET,
    CODE_LENGTH,
    check_symbol,
    issue_voucher,
    new_code,
    parse_code,
    voucher_for_case,
)
from channels.sms import render_text
from dialogs import engine
from dialogs.events import InboundEvent, VoucherIssued
from storage.tables import records, vouchers
from tests.bot.conftest import PHONE, Harness
from tests.bot.parking_support import (
    HALL,
    HALL_NAME,
    admin,
    earn_voucher,
    finish_rating,
    put_hall,
    voucher_code,
)

RECORD = "370600-2026-000123"


def voucher_rows(h: Harness) -> list[Any]:
    with h.rt.db.connect() as conn:
        return list(conn.execute(sa.select(vouchers).order_by(vouchers.c.id)).all())


# --- the code -------------------------------------------------------------------------------


def test_codes_are_eleven_symbols_without_look_alikes_and_carry_a_check() -> None:
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in codes:
        assert len(code) == CODE_LENGTH and set(code) <= set(ALPHABET)
        assert parse_code(code) == code
    assert not set("01IO") & set(ALPHABET) and len(ALPHABET) == 32  # 10 symbols: 50 bits


def test_typed_codes_are_forgiving_in_form_and_strict_in_content() -> None:
    code = new_code()
    shown = f"{code[:4]}-{code[4:8]}-{code[8:]}"
    assert parse_code(shown.lower()) == code
    assert parse_code(f" {code[:4]} {code[4:]} ") == code
    for wrong in ("", code[:-1], code + "2", code[:3] + "0" + code[4:], "I" + code[1:]):
        assert parse_code(wrong) is None


def test_the_check_symbol_catches_every_single_typo_and_neighbour_swap() -> None:
    payload = new_code()[:-1]
    code = payload + check_symbol(payload)
    for position in range(CODE_LENGTH):
        for symbol in ALPHABET:
            if symbol != code[position]:
                typo = code[:position] + symbol + code[position + 1 :]
                assert parse_code(typo) is None, typo
    # Luhn mod N misses one swap of neighbours: the pair of values 0 and N-1 ("2" and "Z").
    for position in range(CODE_LENGTH - 1):
        a, b = code[position], code[position + 1]
        if a != b and {a, b} != {"2", "Z"}:
            swapped = code[:position] + b + a + code[position + 2 :]
            assert parse_code(swapped) is None, swapped


# --- who earns one --------------------------------------------------------------------------


async def test_a_finished_rating_earns_a_voucher_told_in_the_thanks(harness: Harness) -> None:
    await put_hall(harness, free_minutes=120, valid_hours=48)
    thanks = await finish_rating(harness, RECORD)
    shown = voucher_code(thanks)
    code = shown.replace("-", "")
    # hall, minutes, the code, its expiry in the hall's time (issued Fri 10:00 + 48 h), the page
    assert HALL_NAME in thanks and "120" in thanks and "2026-11-29 10:00" in thanks
    assert f"https://ratebot.example.gov.cn/v/{code}" in thanks
    [row] = voucher_rows(harness)
    assert row.state == "issued" and row.hall_code == HALL and row.free_minutes == 120
    assert row.expires_at == datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    # only a keyed hash and an encrypted copy are stored: never the code itself
    assert code not in row.code_hash and code not in row.code_enc
    assert harness.rt.privacy.decrypt(row.code_enc) == code


async def test_the_level_plays_no_part_a_one_star_rating_earns_the_same(
    harness: Harness,
) -> None:
    await put_hall(harness, free_minutes=90)
    good = await finish_rating(harness, "R-GOOD", phone="+8613800000001", level=5)
    bad = await finish_rating(harness, "R-BAD", phone="+8613800000002", level=1)
    assert voucher_code(good) != voucher_code(bad)
    rows = voucher_rows(harness)
    assert [r.free_minutes for r in rows] == [90, 90]
    assert rows[0].expires_at - rows[0].issued_at == rows[1].expires_at - rows[1].issued_at


async def test_a_record_naming_the_hall_by_its_code_earns_one_too(harness: Harness) -> None:
    await put_hall(harness, "YT-002", name="烟台市莱山区政务服务中心")
    await harness.report(RECORD, hall="YT-002")
    await harness.reply_text("4 4 4 4")
    assert "烟台市莱山区政务服务中心" in await harness.reply_text("0")
    assert [r.hall_code for r in voucher_rows(harness)] == ["YT-002"]


async def test_an_unsolicited_rating_earns_nothing(harness: Harness) -> None:
    await put_hall(harness)
    thanks = await finish_rating(harness, RECORD, report=False)  # no case: nobody invited
    assert thanks and not voucher_rows(harness)


async def test_halls_without_parking_earn_nothing(harness: Harness) -> None:
    await put_hall(harness, enabled=False, free_minutes=0)
    assert "/v/" not in await finish_rating(harness, "R-OFF", phone="+8613800000001")
    await put_hall(harness, name="另一个大厅")  # parking on, but not the record's hall
    assert "/v/" not in await finish_rating(harness, "R-OTHER", phone="+8613800000002")
    assert not voucher_rows(harness)


async def test_an_unfinished_rating_earns_nothing(harness: Harness) -> None:
    await put_hall(harness)
    await harness.report(RECORD)
    await harness.reply_text("5")  # the overall level, then silence
    harness.clock.advance(hours=73)  # past the survey's 72 hours
    await worker.run_due(harness.rt)
    with harness.rt.db.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM ratings")).scalar()
    assert status == "incomplete" and not voucher_rows(harness)


async def test_a_flagged_citizen_earns_no_further_voucher(harness: Harness) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, "R-1")
    revoked = await harness.client.post(
        f"/api/v1/vouchers/{code}/revoke",
        json={"reason": "appeal upheld: rating was bought", "flag_citizen": True},
        headers=admin(harness),
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked" and revoked.json()["citizen_flagged"] is True
    harness.clock.advance(hours=25)  # past the invitation cooldown
    thanks = await finish_rating(harness, "R-2")
    assert thanks and "/v/" not in thanks
    assert len(voucher_rows(harness)) == 1


async def test_only_the_first_rating_of_a_case_earns_one(harness: Harness) -> None:
    """A re-rating after rectification (evaluation count 2) is valid but earns nothing more."""
    h = harness
    with h.rt.db.begin() as conn:
        _hall(conn)
        record_id = _record(conn, "R-RE")
        _rating(conn, record_id, "conv-2", evaluation_count=2)
        assert issue_voucher(conn, h.rt.privacy, "https://x", "conv-2", h.clock()) is None
        _rating(conn, record_id, "conv-1", evaluation_count=1)
        assert issue_voucher(conn, h.rt.privacy, "https://x", "conv-1", h.clock()) is not None


# --- exactly once ---------------------------------------------------------------------------


async def test_a_redelivered_finishing_message_tells_the_same_voucher_once(
    harness: Harness,
) -> None:
    await put_hall(harness)
    await harness.report(RECORD)
    await harness.reply_text("5 4 5 5")
    first = await harness.reply_text("0", sid="SM-final")
    again = await harness.reply_text("0", sid="SM-final")
    assert voucher_code(first) == voucher_code(again)
    assert len(voucher_rows(harness)) == 1


async def test_the_finishing_message_delivered_twice_at_once_issues_one(harness: Harness) -> None:
    await put_hall(harness)
    await harness.report(RECORD)
    await harness.reply_text("5 4 5 5")
    replies = await asyncio.gather(*(harness.reply_text("0", sid="SM-twice") for _ in range(2)))
    assert voucher_code(replies[0]) == voucher_code(replies[1])
    assert len(voucher_rows(harness)) == 1


async def test_two_workers_applying_the_finishing_turn_at_once_issue_one(
    harness: Harness,
) -> None:
    """As if the conversation's lock were lost: the same last answer carried out twice, in two
    threads with their own transactions (on PostgreSQL they really overlap)."""
    await put_hall(harness)
    await harness.report(RECORD)
    await harness.reply_text("5 4 5 5")
    contact = harness.rt.privacy.contact_hash(PHONE)
    before = load_session(await harness.rt.store.get_json(conversation_key("sms", contact)))
    assert before is not None
    now = harness.clock()
    sprint = engine.resume(
        harness.rt.survey,
        before,
        InboundEvent("sms", contact, text="0"),
        now=now,
        new_session_id=str(uuid4()),
    )
    conversations = Conversations(harness.rt)
    start = threading.Barrier(2)

    def finish() -> list[Any]:
        start.wait()
        return conversations.apply(sprint, "sms", contact, now).events

    told = await asyncio.gather(*(asyncio.to_thread(finish) for _ in range(2)))
    issued = [e for events in told for e in events if isinstance(e, VoucherIssued)]
    # One voucher; the second carrying-out (a retry whose first reply was lost) tells the same
    # code again, never a second one.
    assert len(voucher_rows(harness)) == 1
    assert len(issued) == 2 and issued[0].code == issued[1].code


@pytest.mark.postgres
def test_concurrent_issues_for_one_case_on_postgres_insert_one(postgres_url: str) -> None:
    """The second transaction waits on the unique key until the first commits, then inserts
    nothing and tells the same voucher (the same rating's: a retried turn) — never a second
    voucher, never an error."""
    from storage.db import create_db_engine
    from storage.privacy import Privacy
    from tests.conftest import truncate_all

    truncate_all(postgres_url)
    db = create_db_engine(postgres_url)
    privacy = Privacy("test-secret-key-0123456789abcdef0123456789")
    now = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    with db.begin() as conn:
        _hall(conn)
        _rating(conn, _record(conn, "R-PG"), "conv-pg")
    first_inserted, results = threading.Event(), {}

    def first() -> None:
        with db.begin() as conn:
            results["first"] = issue_voucher(conn, privacy, "https://x", "conv-pg", now)
            first_inserted.set()
            threading.Event().wait(0.3)  # keep the transaction open while the second tries

    def second() -> None:
        first_inserted.wait(5)
        with db.begin() as conn:
            results["second"] = issue_voucher(conn, privacy, "https://x", "conv-pg", now)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert isinstance(results["first"], VoucherIssued) and results["second"] == results["first"]
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(vouchers)).scalar() == 1
    db.dispose()


# --- for the phone channel -------------------------------------------------------------------


async def test_voucher_for_case_tells_it_again(harness: Harness) -> None:
    await put_hall(harness)
    shown = voucher_code(await finish_rating(harness, RECORD))
    with harness.rt.db.connect() as conn:
        again = voucher_for_case(conn, harness.rt.privacy, "https://p", RECORD)
        unearned = voucher_for_case(conn, harness.rt.privacy, "https://p", "R-NONE")
    assert again is not None and again.code == shown and again.hall == HALL_NAME
    assert again.expires_at.utcoffset() == timedelta(hours=8)  # the hall's time
    assert unearned is None
    assert shown in render_text([again], "en")


# --- helpers --------------------------------------------------------------------------------


def _hall(conn: sa.Connection) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO halls (code, name, timezone, parking_enabled, free_minutes, valid_hours)"
            " VALUES (:code, :name, 'Asia/Shanghai', true, 60, 24)"
        ),
        {"code": HALL, "name": HALL_NAME},
    )


def _record(conn: sa.Connection, record_no: str) -> int:
    values = {"item_code": "I", "item_name": "N", "department": "D", "district": "370602"}
    return int(
        conn.execute(
            sa.insert(records)
            .values(record_no=record_no, hall=HALL, window="A1", locale="zh_Hans_CN", **values)
            .returning(records.c.id)
        ).scalar_one()
    )


def _rating(conn: sa.Connection, record_id: int, conversation_id: str, **values: Any) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO ratings (conversation_id, conversation_key, record_id, evaluation_count,"
            " channel, provider, citizen_hash, locale, level, status, unsolicited)"
            " VALUES (:cid, 'sms:x', :record_id, :count, 'sms', 'twilio', 'h', 'zh_Hans_CN', 3,"
            " 'complete', false)"
        ),
        {
            "cid": conversation_id,
            "record_id": record_id,
            "count": values.get("evaluation_count", 1),
        },
    )


async def test_a_rating_that_expires_at_the_optional_comment_earns_and_texts_its_voucher(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    await put_hall(harness)
    await harness.report(RECORD)
    await harness.reply_text("5 4 5 5")  # then silence at "any comment?"
    capsys.readouterr()
    harness.clock.advance(minutes=29)  # the survey's done_after_minutes is 30
    await worker.run_due(harness.rt)
    assert voucher_rows(harness) == [] and capsys.readouterr().out == ""
    harness.clock.advance(minutes=2)  # done: not 72 hours later, while the visit is still on
    await worker.run_due(harness.rt)
    [row] = voucher_rows(harness)
    assert row.state == "issued"
    texted = capsys.readouterr().out
    assert "[outbox sms] to +86 138****1234" in texted and HALL_NAME in texted
    assert harness.rt.privacy.decrypt(row.code_enc) in texted.replace("-", "")


async def test_a_citizen_who_reaches_the_comment_late_still_gets_the_voucher_soon(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker is not told of answers: it looks again after as long as the citizen has been
    away (at least 30 minutes), and then finds the conversation done."""
    await put_hall(harness)
    await harness.report(RECORD)
    await harness.reply_text("5")
    # Looked at 31, 62 and 124 minutes after the level (each time after as long again as the
    # citizen had been away): not done. The next look is then due at 248 minutes.
    for minutes in (31, 31, 62):
        harness.clock.advance(minutes=minutes)
        await worker.run_due(harness.rt)
    harness.clock.advance(minutes=30)  # 154 minutes: the citizen is back
    await harness.reply_text("4 5 5")  # and leaves at "any comment?"
    capsys.readouterr()
    harness.clock.advance(minutes=91)  # 245 minutes: done, but not looked at yet
    await worker.run_due(harness.rt)
    assert voucher_rows(harness) == []
    harness.clock.advance(minutes=3)
    await worker.run_due(harness.rt)
    [row] = voucher_rows(harness)
    assert row.state == "issued" and HALL_NAME in capsys.readouterr().out


async def test_a_citizen_writing_after_the_rating_is_told_the_voucher_again(
    harness: Harness,
) -> None:
    await put_hall(harness)
    thanks = await finish_rating(harness, RECORD)
    code = voucher_code(thanks)
    again = await harness.reply_text("停车码是多少")
    assert "已完成" in again and code in again  # the way back to a lost code
