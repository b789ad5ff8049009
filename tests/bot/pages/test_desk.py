"""The department desk over HTTP, on SQLite and on PostgreSQL + Redis: the list is scoped to my
departments, filtered, paged and badged; every form carries out the API's act as the signed-in
account (the ticket's state changes, the audit row is written); the number for the callback is
shown once and never cached; another department's ticket is 403; citizens' words are text."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from bot import worker
from bot.tickets import queues
from storage.tables import audit_log, published_cases, recordings, tickets
from tests.bot.conftest import PHONE, FakeClock, Harness, make_settings, serving
from tests.bot.pages.support import create_user, sign_in
from tests.bot.tickets.test_queues import OURS, SHANGHAI, THEIRS, seed_ticket
from tests.bot.tickets.test_tickets_api import bad_review

TICKET_LINK = re.compile(r'href="/desk/tickets/(\d+)"')


def listed(html: str) -> list[int]:
    """The tickets a desk page lists, in its order (the triage queue's included)."""
    return [int(found) for found in TICKET_LINK.findall(html)]


def main_list(html: str) -> list[int]:
    """The tickets of the desk's own list (after the filters), without the triage queue."""
    return listed(html.split('id="list-title"', 1)[1])


def state_of(h: Harness, ticket_id: int) -> str:
    with h.rt.db.connect() as conn:
        return str(
            conn.execute(sa.select(tickets.c.state).where(tickets.c.id == ticket_id)).scalar()
        )


def audit_actions(h: Harness, entity: str, entity_id: int) -> list[tuple[str, str, str]]:
    """(action, actor kind, actor name) of the entity's audit rows, oldest first."""
    with h.rt.db.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.actor_kind, audit_log.c.actor_name)
            .where(audit_log.c.entity == entity, audit_log.c.entity_id == entity_id)
            .order_by(audit_log.c.id)
        ).all()
    return [tuple(row) for row in rows]


async def signed_in(h: Harness, name: str, role: str, *departments: str) -> str:
    create_user(h, name, role, departments)
    return await sign_in(h.client, name)


async def the_bad_review(h: Harness) -> int:
    """A bad review given over SMS to a case of ``OURS``: its ticket's id."""
    await bad_review(h)
    with h.rt.db.connect() as conn:
        return int(conn.execute(sa.select(tickets.c.id)).scalar_one())


# --- the list ---------------------------------------------------------------------------------


async def test_a_department_sees_its_own_departments_tickets_only(harness: Harness) -> None:
    due = harness.clock() + timedelta(days=3)
    ours = seed_ticket(harness, department=OURS, due_at=due)
    theirs = seed_ticket(harness, department=THEIRS, due_at=due)
    untriaged = seed_ticket(harness, department=None, due_at=due)
    await signed_in(harness, "科员甲", "department", OURS)
    page = await harness.client.get("/desk")
    assert page.status_code == 200, page.text
    assert listed(page.text) == [ours]
    assert "desk-triage" not in page.text  # the triage queue is the supervisors'
    # naming another department in the filter shows nothing of it
    other = await harness.client.get("/desk", params={"department": THEIRS})
    assert listed(other.text) == []

    harness.client.cookies.clear()
    await signed_in(harness, "主任", "supervisor")
    page = await harness.client.get("/desk")
    assert sorted(main_list(page.text)) == sorted([ours, theirs, untriaged])
    triage = page.text.split('id="triage-title"', 1)[1].split("</section>", 1)[0]
    assert listed(triage) == [untriaged]
    only_triage = await harness.client.get("/desk", params={"triage": "1"})
    assert main_list(only_triage.text) == [untriaged]


