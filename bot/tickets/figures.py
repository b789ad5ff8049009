"""The closed loop in figures, for a range of time and a place: the tickets opened in it by state,
the tickets overdue now by department, the appeals decided in it by verdict.

``GET /api/v1/stats/tickets`` serves them and the supervisor dashboard draws them: one
computation. A department sees its own departments' tickets only; a district keeps the tickets
whose case is in it (a ticket with no case is in no district).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from bot.results.counting import day_bounds
from bot.results.stats import check_range
from bot.tickets.queues import overdue_now
from bot.tickets.states import State
from bot.web.audit import Actor
from storage.tables import appeals, records, tickets

VERDICTS = ("upheld", "rejected")


@dataclass(frozen=True, slots=True)
class Where:
    """Whose tickets: what ``actor`` sees, narrowed to a department and a district if given."""

    actor: Actor
    department: str | None = None
    district: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        seen = self.actor.departments_seen
        if seen is not None:
            found.append(tickets.c.department.in_(sorted(seen)))
        if self.department is not None:
            found.append(tickets.c.department == self.department)
        if self.district is not None:
            in_district = sa.select(records.c.id).where(records.c.district == self.district)
            found.append(tickets.c.record_id.in_(in_district))
        return found


@dataclass(frozen=True, slots=True)
class TicketFigures:
    opened_by_state: dict[str, int]  # every state, noughts included
    overdue_by_department: list[tuple[str | None, int]]  # most first; None: still in triage
    appeals_decided: dict[str, int]  # upheld, rejected

    @property
    def overdue(self) -> int:
        return sum(n for _, n in self.overdue_by_department)

    def as_json(self) -> dict[str, Any]:
        return {
            "opened_by_state": self.opened_by_state,
            "overdue_now": {
                "total": self.overdue,
                "by_department": [
                    {"department": d, "overdue": n} for d, n in self.overdue_by_department
                ],
            },
            "appeals_decided": self.appeals_decided,
        }


def ticket_figures(
    conn: sa.Connection, where: Where, first: date, last: date, *, zone: str, now: datetime
) -> TicketFigures:
    """The figures of the tickets ``where`` names: opened, and appeals decided, in the local
    days ``first``..``last`` of ``zone``; overdue at ``now``. A range that cannot be read:
    :class:`BadPeriod`."""
    check_range(first, last)
    start, _ = day_bounds(first, zone)
    _, end = day_bounds(last, zone)
    scope = where.conditions()
    by_state = dict.fromkeys((str(s) for s in State), 0)
    for state, count in conn.execute(
        sa.select(tickets.c.state, sa.func.count())
        .where(tickets.c.opened_at >= start, tickets.c.opened_at < end, *scope)
        .group_by(tickets.c.state)
    ):
        by_state[state] = int(count)
    overdue = [
        (department, int(count))
        for department, count in conn.execute(
            sa.select(tickets.c.department, sa.func.count())
            .where(overdue_now(now), *scope)
            .group_by(tickets.c.department)
        )
    ]
    overdue.sort(key=lambda pair: (-pair[1], pair[0] or ""))
    decided = dict.fromkeys(VERDICTS, 0)
    for verdict, count in conn.execute(
        sa.select(appeals.c.state, sa.func.count())
        .select_from(appeals.join(tickets, appeals.c.ticket_id == tickets.c.id))
        .where(
            appeals.c.state.in_(VERDICTS),
            appeals.c.decided_at >= start,
            appeals.c.decided_at < end,
            *scope,
        )
        .group_by(appeals.c.state)
    ):
        decided[verdict] = int(count)
    return TicketFigures(
        opened_by_state=by_state, overdue_by_department=overdue, appeals_decided=decided
    )
