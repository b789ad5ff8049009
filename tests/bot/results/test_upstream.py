"""The push upward (上报), on SQLite and on PostgreSQL + Redis, against a fake provincial platform
on 127.0.0.1 that fails, times out and receives duplicates: one outbox row per change, written in
the change's transaction; delivered signed, with back-off, exactly once per (rating, version)
with two workers at once; dead after the last attempt, visible and retried through the API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from pydantic import ValidationError

from bot import worker
from bot.results import national, upstream
from bot.runtime import Runtime
from storage.tables import audit_log, flags, ratings, upstream_outbox
from tests.bot.conftest import PHONE, FakeClock, Harness, make_settings, serving
from tests.bot.tickets.test_loop import answer_ticket
from tests.bot.tickets.test_tickets_api import OURS, RECORD, act, bad_review, only_ticket
from tests.fakes.upstream import FakeUpstream

SECRET = "upstream-test-secret-0123456789"
TIMEOUT = 0.5  # seconds ratebot waits for the platform
STAFF_PHONE = "+8613700002222"
OTHER_PHONE = "+8613900001111"


@pytest.fixture
def platform() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(SECRET)
    fake.start()
    yield fake
    fake.stop()


def pushing_settings(backend: dict[str, Any], platform: FakeUpstream, **overrides: Any) -> Any:
    values = {
        "upstream_url": platform.url,
        "upstream_secret": SECRET,
        "upstream_timeout_seconds": TIMEOUT,
        "upstream_attempts": 4,
        "upstream_backoff_seconds": 60,
        **overrides,
    }
    return make_settings(**backend, **values)


@pytest.fixture
async def pushing(
    backend: dict[str, Any], clock: FakeClock, platform: FakeUpstream
) -> AsyncIterator[Harness]:
    """An app that pushes to the fake platform, in the national profile."""
    async with serving(pushing_settings(backend, platform), clock) as h:
        yield h


async def good_review(
    h: Harness, record_no: str = RECORD, phone: str = PHONE, answer: str = "5455"
) -> None:
    assert (await h.report(record_no, phone=phone)).status_code == 201
    await h.reply_text(answer, phone=phone)
    await h.reply_text("窗口服务很耐心", phone=phone)  # the comment: complete


def items(h: Harness) -> list[Any]:
    with h.rt.db.connect() as conn:
        return list(
            conn.execute(
                sa.select(upstream_outbox).order_by(upstream_outbox.c.rating_id, "version")
            ).all()
        )


def only_item(h: Harness) -> Any:
    [item] = items(h)
    return item


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_rating_is_pushed_once_signed_with_its_idempotency_key(
    pushing: Harness, platform: FakeUpstream
) -> None:
    await good_review(pushing)
    item = only_item(pushing)
    assert (item.version, item.reason, item.state, item.attempts) == (1, "rating", "pending", 0)
    assert item.body["办件编号"] == RECORD
    assert item.body["评价渠道"] == "短信"
    assert item.body["评价人"] == "+86 138****1234"
    assert item.body["评价时间"] == "20261127T100000"  # local time in Shanghai
    assert (item.body["满意度"], item.body["满意度代码"]) == ("非常满意", "1")  # table A.8
    assert item.body["文字评价"] == "窗口服务很耐心"
    assert item.body["ratebot"] == {
        "rating_id": item.rating_id,
        "version": 1,
        "reason": "rating",
        "counts": True,
        "not_counted": None,
    }
    sent_before = metric("ratebot_upstream_sent_total")
    await worker.run_due(pushing.rt)
    [received] = platform.received
    assert received.key == f"{item.rating_id}-1"
    assert received.signed  # the fake checked it with its own copy of the secret
    assert received.json == item.body
    assert PHONE.removeprefix("+86").encode() not in received.body
    # the README's check, over the raw bytes received
    digest = hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    assert upstream.signature(SECRET, received.body) == f"sha256={digest}"
    item = only_item(pushing)
    assert (item.state, item.attempts, item.last_error) == ("sent", 1, None)
    assert item.sent_at == pushing.clock()
    assert metric("ratebot_upstream_sent_total") == sent_before + 1
    pushing.clock.advance(hours=1)
    await worker.run_due(pushing.rt)
    assert len(platform.received) == 1  # sent once


async def test_a_rating_nobody_finished_or_with_no_case_is_never_pushed(
    pushing: Harness,
) -> None:
    await pushing.report()
    await pushing.reply_text("5")  # the overall level: a rating in progress
    assert items(pushing) == []
    with pushing.rt.db.begin() as conn:
        rating_id = conn.execute(sa.select(ratings.c.id)).scalar_one()
        assert conn.execute(sa.select(ratings.c.status)).scalar_one() == "in_progress"
        assert upstream.enqueue(conn, rating_id, "rating", pushing.clock()) is None
    # an unsolicited rating has no 办件编号: it counts for no department and is not pushed
    for reply in ("4 4 4 4", "很好"):
        await pushing.reply_text(reply, phone="+8613600005555")
    assert items(pushing) == []


async def test_nothing_is_written_without_a_url_and_no_query_is_run(harness: Harness) -> None:
    await good_review(harness)
    assert items(harness) == []
    statements: list[str] = []
    with harness.rt.db.begin() as conn:
        rating_id = conn.execute(sa.select(ratings.c.id)).scalar_one()
        sa.event.listen(conn, "before_cursor_execute", lambda *a: statements.append(a[2]))
        assert upstream.enqueue(conn, rating_id, "rating", harness.clock()) is None
    assert statements == []


@pytest.mark.parametrize(
    ("profile", "level_code", "codes"),
    [
        ("national", "满意度代码", {5: "1", 1: "5"}),  # GB/T 39046 table A.8: 1 = 非常满意
        ("provincial", "satisfaction", {5: "5", 1: "1"}),  # the provincial interfaces: 5 = 非常满意
    ],
)
async def test_the_profiles_name_the_fields_and_code_the_levels_their_way(
    backend: dict[str, Any],
    clock: FakeClock,
    platform: FakeUpstream,
    profile: str,
    level_code: str,
    codes: dict[int, str],
) -> None:
    async with serving(pushing_settings(backend, platform, upstream_profile=profile), clock) as h:
        await good_review(h)  # level 5
        assert (await h.report("370200-2026-0002", phone=OTHER_PHONE)).status_code == 201
        for reply in ("1 2 2 1", "13", "材料被要求补交了三次", "2"):  # level 1
            await h.reply_text(reply, phone=OTHER_PHONE)
        top, bottom = items(h)
    assert (top.body[level_code], bottom.body[level_code]) == (codes[5], codes[1])
    if profile == "national":
        assert list(top.body) == [*national.FIELDS, "ratebot"]  # table 9, in its order
        assert top.body["评价渠道"] == "短信" and top.body["评价次数"] == "1"
    else:
        assert list(top.body) == [*upstream.PROVINCIAL_FIELDS.values(), "ratebot"]
        assert top.body["pf"] == "7"  # 短信
        assert top.body["assessTime"] == "2026-11-27 10:00:00"
        assert top.body["projectno"] == RECORD and top.body["assessNumber"] == "1"
        assert top.body["areacode"] == "370202"


async def test_a_failing_platform_is_tried_with_back_off_then_the_item_is_dead_and_retried(
    pushing: Harness, platform: FakeUpstream
) -> None:
    platform.answers = ["fail"] * 4
    await good_review(pushing)
    failures_before = metric("ratebot_upstream_failures_total")
    for attempt, wait in ((1, 60), (2, 120), (3, 240)):
        await worker.run_due(pushing.rt)
        item = only_item(pushing)
        assert (item.state, item.attempts) == ("pending", attempt)
        assert item.next_attempt_at == pushing.clock() + timedelta(seconds=wait)
        assert item.last_error.startswith("HTTP 500")
        pushing.clock.advance(seconds=wait - 1)
        await worker.run_due(pushing.rt)
        assert len(platform.received) == attempt  # not yet
        pushing.clock.advance(seconds=1)
    await worker.run_due(pushing.rt)  # the fourth and last attempt
    item = only_item(pushing)
    assert (item.state, item.attempts, item.next_attempt_at) == ("dead", 4, None)
    assert metric("ratebot_upstream_failures_total") == failures_before + 4
    assert metric("ratebot_upstream_dead") == 1
    pushing.clock.advance(days=1)
    await worker.run_due(pushing.rt)
    assert len(platform.received) == 4  # a dead item waits for a person

    department = pushing.api_key("department", OURS)
    supervisor = pushing.api_key("supervisor")
    listed = await pushing.client.get("/api/v1/upstream?state=dead", headers=department)
    assert listed.status_code == 403
    refused = await pushing.client.post(f"/api/v1/upstream/{item.id}/retry", headers=department)
    assert refused.status_code == 403
    listed = await pushing.client.get("/api/v1/upstream?state=dead", headers=supervisor)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["total"] == 1 and page["page"] == 1
    [dead] = page["items"]
    assert dead["id"] == item.id and dead["attempts"] == 4 and "500" in dead["last_error"]
    assert dead["idempotency_key"] == f"{item.rating_id}-1"
    pending = await pushing.client.get("/api/v1/upstream?state=pending", headers=supervisor)
    assert pending.json()["total"] == 0

    retried = await pushing.client.post(f"/api/v1/upstream/{item.id}/retry", headers=supervisor)
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "pending" and retried.json()["attempts"] == 0
    again = await pushing.client.post(f"/api/v1/upstream/{item.id}/retry", headers=supervisor)
    assert again.status_code == 409 and "pending" in again.json()["detail"]
    unknown = await pushing.client.post("/api/v1/upstream/999999/retry", headers=supervisor)
    assert unknown.status_code == 404
    with pushing.rt.db.connect() as conn:
        [entry] = conn.execute(sa.select(audit_log).where(audit_log.c.entity == "upstream")).all()
    assert (entry.action, entry.entity_id, entry.actor_role) == ("retry", item.id, "supervisor")
    assert entry.before["state"] == "dead" and entry.after == {"state": "pending", "attempts": 0}

    await worker.run_due(pushing.rt)  # the platform is back
    assert only_item(pushing).state == "sent"
    assert metric("ratebot_upstream_dead") == 0
    assert platform.keys() == {f"{item.rating_id}-1": 5}  # one key, every time
    assert len(platform.stored) == 1


async def test_a_timeout_is_tried_again_with_the_same_key_and_the_platform_keeps_one(
    pushing: Harness, platform: FakeUpstream
) -> None:
    """The platform took the first request but answered too late; the second one is a
    duplicate it answers 200 again."""
    platform.answers = ["slow"]
    await good_review(pushing)
    await worker.run_due(pushing.rt)
    item = only_item(pushing)
    assert (item.state, item.attempts) == ("pending", 1)
    assert item.last_error == f"timed out after {TIMEOUT:g} s"
    pushing.clock.advance(seconds=60)
    await worker.run_due(pushing.rt)
    item = only_item(pushing)
    assert (item.state, item.attempts) == ("sent", 2)
    key = f"{item.rating_id}-1"
    assert platform.keys() == {key: 2}  # received twice, under one key
    assert list(platform.stored) == [key]  # kept once


async def test_a_worker_killed_mid_send_leaves_its_item_to_another_after_the_lease(
    pushing: Harness, platform: FakeUpstream
) -> None:
    await good_review(pushing)
    [claimed] = upstream._claim(pushing.rt, pushing.clock())  # … and the worker dies
    await worker.run_due(pushing.rt)
    assert platform.received == []  # the claim holds for the timeout and a margin
    assert only_item(pushing).state == "sending"
    pushing.clock.advance(seconds=TIMEOUT + 60)
    await worker.run_due(pushing.rt)
    item = only_item(pushing)
    assert (item.state, item.attempts) == ("sent", 2)
    assert platform.keys() == {claimed.idempotency_key: 1}
    # the dead worker's late word changes nothing: its claim was taken over
    upstream._settle(pushing.rt, [(claimed, "HTTP 500: late")], pushing.clock())
    assert only_item(pushing).state == "sent"


def more_ratings(h: Harness, count: int) -> None:
    """``count`` more finished ratings like the one there is, each with its push due now (rows
    for the workers; a rating's own versions would go one at a time)."""
    first = only_item(h)
    with h.rt.db.begin() as conn:
        rating = conn.execute(sa.select(ratings)).mappings().one()
        for n in range(count):
            copy = {**rating, "conversation_id": f"copy-{n}", "record_id": None}
            del copy["id"]
            rating_id = conn.execute(
                sa.insert(ratings).values(copy).returning(ratings.c.id)
            ).scalar_one()
            body = {**first.body, "ratebot": {**first.body["ratebot"], "rating_id": rating_id}}
            conn.execute(
                sa.insert(upstream_outbox).values(
                    rating_id=rating_id,
                    version=1,
                    reason="rating",
                    body=body,
                    state="pending",
                    attempts=0,
                    next_attempt_at=h.clock(),
                    created_at=h.clock(),
                )
            )


async def test_a_claim_takes_one_batch_at_most(pushing: Harness) -> None:
    """Regression: claimed as ``id IN (SELECT … LIMIT 20 FOR UPDATE SKIP LOCKED)``, PostgreSQL
    gave one worker all 60 due rows, and the other worker none."""
    await good_review(pushing)
    more_ratings(pushing, 24)
    assert len(upstream._claim(pushing.rt, pushing.clock())) == upstream.BATCH
    assert len(upstream._claim(pushing.rt, pushing.clock())) == 25 - upstream.BATCH


async def test_two_workers_at_once_never_send_one_version_twice(
    backend: dict[str, Any], clock: FakeClock, platform: FakeUpstream
) -> None:
    # A timeout would send its item again, rightly (the platform may have it): give 40
    # requests at once on a busy machine all the time they need.
    settings = pushing_settings(backend, platform, upstream_timeout_seconds=30)
    async with serving(settings, clock) as h:
        await good_review(h)
        more_ratings(h, 59)
        platform.delay_seconds = 0.05  # the workers' rounds overlap
        other = Runtime.from_settings(settings, clock=clock)
        try:
            tried = await asyncio.gather(upstream.deliver_due(h.rt), upstream.deliver_due(other))
        finally:
            await other.close()
        assert sum(tried) == 60 and all(tried)  # both worked, neither took the other's rows
        assert {(item.state, item.last_error) for item in items(h)} == {("sent", None)}
    keys = platform.keys()
    assert len(keys) == 60 and set(keys.values()) == {1}
    assert all(received.signed for received in platform.received)


async def test_an_exclusion_after_the_push_is_version_2_with_reason_counts(
    pushing: Harness, platform: FakeUpstream
) -> None:
    await bad_review(pushing)
    await worker.run_due(pushing.rt)
    sent = only_item(pushing)
    assert sent.state == "sent" and sent.body["满意度"] == "非常不满意"
    assert sent.body["满意度代码"] == "5" and sent.body["ratebot"]["counts"] is True
    await uphold_malicious_appeal(pushing)
    first, second = items(pushing)
    assert (second.version, second.reason, second.state) == (2, "counts", "pending")
    assert second.body["ratebot"] == {
        "rating_id": first.rating_id,
        "version": 2,
        "reason": "counts",
        "counts": False,
        "not_counted": "excluded",
    }
    assert {k: v for k, v in second.body.items() if k != "ratebot"} == {
        k: v for k, v in first.body.items() if k != "ratebot"
    }
    await worker.run_due(pushing.rt)
    assert platform.keys() == {f"{first.rating_id}-1": 1, f"{first.rating_id}-2": 1}


async def uphold_malicious_appeal(h: Harness) -> None:
    ours = h.api_key("department", OURS)
    ticket_id = (await only_ticket(h, ours))["id"]
    filed = await act(h, ticket_id, "appeal", ours, ground="malicious", statement="恶意差评")
    assert filed.status_code == 200, filed.text
    reviewer = h.api_key("reviewer")
    [appeal] = (await h.client.get("/api/v1/appeals", headers=reviewer)).json()["items"]
    decided = await h.client.post(
        f"/api/v1/appeals/{appeal['id']}/decide",
        json={"upheld": True, "note": "经核查属恶意差评"},
        headers=reviewer,
    )
    assert decided.status_code == 200, decided.text


async def test_a_later_version_waits_until_the_earlier_one_is_sent(
    pushing: Harness, platform: FakeUpstream
) -> None:
    platform.answers = ["fail"]
    await bad_review(pushing)
    await worker.run_due(pushing.rt)  # version 1 fails: back-off
    await uphold_malicious_appeal(pushing)  # version 2, due now
    await worker.run_due(pushing.rt)
    first, second = items(pushing)
    assert (first.state, second.state) == ("pending", "pending")
    assert len(platform.received) == 1  # version 2 did not overtake version 1
    pushing.clock.advance(seconds=60)
    await worker.run_due(pushing.rt)
    await worker.run_due(pushing.rt)
    assert [r.key for r in platform.received] == [
        f"{first.rating_id}-1",
        f"{first.rating_id}-1",
        f"{first.rating_id}-2",
    ]
    assert {item.state for item in items(pushing)} == {"sent"}


async def test_a_flagged_rating_is_pushed_only_when_it_is_cleared(
    pushing: Harness, platform: FakeUpstream
) -> None:
    admin = pushing.api_key("admin")
    staff = await pushing.client.put(
        "/api/v1/staff-contacts", json={"phones": [STAFF_PHONE]}, headers=admin
    )
    assert staff.status_code == 200, staff.text
    await good_review(pushing, phone=STAFF_PHONE)  # flagged as it finishes
    assert items(pushing) == []  # never counted: the platform is told nothing
    with pushing.rt.db.connect() as conn:
        flag_id = conn.execute(sa.select(flags.c.id)).scalar_one()
    cleared = await pushing.client.post(
        f"/api/v1/flags/{flag_id}/decide",
        json={"confirmed": False, "note": "本人办事"},
        headers=pushing.api_key("reviewer"),
    )
    assert cleared.status_code == 200, cleared.text
    item = only_item(pushing)
    assert (item.version, item.reason) == (1, "counts")
    assert item.body["ratebot"]["counts"] is True


async def test_a_rerating_is_pushed_as_the_cases_second_evaluation(
    pushing: Harness, platform: FakeUpstream
) -> None:
    await bad_review(pushing)
    ticket_id = (await only_ticket(pushing, pushing.api_key("supervisor")))["id"]
    pushing.clock.advance(hours=3)
    await answer_ticket(pushing, ticket_id)
    await worker.run_due(pushing.rt)  # tells the citizen, opens the re-rating; pushes the first
    for reply in ("4 4 5 4", "0"):
        await pushing.reply_text(reply)
    first, second = items(pushing)
    assert second.rating_id != first.rating_id
    assert (second.version, second.reason) == (1, "rerating")
    assert second.body["评价次数"] == "2" and second.body["满意度"] == "满意"
    assert second.body["办件编号"] == first.body["办件编号"] == RECORD


def test_the_secret_is_required_with_the_url() -> None:
    with pytest.raises(ValidationError, match="RATEBOT_UPSTREAM_SECRET is required"):
        make_settings("sqlite://", upstream_url="https://hcp.example.gov.cn/push")
    with pytest.raises(ValidationError, match="http:// or https://"):
        make_settings("sqlite://", upstream_url="hcp.example.gov.cn", upstream_secret=SECRET)