async def test_the_desk_shows_the_work_first_with_badges_counts_and_filters(
    harness: Harness,
) -> None:
    now = harness.clock()  # Friday 10:00 in Shanghai
    tonight = queues.end_of_today(now, SHANGHAI)
    closed = seed_ticket(harness, state="closed", due_at=now - timedelta(days=8))
    overdue = seed_ticket(harness, due_at=now - timedelta(hours=2))
    due_today = seed_ticket(harness, state="acknowledged", due_at=tonight)
    later = seed_ticket(harness, due_at=tonight + timedelta(days=3))
    await signed_in(harness, "科员甲", "department", OURS)

    page = (await harness.client.get("/desk")).text
    assert listed(page) == [overdue, due_today, later, closed]
    badges = {
        int(ticket): re.findall(r'data-badge="(\w+)"', item)
        for ticket, item in re.findall(r'data-ticket="(\d+)"(.*?)</li>', page, re.S)
    }
    assert badges == {overdue: ["overdue"], due_today: ["due_today"], later: [], closed: []}
    assert 'data-count="all">4<' in page
    assert 'data-count="open">2<' in page and 'data-count="closed">1<' in page
    assert "2026-11-27 24:00" in page  # today's deadline, as the end of the day

    async def shown(**params: str) -> list[int]:
        response = await harness.client.get("/desk", params=params)
        assert response.status_code == 200, response.text
        return listed(response.text)

    assert await shown(overdue="1") == [overdue]
    assert await shown(due_today="1") == [due_today]
    assert await shown(state="closed") == [closed]
    assert await shown(state="open") == [overdue, later]
    assert await shown(department=OURS, state="acknowledged") == [due_today]
    refused = await harness.client.get("/desk", params={"state": "lost"})
    assert refused.status_code == 422 and "<html" in refused.text


async def test_the_desk_pages_through_many_tickets(harness: Harness) -> None:
    now = harness.clock()
    made = [seed_ticket(harness, due_at=now + timedelta(hours=n + 1)) for n in range(27)]
    await signed_in(harness, "科员甲", "department", OURS)
    first = (await harness.client.get("/desk")).text
    assert listed(first) == made[:25]
    assert 'rel="next" href="/desk?page=2"' in first and 'rel="prev"' not in first
    second = (await harness.client.get("/desk", params={"page": "2"})).text
    assert listed(second) == made[25:]
    assert 'rel="prev" href="/desk"' in second and 'rel="next"' not in second


async def test_a_phone_screen_gets_the_list_as_cards_not_a_wide_table(harness: Harness) -> None:
    seed_ticket(harness, due_at=harness.clock() + timedelta(days=1))
    await signed_in(harness, "科员甲", "department", OURS)
    page = (await harness.client.get("/desk")).text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert 'class="desk-list"' in page and "<table" not in page
    css = (await harness.client.get("/static/pages.css")).text
    assert "/* desk */" in css and ".desk-item" in css.split("/* desk */", 1)[1]


# --- one ticket and its acts ------------------------------------------------------------------


