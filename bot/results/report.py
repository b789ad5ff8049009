"""The month's report for supervisors (月度通报): what ``ratebot report`` prints.

Gathered here, rendered by ``bot.results.report_files``:

1. the month's ranking (``stats.ranking``), with the groups called in (约谈): those in the bottom
   N two periods or more in a row;
2. the month's headline figures and the five months before it (``stats.group_stats`` by month);
3. the bad reviews' tickets opened in the month's local days, by state and by outcome;
4. the tickets overdue at the month's end: past their deadline and still unanswered (open or
   acknowledged), or answered after it during the month or since; the first
   :data:`OVERDUE_ROWS`, and how many in all;
5. the appeals decided in the month, by ground and verdict;
6. the fraud flags raised in the month, by rule and state.

Figures only: no citizen's words (comments, details) and no contact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot.results import stats
from bot.results.counting import day_bounds
from bot.results.scoring import ResultsRules
from bot.results.stats import BadPeriod, Period, RankBy
from storage.tables import appeals, flags, tickets

TREND_MONTHS = 6  # the month and the five before it
OVERDUE_ROWS = 200  # overdue tickets listed; the total is given beside them
SUMMONED_STREAK = 2  # periods in a row in the bottom N that call a group in (约谈)
AWAITING_ANSWER = ("open", "acknowledged")  # a ticket whose deadline runs


def month(text: str) -> Period:
    """The month ``text`` names (``2026-11``); a quarter, a year or anything else is refused."""
    period = Period.parse(text)
    if (period.first.year, period.first.month) != (period.last.year, period.last.month):
        raise BadPeriod(f"period {text!r}: a report covers one month, such as 2026-11")
    return period


@dataclass(frozen=True)
class MonthFigures:
    """One month's headline figures (rates in percent; ``None`` with nothing to divide by)."""

    month: str
    counted: int
    good_rate: float | None
    bad_rate: float | None
    average: float | None
    on_time_rate: float | None
    rerated_good_rate: float | None


@dataclass(frozen=True)
class OverdueTicket:
    id: int
    department: str | None  # None: still in triage
    tier: str
    due_at: datetime
    state: str


@dataclass(frozen=True)
class MonthlyReport:
    period: Period
    by: RankBy
    zone: str
    generated_at: datetime
    ranking: dict[str, Any]  # as ``stats.ranking`` gives it
    summoned: list[dict[str, Any]]  # the ranked rows called in (约谈)
    months: list[MonthFigures]  # oldest first; the last is the report's month
    tickets_opened: int
    tickets_by_state: dict[str, int]
    tickets_by_outcome: dict[str | None, int]  # None: not answered yet
    overdue: list[OverdueTicket]
    overdue_total: int
    appeals: dict[tuple[str, str], int]  # (ground, verdict): decided in the month
    flags: dict[tuple[str, str], int]  # (rule, state): raised in the month


def monthly_report(
    conn: sa.Connection,
    *,
    period: Period,
    by: RankBy,
    rules: ResultsRules,
    zone: str,
    now: datetime,
) -> MonthlyReport:
    """The report of ``period`` (a month), its groups ranked ``by``, its days local to
    ``zone``."""
    ranking = stats.ranking(conn, by, period, rules)
    start, _ = day_bounds(period.first, zone)
    _, end = day_bounds(period.last, zone)
    by_state: Counter[str] = Counter()
    by_outcome: Counter[str | None] = Counter()
    for state, outcome, count in conn.execute(
        sa.select(tickets.c.state, tickets.c.outcome, sa.func.count())
        .where(tickets.c.opened_at >= start, tickets.c.opened_at < end)
        .group_by(tickets.c.state, tickets.c.outcome)
    ):
        by_state[state] += count
        by_outcome[outcome] += count
    overdue = sa.and_(
        tickets.c.due_at < end,
        sa.or_(
            tickets.c.state.in_(AWAITING_ANSWER),
            sa.and_(tickets.c.responded_at > tickets.c.due_at, tickets.c.responded_at >= start),
        ),
    )
    return MonthlyReport(
        period=period,
        by=by,
        zone=zone,
        generated_at=now,
        ranking=ranking,
        summoned=[r for r in ranking["ranked"] if r["bottom_streak"] >= SUMMONED_STREAK],
        months=_months(conn, period),
        tickets_opened=sum(by_state.values()),
        tickets_by_state=dict(by_state),
        tickets_by_outcome=dict(by_outcome),
        overdue=[
            OverdueTicket(**row)
            for row in conn.execute(
                sa.select(
                    tickets.c.id,
                    tickets.c.department,
                    tickets.c.tier,
                    tickets.c.due_at,
                    tickets.c.state,
                )
                .where(overdue)
                .order_by(tickets.c.due_at, tickets.c.id)
                .limit(OVERDUE_ROWS)
            ).mappings()
        ],
        overdue_total=conn.execute(sa.select(sa.func.count()).where(overdue)).scalar_one(),
        appeals=_counted(
            conn,
            appeals.c.ground,
            appeals.c.state,
            appeals.c.decided_at >= start,
            appeals.c.decided_at < end,
            appeals.c.state.in_(("upheld", "rejected")),
        ),
        flags=_counted(
            conn, flags.c.rule, flags.c.state, flags.c.created_at >= start, flags.c.created_at < end
        ),
    )


def _months(conn: sa.Connection, period: Period) -> list[MonthFigures]:
    months = [period]
    while len(months) < TREND_MONTHS:
        months.insert(0, months[0].previous())
    found = {
        group["key"]: group
        for group in stats.group_stats(conn, "month", months[0].first, period.last, stats.Scope())
    }
    figures = []
    for each in months:
        group = found.get(each.label, {})
        figures.append(
            MonthFigures(
                month=each.label,
                counted=group.get("counted", 0),
                good_rate=group.get("good_rate"),
                bad_rate=group.get("bad_rate"),
                average=group.get("average"),
                on_time_rate=group.get("on_time_rate"),
                rerated_good_rate=group.get("rerated_good_rate"),
            )
        )
    return figures


def _counted(
    conn: sa.Connection,
    first: sa.ColumnElement[Any],
    second: sa.ColumnElement[Any],
    *where: sa.ColumnElement[bool],
) -> dict[tuple[str, str], int]:
    return {
        (a, b): count
        for a, b, count in conn.execute(
            sa.select(first, second, sa.func.count()).where(*where).group_by(first, second)
        )
    }
