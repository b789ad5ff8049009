"""The lists staff work from (``bot.tickets.queues``), on SQLite and on PostgreSQL: a department
sees its own departments' tickets only; the desk's order puts the work waiting for the department
first; "due today" is the local day's deadlines not yet passed; counts by state ignore the state
filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bot.tickets import queues
from bot.web.audit import Actor
from storage.tables import ratings, records, tickets
from tests.bot.conftest import Harness

SHANGHAI = ZoneInfo("Asia/Shanghai")
OURS = "市自然资源局"
THEIRS = "市市场监督管理局"
SUPERVISOR = Actor(kind="user", id=1, name="主任", role="supervisor")
_numbers = count(1)


def seed_ticket(
    h: Harness,
    *,
    department: str | None = OURS,
    state: str = "open",
    due_at: datetime,
    level: int = 1,
    comment: str | None = None,
    tier: str = "general",
) -> int:
    """A case, its bad review and the review's ticket, written straight into the tables (the
    lists only read them): the ticket's id."""
    n = next(_numbers)
    now = h.clock()
    with h.rt.db.begin() as conn:
        record_id = conn.execute(
            sa.insert(records)
            .values(
                record_no=f"370200-2026-9{n:03d}",
                item_code="11370200MB1234567X",
                item_name="不动产登记",
                department=department or OURS,
                district="370202",
                hall="烟台市政务服务中心",
                window="A12",
                clerk="张三",
                completed_at=now,
                locale="zh_Hans_CN",
                phone_enc=h.rt.privacy.encrypt("+8613812341234"),
                phone_mask="+86 138****1234",
                created_at=now,
            )
            .returning(records.c.id)
        ).scalar_one()
        rating_id = conn.execute(
            sa.insert(ratings)
            .values(
                conversation_id=f"seeded-{n}",
                conversation_key=f"seeded:{n}",
                record_id=record_id,
                channel="sms",
                provider="twilio",
                locale="zh_Hans_CN",
                level=level,
                comment=comment,
                status="complete",
                created_at=now,
                submitted_at=now,
            )
            .returning(ratings.c.id)
        ).scalar_one()
        ticket_id: int = conn.execute(
            sa.insert(tickets)
            .values(
                rating_id=rating_id,
                record_id=record_id,
                department=department,
                tier=tier,
                state=state,
                opened_at=now,
                due_at=due_at,
                paused_seconds=0,
                updated_at=now,
            )
            .returning(tickets.c.id)
        ).scalar_one()
    return ticket_id


def department_of(*departments: str) -> Actor:
    return Actor(
        kind="user", id=2, name="科员", role="department", departments=frozenset(departments)
    )


def test_today_ends_at_the_next_local_midnight() -> None:
    late_evening = datetime(2026, 11, 30, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    assert queues.end_of_today(late_evening, SHANGHAI) == datetime(2026, 11, 30, 16, tzinfo=UTC)
    past_midnight = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)  # 00:30 on 1 December
    assert queues.end_of_today(past_midnight, SHANGHAI) == datetime(2026, 12, 1, 16, tzinfo=UTC)


async def test_a_department_sees_its_own_tickets_only(harness: Harness) -> None:
    due = harness.clock() + timedelta(days=3)
    ours = seed_ticket(harness, department=OURS, due_at=due)
    seed_ticket(harness, department=THEIRS, due_at=due)
    seed_ticket(harness, department=None, due_at=due)
    with harness.rt.db.connect() as conn:
        mine = queues.ticket_page(
            conn, department_of(OURS), queues.TicketFilter(), harness.clock(), page=1, page_size=10
        )
        everyone = queues.ticket_page(
            conn, SUPERVISOR, queues.TicketFilter(), harness.clock(), page=1, page_size=10
        )
        triage = queues.ticket_page(
            conn,
            SUPERVISOR,
            queues.TicketFilter(unassigned=True),
            harness.clock(),
            page=1,
            page_size=10,
        )
    assert [row.id for row in mine.rows] == [ours] and mine.total == 1
    assert everyone.total == 3
    assert [row.department for row in triage.rows] == [None]