async def test_a_department_answers_a_bad_review_through_the_forms(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    ticket_id = await the_bad_review(harness)
    token = await signed_in(harness, "科员甲", "department", OURS)
    page = await harness.client.get(f"/desk/tickets/{ticket_id}")
    assert page.status_code == 200, page.text
    assert "材料被要求补交了三次" in page.text and "烟台市政务服务中心" in page.text
    assert "+86 138****1234" in page.text and PHONE.removeprefix("+86") not in page.text
    assert 'data-act="acknowledge"' in page.text and 'data-act="respond"' not in page.text

    done = await harness.client.post(
        f"/desk/tickets/{ticket_id}/acknowledge", data={"csrf_token": token, "note": "已电话核实"}
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?done=acknowledge")
    assert state_of(harness, ticket_id) == "acknowledged"
    done = await harness.client.post(
        f"/desk/tickets/{ticket_id}/respond",
        data={"csrf_token": token, "outcome": "rectified", "text": "已对窗口人员批评教育"},
    )
    assert done.status_code == 303
    assert state_of(harness, ticket_id) == "responded"
    assert audit_actions(harness, "ticket", ticket_id) == [
        ("opened", "system", "ratebot"),
        ("acknowledge", "user", "科员甲"),
        ("respond", "user", "科员甲"),
    ]
    page = (await harness.client.get(f"/desk/tickets/{ticket_id}?done=respond")).text
    assert "已对窗口人员批评教育" in page and 'data-act="acknowledge"' not in page
    assert page.count('data-action="') == 3  # the timeline

    capsys.readouterr()
    await worker.run_due(harness.rt)
    told = capsys.readouterr().out
    assert "[outbox sms]" in told and "已对窗口人员批评教育" in told  # the citizen is told


async def test_an_appeal_through_its_form_pauses_the_ticket(harness: Harness) -> None:
    ticket_id = await the_bad_review(harness)
    token = await signed_in(harness, "科员甲", "department", OURS)
    done = await harness.client.post(
        f"/desk/tickets/{ticket_id}/appeal",
        data={"csrf_token": token, "ground": "malicious", "statement": "该市民当日并未到窗口办事"},
    )
    assert done.status_code == 303, done.text
    assert state_of(harness, ticket_id) == "appealed"
    assert audit_actions(harness, "ticket", ticket_id)[-1] == ("appeal", "user", "科员甲")
    page = (await harness.client.get(f"/desk/tickets/{ticket_id}")).text
    assert "该市民当日并未到窗口办事" in page and 'data-act="appeal"' not in page


async def test_an_act_the_state_refuses_shows_the_page_again_with_the_reason(
    harness: Harness,
) -> None:
    ticket_id = await the_bad_review(harness)
    token = await signed_in(harness, "科员甲", "department", OURS)
    early = await harness.client.post(
        f"/desk/tickets/{ticket_id}/respond",
        data={"csrf_token": token, "outcome": "rectified", "text": "已整改"},
        params={"lang": "en"},
    )
    assert early.status_code == 409
    assert "data-refusal" in early.text and "the ticket is “Open”" in early.text
    assert "已整改" in early.text  # what was typed is kept
    assert state_of(harness, ticket_id) == "open"
    empty = await harness.client.post(
        f"/desk/tickets/{ticket_id}/acknowledge", data={"csrf_token": token, "note": "  "}
    )
    assert empty.status_code == 422 and "data-refusal" in empty.text
    unknown = await harness.client.post(
        f"/desk/tickets/{ticket_id}/appeal",
        data={"csrf_token": token, "ground": "boring", "statement": "x"},
    )
    assert unknown.status_code == 422 and "data-refusal" in unknown.text
    assert state_of(harness, ticket_id) == "open"
    missing = await harness.client.post(
        "/desk/tickets/99999/acknowledge", data={"csrf_token": token, "note": "核实"}
    )
    assert missing.status_code == 404


async def test_a_form_without_the_sessions_csrf_token_is_refused(harness: Harness) -> None:
    ticket_id = await the_bad_review(harness)
    await signed_in(harness, "科员甲", "department", OURS)
    forged = await harness.client.post(
        f"/desk/tickets/{ticket_id}/acknowledge", data={"note": "核实", "csrf_token": "forged"}
    )
    assert forged.status_code == 403
    assert state_of(harness, ticket_id) == "open"


async def test_the_callback_number_is_shown_once_audited_and_never_cached(
    harness: Harness,
) -> None:
    ticket_id = await the_bad_review(harness)
    token = await signed_in(harness, "科员甲", "department", OURS)
    shown = await harness.client.post(
        f"/desk/tickets/{ticket_id}/contact", data={"csrf_token": token}
    )
    assert shown.status_code == 200, shown.text
    assert PHONE in shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert audit_actions(harness, "contact", ticket_id) == [("revealed", "user", "科员甲")]
    later = await harness.client.get(f"/desk/tickets/{ticket_id}")
    assert PHONE not in later.text and PHONE.removeprefix("+86") not in later.text
    assert later.headers["cache-control"] == "no-store"


async def test_another_departments_ticket_is_403(harness: Harness) -> None:
    ticket_id = await the_bad_review(harness)
    token = await signed_in(harness, "科员乙", "department", THEIRS)
    page = await harness.client.get(f"/desk/tickets/{ticket_id}")
    assert page.status_code == 403 and "<html" in page.text
    for act, fields in (("acknowledge", {"note": "核实"}), ("contact", {})):
        refused = await harness.client.post(
            f"/desk/tickets/{ticket_id}/{act}", data={"csrf_token": token, **fields}
        )
        assert refused.status_code == 403, act
    assert state_of(harness, ticket_id) == "open"
    assert audit_actions(harness, "contact", ticket_id) == []


async def test_a_reviewer_reads_a_ticket_but_acts_on_none(harness: Harness) -> None:
    ticket_id = await the_bad_review(harness)
    token = await signed_in(harness, "审核员", "reviewer")
    page = await harness.client.get(f"/desk/tickets/{ticket_id}")
    assert page.status_code == 200 and 'data-act="' not in page.text
    refused = await harness.client.post(
        f"/desk/tickets/{ticket_id}/acknowledge", data={"csrf_token": token, "note": "核实"}
    )
    assert refused.status_code == 403
    assert (await harness.client.get("/desk")).status_code == 403  # the list is not theirs


async def test_a_comment_holding_a_script_shows_as_text(harness: Harness) -> None:
    words = '<script>alert("x")</script><b>坏</b>'
    ticket_id = seed_ticket(harness, due_at=harness.clock() + timedelta(days=1), comment=words)
    await signed_in(harness, "科员甲", "department", OURS)
    page = (await harness.client.get(f"/desk/tickets/{ticket_id}")).text
    assert "<script>" not in page and "<b>坏</b>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;坏&lt;/b&gt;" in page


@pytest.mark.parametrize(
    ("lang", "title"),
    [("zh-CN", "差评工单"), ("zh-TW", "差評工單"), ("en", "Bad reviews")],
)
async def test_the_desk_and_a_ticket_render_in_each_locale(
    harness: Harness, lang: str, title: str
) -> None:
    ticket_id = await the_bad_review(harness)
    await signed_in(harness, "科员甲", "department", OURS)
    desk = await harness.client.get("/desk", params={"lang": lang})
    assert desk.status_code == 200 and title in desk.text
    page = await harness.client.get(f"/desk/tickets/{ticket_id}", params={"lang": lang})
    assert page.status_code == 200
    assert "page.ticket." not in page.text and "page.desk." not in page.text  # all translated


# --- the supervisor's acts --------------------------------------------------------------------


async def test_a_supervisor_triages_changes_the_tier_and_publishes(harness: Harness) -> None:
    ticket_id = seed_ticket(harness, department=None, due_at=harness.clock() + timedelta(days=5))
    token = await signed_in(harness, "主任", "supervisor")
    page = (await harness.client.get(f"/desk/tickets/{ticket_id}")).text
    assert 'data-act="assign"' in page and 'data-act="acknowledge"' not in page
    done = await harness.client.post(
        f"/desk/tickets/{ticket_id}/assign", data={"csrf_token": token, "department": OURS}
    )
    assert done.status_code == 303
    done = await harness.client.post(
        f"/desk/tickets/{ticket_id}/tier", data={"csrf_token": token, "tier": "immediate"}
    )
    assert done.status_code == 303
    unknown = await harness.client.post(
        f"/desk/tickets/{ticket_id}/tier", data={"csrf_token": token, "tier": "eventually"}
    )
    assert unknown.status_code == 422
    with harness.rt.db.connect() as conn:
        row = conn.execute(sa.select(tickets).where(tickets.c.id == ticket_id)).one()
    assert row.department == OURS and row.tier == "immediate"
    assert [a for a, _, _ in audit_actions(harness, "ticket", ticket_id)] == ["assign", "tier"]

    with harness.rt.db.begin() as conn:  # the department fixed it (as its own form would)
        conn.execute(
            sa.update(tickets)
            .where(tickets.c.id == ticket_id)
            .values(state="responded", outcome="rectified", response="已增设导办窗口")
        )
    page = (await harness.client.get(f"/desk/tickets/{ticket_id}")).text
    assert 'data-act="publish"' in page and "已增设导办窗口" in page
    refused = await harness.client.post(
        f"/desk/tickets/{ticket_id}/publish",
        data={"csrf_token": token, "text": "请拨打13812341234"},
    )
    assert refused.status_code == 422 and "data-refusal" in refused.text
    done = await harness.client.post(
        f"/desk/tickets/{ticket_id}/publish", data={"csrf_token": token, "text": "增设导办窗口"}
    )
    assert done.status_code == 303, done.text
    with harness.rt.db.connect() as conn:
        assert conn.execute(sa.select(published_cases.c.text)).scalars().all() == ["增设导办窗口"]
    page = (await harness.client.get(f"/desk/tickets/{ticket_id}")).text
    assert 'data-act="publish"' not in page and "增设导办窗口" in page


# --- the phone recordings -------------------------------------------------------------------

ACCOUNT = "AC" + "1" * 32
AUDIO = b"ID3\x03\x00fake mp3 frames"


@pytest.fixture
def twilio_media() -> Iterator[dict[str, Any]]:
    """Twilio's media URLs on 127.0.0.1: a recording's ``.mp3`` for the account's Basic auth."""
    seen: list[str] = []

    class Media(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            ok = self.path.endswith("/Recordings/RE1.mp3") and self.headers.get(
                "authorization", ""
            ).startswith("Basic ")
            self.send_response(200 if ok else 404)
            self.send_header("content-type", "audio/mpeg" if ok else "text/plain")
            body = AUDIO if ok else b"not found"
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Media)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"url": url, "seen": seen}
    server.shutdown()
    server.server_close()


async def test_a_recording_plays_through_ratebot_to_whoever_may_read_the_ticket(
    backend: dict[str, Any], clock: FakeClock, twilio_media: dict[str, Any]
) -> None:
    settings = make_settings(
        **backend, twilio_account_sid=ACCOUNT, twilio_api_url=twilio_media["url"]
    )
    async with serving(settings, clock) as harness:
        await _recording_plays(harness, twilio_media)


async def _recording_plays(harness: Harness, twilio_media: dict[str, Any]) -> None:
    ticket_id = seed_ticket(harness, due_at=harness.clock() + timedelta(days=1))
    base = f"{twilio_media['url']}/2010-04-01/Accounts/{ACCOUNT}/Recordings"
    with harness.rt.db.begin() as conn:
        rating_id = conn.execute(
            sa.select(tickets.c.rating_id).where(tickets.c.id == ticket_id)
        ).scalar_one()
        conn.execute(
            sa.insert(recordings),
            [
                {"rating_id": rating_id, "field": "details", "url": f"{base}/RE1"},
                {"rating_id": rating_id, "field": "comment", "url": "https://elsewhere.example/x"},
            ],
        )
        conn.execute(
            sa.update(recordings)
            .where(recordings.c.field == "details")
            .values(transcription="窗口让我<em>第三次</em>跑")
        )
    await signed_in(harness, "科员甲", "department", OURS)
    page = (await harness.client.get(f"/desk/tickets/{ticket_id}")).text
    assert (
        f'<audio controls preload="none" src="/desk/tickets/{ticket_id}/recordings/details">'
        in (page)
    )
    assert "窗口让我&lt;em&gt;第三次&lt;/em&gt;跑" in page
    audio = await harness.client.get(f"/desk/tickets/{ticket_id}/recordings/details")
    assert audio.status_code == 200 and audio.content == AUDIO
    assert audio.headers["content-type"] == "audio/mpeg"
    assert "no-store" in audio.headers["cache-control"]
    # an address that is not the Twilio account's is never fetched
    elsewhere = await harness.client.get(f"/desk/tickets/{ticket_id}/recordings/comment")
    assert elsewhere.status_code == 404
    assert twilio_media["seen"] == [f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE1.mp3"]

    harness.client.cookies.clear()
    await signed_in(harness, "科员乙", "department", THEIRS)
    refused = await harness.client.get(f"/desk/tickets/{ticket_id}/recordings/details")
    assert refused.status_code == 403
    assert len(twilio_media["seen"]) == 1


async def test_without_twilio_a_recording_is_not_served_but_its_transcript_is(
    harness: Harness,
) -> None:
    ticket_id = seed_ticket(harness, due_at=harness.clock() + timedelta(days=1))
    with harness.rt.db.begin() as conn:
        rating_id = conn.execute(
            sa.select(tickets.c.rating_id).where(tickets.c.id == ticket_id)
        ).scalar_one()
        conn.execute(
            sa.insert(recordings).values(
                rating_id=rating_id,
                field="details",
                url=f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE1",
                transcription="窗口让我跑了三次",
            )
        )
    await signed_in(harness, "科员甲", "department", OURS)
    page = (await harness.client.get(f"/desk/tickets/{ticket_id}")).text
    assert "窗口让我跑了三次" in page
    audio = await harness.client.get(f"/desk/tickets/{ticket_id}/recordings/details")
    assert audio.status_code == 404
