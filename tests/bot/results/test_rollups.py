"""The rollups against the raw ratings, on SQLite and on PostgreSQL: after a mixed history — good
and bad reviews on two local days, a re-rating after the department answered, an appeal upheld,
a rating from a staff contact flagged then cleared, an unsolicited rating — the worker's live
rollups equal a rebuild from the raw rows, and both equal the counting rules applied here in
plain Python (an independent count, not the code under test)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from bot import worker
from bot.results import rollups
from bot.results.counting import local_day
from storage.tables import flags, ratings, records, result_changes, result_counts, tickets
from tests.bot.conftest import PHONE, Harness
from tests.bot.tickets.test_loop import answer_ticket
from tests.bot.tickets.test_tickets_api import OURS, act, bad_review

ZONE = "Asia/Shanghai"
OTHER_PHONE = "+8613900001111"
STAFF_PHONE = "+8613700002222"
THIRD_PHONE = "+8613500006666"


async def good_review(h: Harness, record_no: str, phone: str, answer: str = "5455") -> None:
    assert (await h.report(record_no, phone=phone)).status_code == 201
    await h.reply_text(answer, phone=phone)
    await h.reply_text("很好", phone=phone)  # the comment: complete


def snapshot(h: Harness, grain: str = "day") -> set[tuple[Any, ...]]:
    with h.rt.db.connect() as conn:
        rows = conn.execute(sa.select(result_counts).where(result_counts.c.grain == grain)).all()
    return {tuple(row) for row in rows if any(row._mapping[c] for c in rollups.COUNTERS)}


def by_department(h: Harness) -> dict[tuple[date, str], tuple[int, ...]]:
    """The day rollup of the department groups: day, department → counted, levels, re-ratings."""
    with h.rt.db.connect() as conn:
        rows = conn.execute(
            sa.select(result_counts).where(
                result_counts.c.grain == "day", result_counts.c.kind == "department"
            )
        ).mappings()
        found: Counter[tuple[date, str, str]] = Counter()
        for row in rows:
            for name in ("counted", *(f"level_{n}" for n in range(1, 6)), "rerated"):
                found[(row["day"], row["key"], name)] += row[name]
    return _fold(found)


def _fold(found: Counter[tuple[date, str, str]]) -> dict[tuple[date, str], tuple[int, ...]]:
    names = ("counted", *(f"level_{n}" for n in range(1, 6)), "rerated")
    keys = {(day, key) for day, key, _ in found}
    return {k: tuple(found[(*k, name)] for name in names) for k in keys if found[(*k, "counted")]}


def oracle(h: Harness, evaluation: str = "latest") -> dict[tuple[date, str], tuple[int, ...]]:
    """The counting rules, applied in Python to every rating row."""
    with h.rt.db.connect() as conn:
        rows = conn.execute(
            sa.select(ratings, records.c.department).join(
                records, records.c.id == ratings.c.record_id
            )
        ).mappings()
        rows = [dict(r) for r in rows]
    countable = [
        r
        for r in rows
        if r["status"] in ("complete", "incomplete")
        and r["excluded_at"] is None
        and not r["flagged"]
    ]
    stand: dict[int, dict[str, Any]] = {}
    for r in countable:
        best = stand.get(r["record_id"])
        later = best is None or (
            r["evaluation_count"] > best["evaluation_count"]
            if evaluation == "latest"
            else r["evaluation_count"] < best["evaluation_count"]
        )
        if later:
            stand[r["record_id"]] = r
    found: Counter[tuple[date, str, str]] = Counter()
    for r in stand.values():
        day = local_day(r["submitted_at"], ZONE)
        found[(day, r["department"], "counted")] += 1
        found[(day, r["department"], f"level_{r['level']}")] += 1
    for r in countable:
        if r["evaluation_count"] == 2:
            found[(local_day(r["submitted_at"], ZONE), r["department"], "rerated")] += 1
    return _fold(found)


def rebuild_all(h: Harness) -> None:
    rollups.rebuild(h.rt.db, h.rt.settings, date(2026, 11, 1), date(2026, 12, 31))


async def mixed_history(h: Harness) -> None:
    admin = h.api_key("admin")
    reviewer = h.api_key("reviewer")
    staff = await h.client.put(
        "/api/v1/staff-contacts", json={"phones": [STAFF_PHONE]}, headers=admin
    )
    assert staff.status_code == 200, staff.text
    # Friday 27 Nov, 10:00 Shanghai: a bad review (its ticket), a good one, one from staff.
    await bad_review(h)
    await good_review(h, "370200-2026-0002", OTHER_PHONE)
    await good_review(h, "370200-2026-0003", STAFF_PHONE)
    # 23:30 Shanghai (15:30 UTC): a review that belongs to Friday in Shanghai…
    h.clock.advance(hours=13, minutes=30)
    await good_review(h, "370200-2026-0004", "+8613600003333", answer="3 3 3 3")
    # … and one an hour later, on Saturday in Shanghai though still Friday in UTC.
    h.clock.advance(hours=1)
    await good_review(h, "370200-2026-0005", "+8613600004444", answer="4 4 4 4")
    # An unsolicited rating: the channel's totals only.
    await h.reply_text("5455", phone="+8613600005555")
    await h.reply_text("很好", phone="+8613600005555")
    # Monday: the department answers the bad review; the citizen rates again (4).
    h.clock.advance(days=2)
    with h.rt.db.connect() as conn:
        ticket_id = conn.execute(sa.select(tickets.c.id)).scalar_one()
    await answer_ticket(h, ticket_id)
    await worker.run_due(h.rt)  # tells the citizen, opens the re-rating
    for reply in ("4 4 5 4", "0"):
        await h.reply_text(reply)
    # The staff contact's rating: flagged, then cleared by a reviewer. (Each act below follows
    # a worker pass, so that only the act's own marks can bring the figures up to date.)
    await worker.run_due(h.rt)
    with h.rt.db.connect() as conn:
        flag_id = conn.execute(sa.select(flags.c.id)).scalar_one()
    cleared = await h.client.post(
        f"/api/v1/flags/{flag_id}/decide",
        json={"confirmed": False, "note": "本人"},
        headers=reviewer,
    )
    assert cleared.status_code == 200, cleared.text
    # A second bad review, appealed as malicious and upheld: out of the statistics.
    assert (await h.report("370200-2026-0006", phone=THIRD_PHONE)).status_code == 201
    for reply in ("1 2 2 1", "13", "态度恶劣", "2"):
        await h.reply_text(reply, phone=THIRD_PHONE)
    with h.rt.db.connect() as conn:
        second = conn.execute(sa.select(sa.func.max(tickets.c.id))).scalar_one()
    ours = h.api_key("department", OURS)
    appealed = await act(h, second, "appeal", ours, ground="malicious", statement="恶意差评")
    assert appealed.status_code == 200, appealed.text
    with h.rt.db.connect() as conn:
        appeal_id = conn.execute(sa.text("SELECT id FROM appeals")).scalar_one()
    await worker.run_due(h.rt)
    upheld = await h.client.post(
        f"/api/v1/appeals/{appeal_id}/decide",
        json={"upheld": True, "note": "核实"},
        headers=reviewer,
    )
    assert upheld.status_code == 200, upheld.text


async def test_live_rollups_equal_a_rebuild_and_the_rules(harness: Harness) -> None:
    await mixed_history(harness)
    await worker.run_due(harness.rt)
    with harness.rt.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(result_changes)).scalar() == 0
    live, live_months = snapshot(harness), snapshot(harness, "month")
    expected = oracle(harness)
    assert by_department(harness) == expected
    # What the history should give, read by a person: Friday 27 Nov in Shanghai counts the
    # staff contact's cleared 5, the other 5 and the 23:30 3 (the bad review gave way to its
    # re-rating on Monday 30); Saturday the 4 given after midnight; Monday the re-rating, 4.
    assert expected == {
        (date(2026, 11, 27), OURS): (3, 0, 0, 1, 0, 2, 0),
        (date(2026, 11, 28), OURS): (1, 0, 0, 0, 1, 0, 0),
        (date(2026, 11, 30), OURS): (1, 0, 0, 0, 1, 0, 1),
    }
    with harness.rt.db.begin() as conn:
        conn.execute(sa.delete(result_counts))
    rebuild_all(harness)
    assert snapshot(harness) == live and snapshot(harness, "month") == live_months


async def test_the_channel_totals_hold_the_unsolicited_rating(harness: Harness) -> None:
    await mixed_history(harness)
    await worker.run_due(harness.rt)
    with harness.rt.db.connect() as conn:
        channel = dict(
            conn.execute(
                sa.select(result_counts.c.department, sa.func.sum(result_counts.c.counted))
                .where(result_counts.c.grain == "month", result_counts.c.kind == "channel")
                .group_by(result_counts.c.department)
            ).all()
        )
    assert channel == {OURS: 5, "": 1}  # the unsolicited 2 has no department


@pytest.mark.parametrize("settings_overrides", [{"results_evaluation": "first"}])
async def test_the_first_evaluation_may_stand_instead(harness: Harness) -> None:
    await mixed_history(harness)
    await worker.run_due(harness.rt)
    expected = oracle(harness, "first")
    assert by_department(harness) == expected
    assert expected[(date(2026, 11, 27), OURS)] == (4, 1, 0, 1, 0, 2, 0)  # the bad review stands
    assert (date(2026, 11, 30), OURS) not in expected  # the re-rating does not stand


async def test_an_exclusion_changes_the_figures_that_held_the_rating(harness: Harness) -> None:
    await bad_review(harness)
    await worker.run_due(harness.rt)
    day = (date(2026, 11, 27), OURS)
    assert by_department(harness)[day] == (1, 1, 0, 0, 0, 0, 0)
    with harness.rt.db.connect() as conn:
        ticket_id = conn.execute(sa.select(tickets.c.id)).scalar_one()
    ours = harness.api_key("department", OURS)
    appealed = await act(harness, ticket_id, "appeal", ours, ground="untrue", statement="不实")
    assert appealed.status_code == 200, appealed.text
    with harness.rt.db.connect() as conn:
        appeal_id = conn.execute(sa.text("SELECT id FROM appeals")).scalar_one()
    decided = await harness.client.post(
        f"/api/v1/appeals/{appeal_id}/decide",
        json={"upheld": True, "note": "录音核实"},
        headers=harness.api_key("reviewer"),
    )
    assert decided.status_code == 200, decided.text
    await worker.run_due(harness.rt)
    assert day not in by_department(harness)  # gone from the day, and from the month
    with harness.rt.db.connect() as conn:
        month = conn.execute(
            sa.select(result_counts.c.counted, result_counts.c.invitations).where(
                result_counts.c.grain == "month", result_counts.c.kind == "department"
            )
        ).all()
    # it counts nothing any more; its invitation stays (rows at nought are left: they count none)
    assert (sum(r.counted for r in month), sum(r.invitations for r in month)) == (0, 1)
    assert PHONE  # the citizen's rating itself is kept: excluded, never deleted
    with harness.rt.db.connect() as conn:
        kept = conn.execute(sa.select(ratings.c.excluded_at)).scalar_one()
    assert kept is not None


def tickets_due(h: Harness) -> dict[str, tuple[int, int]]:
    """Month rows holding tickets: kind/key → (due, answered on time)."""
    with h.rt.db.connect() as conn:
        rows = conn.execute(
            sa.select(result_counts).where(
                result_counts.c.grain == "month", result_counts.c.tickets_due > 0
            )
        ).mappings()
        return {f"{r['kind']}/{r['key']}": (r["tickets_due"], r["tickets_on_time"]) for r in rows}


async def test_a_ticket_in_triage_counts_in_the_whole(harness: Harness) -> None:
    """An unsolicited bad review waits for a department: its deadline counts in the whole (a
    deadline missed while nobody was assigned is still missed), and once assigned and answered
    in time, for the department too."""
    for answer in ("1 1 1 1", "1", "0", "2"):
        await harness.reply_text(answer)
    await worker.run_due(harness.rt)
    assert tickets_due(harness) == {"all/": (1, 0)}
    supervisor = harness.api_key("supervisor")
    with harness.rt.db.connect() as conn:
        ticket_id = conn.execute(sa.select(tickets.c.id)).scalar_one()
    assigned = await act(harness, ticket_id, "assign", supervisor, department=OURS)
    assert assigned.status_code == 200, assigned.text
    await answer_ticket(harness, ticket_id)
    await worker.run_due(harness.rt)
    assert tickets_due(harness) == {"all/": (1, 1), f"department/{OURS}": (1, 1)}
    live = snapshot(harness, "month")
    with harness.rt.db.begin() as conn:
        conn.execute(sa.delete(result_counts))
    rebuild_all(harness)
    assert snapshot(harness, "month") == live