async def test_the_desk_puts_the_work_waiting_for_the_department_first(harness: Harness) -> None:
    now = harness.clock()
    closed_soonest = seed_ticket(harness, state="closed", due_at=now - timedelta(days=9))
    responded = seed_ticket(harness, state="responded", due_at=now - timedelta(days=5))
    open_late = seed_ticket(harness, state="open", due_at=now + timedelta(days=4))
    acknowledged_early = seed_ticket(harness, state="acknowledged", due_at=now + timedelta(days=1))
    with harness.rt.db.connect() as conn:
        desk = queues.ticket_page(
            conn, SUPERVISOR, queues.TicketFilter(), now, page=1, page_size=10, work_first=True
        )
        api = queues.ticket_page(conn, SUPERVISOR, queues.TicketFilter(), now, page=1, page_size=10)
    assert [row.id for row in desk.rows] == [
        acknowledged_early,
        open_late,
        responded,
        closed_soonest,
    ]
    assert [row.id for row in api.rows] == [
        closed_soonest,
        responded,
        acknowledged_early,
        open_late,
    ]


async def test_due_today_is_todays_deadlines_not_yet_passed(harness: Harness) -> None:
    now = harness.clock()  # Friday 27 November, 10:00 in Shanghai
    tonight = queues.end_of_today(now, SHANGHAI)  # the end of Friday: Saturday 00:00
    due_tonight = seed_ticket(harness, due_at=tonight)
    passed = seed_ticket(harness, due_at=now - timedelta(hours=1))
    tomorrow = seed_ticket(harness, due_at=tonight + timedelta(days=1))
    answered = seed_ticket(harness, state="responded", due_at=tonight)
    with harness.rt.db.connect() as conn:
        found = queues.ticket_page(
            conn, SUPERVISOR, queues.TicketFilter(due_by=tonight), now, page=1, page_size=10
        )
        overdue = queues.ticket_page(
            conn, SUPERVISOR, queues.TicketFilter(overdue=True), now, page=1, page_size=10
        )
        rows = {
            row.id: row for row in conn.execute(sa.select(tickets).order_by(tickets.c.id)).all()
        }
    assert [row.id for row in found.rows] == [due_tonight]
    assert [row.id for row in overdue.rows] == [passed]
    badged = [
        tid for tid, row in rows.items() if queues.due_today(row.state, row.due_at, now, SHANGHAI)
    ]
    assert badged == [due_tonight]
    assert not queues.due_today(rows[tomorrow].state, rows[tomorrow].due_at, now, SHANGHAI)
    assert not queues.due_today(rows[answered].state, rows[answered].due_at, now, SHANGHAI)


async def test_counts_by_state_keep_every_filter_but_the_state(harness: Harness) -> None:
    due = harness.clock() + timedelta(days=2)
    for state in ("open", "open", "acknowledged", "closed"):
        seed_ticket(harness, state=state, due_at=due)
    seed_ticket(harness, department=THEIRS, state="open", due_at=due)
    with harness.rt.db.connect() as conn:
        counted = queues.counts_by_state(
            conn, department_of(OURS), queues.TicketFilter(state="open"), harness.clock()
        )
    assert counted == {"open": 2, "acknowledged": 1, "responded": 0, "appealed": 0, "closed": 1}


async def test_paging_walks_every_ticket_once(harness: Harness) -> None:
    now = harness.clock()
    made = [seed_ticket(harness, due_at=now + timedelta(hours=n + 1)) for n in range(5)]
    seen: list[int] = []
    with harness.rt.db.connect() as conn:
        for page in (1, 2, 3):
            found = queues.ticket_page(
                conn, SUPERVISOR, queues.TicketFilter(), now, page=page, page_size=2
            )
            assert found.total == 5
            seen += [row.id for row in found.rows]
    assert seen == made
