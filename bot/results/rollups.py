"""The rollups behind the statistics and rankings: counters per (day, group), and per month.

Every change that moves a figure writes a :func:`mark` — the moment whose day must be counted
again — in its own transaction (a rating finished, excluded, flagged or cleared; a ticket
answered or its deadline moved; an invitation sent; a callback placed). The worker
(:func:`run_due`, every ``RATEBOT_WORKER_INTERVAL_SECONDS``) recounts each marked day from the
raw rows, under the counting rules of ``bot.results.counting``, then the months those days are
in, and deletes the marks it read. ``ratebot stats rebuild`` recounts a range of days the same
way: the figures are always what a count of the raw rows gives, within one worker pass.

A day's groups: a rating with a case counts for its department, item, district, hall, window
and clerk, for its channel, and in the day's whole (kind ``all``); one with no case for its
channel only. Each row but the whole is split by department and district, so that either
filters any grouping.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa

from bot import metrics
from bot.results.counting import Evaluation, countable, day_bounds, is_good, local_day, stands
from bot.runtime import Runtime
from bot.settings import Settings
from storage.models import utcnow
from storage.tables import (
    call_attempts,
    dimensions,
    invitations,
    ratings,
    records,
    result_changes,
    result_counts,
    result_dimensions,
    tickets,
)

log = logging.getLogger("ratebot.results")

CASE_KINDS = ("department", "item", "district", "hall", "window", "clerk")
KINDS = (*CASE_KINDS, "channel", "all")
COUNTERS = (
    "counted",
    "level_1",
    "level_2",
    "level_3",
    "level_4",
    "level_5",
    "level_sum",
    "rerated",
    "rerated_good",
    "tickets_due",
    "tickets_on_time",
    "callbacks",
    "invitations",
)
BATCH = 5000  # marks read per pass
LOCK = 0x52455355  # the PostgreSQL advisory lock one worker at a time recounts under
CASE_COLUMNS = (
    records.c.department,
    records.c.item_code,
    records.c.item_name,
    records.c.district,
    records.c.hall,
    records.c.window,
    records.c.clerk,
)

INSERT_MARK = sa.text("INSERT INTO result_changes (at) VALUES (:at)").bindparams(
    sa.bindparam("at", type_=result_changes.c.at.type)
)


def mark(conn: sa.Connection, *moments: datetime | None) -> None:
    """The days of ``moments`` must be counted again: one row each, in the caller's
    transaction."""
    rows = [{"at": m} for m in dict.fromkeys(moments) if m is not None]
    if rows:
        conn.execute(INSERT_MARK, rows)


def mark_case(conn: sa.Connection, rating_id: int) -> None:
    """A change of whether ``rating_id`` counts: its day, and the day of every other evaluation
    of its case (which of them stands may change), and its ticket's due day."""
    case = sa.select(ratings.c.record_id).where(ratings.c.id == rating_id).scalar_subquery()
    moments = conn.execute(
        sa.select(ratings.c.submitted_at).where(
            sa.or_(ratings.c.id == rating_id, ratings.c.record_id == case)
        )
    ).scalars()
    due = conn.execute(
        sa.select(tickets.c.due_at).where(tickets.c.rating_id == rating_id)
    ).scalars()
    mark(conn, *moments, *due)


# --- counting a day ------------------------------------------------------------------------------


@dataclass
class Group:
    name: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    dimensions: dict[str, list[int]] = field(default_factory=dict)  # dimension → [rated, sum]


GroupKey = tuple[str, str, str, str]  # kind, key, department, district


def case_groups(case: sa.RowMapping) -> Iterator[tuple[str, str, str]]:
    """The (kind, key, name) groups a case counts in. A case with no clerk has no clerk group;
    a ticket with no case (an unsolicited bad review, assigned) only its department's."""
    if case["department"]:
        yield "department", case["department"], case["department"]
    if case["item_code"]:
        yield "item", case["item_code"], case["item_name"]
    if case["district"]:
        yield "district", case["district"], case["district"]
    if case["hall"]:
        yield "hall", case["hall"], case["hall"]
        window = f"{case['hall']}/{case['window']}"
        yield "window", window, window
    if case["clerk"]:
        yield "clerk", case["clerk"], case["clerk"]


class Day:
    """The groups of one day being counted."""

    def __init__(self) -> None:
        self.groups: dict[GroupKey, Group] = {}

    def _groups(self, row: sa.RowMapping, channel: str | None) -> list[Group]:
        found = []
        has_case = row["department"] is not None
        department = row["department"] or ""
        district = row["district"] or ""
        pairs: list[tuple[str, str, str]] = list(case_groups(row)) if has_case else []
        if channel is not None:
            pairs.append(("channel", channel, channel))
        keys = [(kind, key, department, district, name) for kind, key, name in pairs]
        if has_case:  # the whole: one row a day, for the totals by day and month
            keys.append(("all", "", "", "", ""))
        for kind, key, department, district, name in keys:
            group_key = (kind, key, department, district)
            group = self.groups.get(group_key)
            if group is None:
                group = self.groups[group_key] = Group(name)
            found.append(group)
        return found

    def add_rating(self, row: sa.RowMapping, levels: Mapping[str, int]) -> None:
        level = int(row["level"])
        counted = bool(row["stands"])
        rerated = row["evaluation_count"] == 2 and row["department"] is not None
        for group in self._groups(row, row["channel"]):
            if counted:
                group.counts["counted"] += 1
                group.counts[f"level_{level}"] += 1
                group.counts["level_sum"] += level
                for dimension, value in levels.items():
                    pair = group.dimensions.setdefault(dimension, [0, 0])
                    pair[0] += 1
                    pair[1] += value
            if rerated:
                group.counts["rerated"] += 1
                group.counts["rerated_good"] += is_good(level)

    def add(self, row: sa.RowMapping, counter: str, amount: int = 1) -> None:
        """A ticket's, an invitation's or a callback's count, for its case's groups. A ticket
        no department holds yet (triage) counts in the whole only: a deadline missed while
        nobody was assigned is still a deadline missed."""
        if row["department"] is not None:
            for group in self._groups(row, None):
                group.counts[counter] += amount
        elif counter.startswith("tickets_"):
            whole = self.groups.setdefault(("all", "", "", ""), Group(""))
            whole.counts[counter] += amount


def count_day(conn: sa.Connection, day: date, zone: str, evaluation: Evaluation) -> Day:
    """One local day's figures, counted from the raw rows."""
    start, end = day_bounds(day, zone)
    counted = Day()
    joined = ratings.outerjoin(records, records.c.id == ratings.c.record_id)
    on_day = sa.and_(countable(), ratings.c.submitted_at >= start, ratings.c.submitted_at < end)
    levels: dict[int, dict[str, int]] = defaultdict(dict)
    for rating_id, dimension, level in conn.execute(
        sa.select(dimensions.c.rating_id, dimensions.c.dimension, dimensions.c.level)
        .join(ratings, ratings.c.id == dimensions.c.rating_id)
        .where(on_day)
    ):
        levels[rating_id][dimension] = level
    for row in conn.execute(
        sa.select(
            ratings.c.id,
            ratings.c.level,
            ratings.c.evaluation_count,
            ratings.c.channel,
            *CASE_COLUMNS,
            sa.case((ratings.c.record_id.is_(None), sa.true()), else_=stands(evaluation)).label(
                "stands"
            ),
        )
        .select_from(joined)
        .where(on_day)
    ).mappings():
        counted.add_rating(row, levels.get(row["id"], {}))
    # A bad review's ticket counts where its review could (not excluded, not flagged), for the
    # department that holds it.
    ticket_case = [c for c in CASE_COLUMNS if c.name != "department"]
    for row in conn.execute(
        sa.select(tickets.c.due_at, tickets.c.responded_at, tickets.c.department, *ticket_case)
        .select_from(tickets)
        .join(records, records.c.id == tickets.c.record_id, isouter=True)
        .join(ratings, ratings.c.id == tickets.c.rating_id)
        .where(
            tickets.c.due_at >= start,
            tickets.c.due_at < end,
            ratings.c.excluded_at.is_(None),
            ratings.c.flagged.is_(sa.false()),
        )
    ).mappings():
        counted.add(row, "tickets_due")
        on_time = row["responded_at"] is not None and row["responded_at"] <= row["due_at"]
        counted.add(row, "tickets_on_time", int(on_time))
    for row in conn.execute(
        sa.select(*CASE_COLUMNS)
        .select_from(invitations.join(records, records.c.id == invitations.c.record_id))
        .where(
            invitations.c.sent_at >= start,
            invitations.c.sent_at < end,
            ~sa.exists().where(  # a callback's call is not an invitation
                call_attempts.c.invitation_id == invitations.c.id,
                call_attempts.c.purpose == "callback",
            ),
        )
    ).mappings():
        counted.add(row, "invitations")
    for row in conn.execute(
        sa.select(*CASE_COLUMNS)
        .select_from(
            call_attempts.join(invitations, invitations.c.id == call_attempts.c.invitation_id).join(
                records, records.c.id == invitations.c.record_id
            )
        )
        .where(
            call_attempts.c.purpose == "callback",
            call_attempts.c.attempt == 1,  # a callback, however many tries it takes
            call_attempts.c.started_at >= start,
            call_attempts.c.started_at < end,
        )
    ).mappings():
        counted.add(row, "callbacks")
    return counted


KEYS = ("grain", "day", "kind", "key", "department", "district")


def _rows(
    day: date, counted: Day, grain: str = "day"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    count_rows: list[dict[str, Any]] = []
    dimension_rows: list[dict[str, Any]] = []
    for (kind, key, department, district), group in counted.groups.items():
        where = {
            "grain": grain,
            "day": day,
            "kind": kind,
            "key": key,
            "department": department,
            "district": district,
        }
        count_rows.append({**where, "name": group.name, **group.counts})
        for dimension, (rated, total) in group.dimensions.items():
            dimension_rows.append(
                {**where, "dimension": dimension, "rated": rated, "level_sum": total}
            )
    return count_rows, dimension_rows


@cache
def _insert_statement(table: sa.Table, dialect: str, add: bool) -> sa.TextClause:
    """One INSERT of many rows, compiled once: on PostgreSQL the rows go as one array a column
    (``unnest``: one statement, one round trip); on SQLite, executemany in process. ``add``: a
    row that exists has the counters added to it."""
    columns = [c.name for c in table.columns]
    if dialect == "postgresql":

        def array(column: sa.Column[Any]) -> str:
            kind = "date" if isinstance(column.type, sa.Date) else "text"
            kind = "integer" if isinstance(column.type, sa.Integer) else kind
            return f"CAST(:{column.name} AS {kind}[])"

        # The table's own column names only: nothing here comes from a request.
        source = f"SELECT * FROM unnest({', '.join(array(table.c[c]) for c in columns)})"  # noqa: S608
    else:
        source = "VALUES (" + ", ".join(f":{c}" for c in columns) + ")"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) {source}"
    if add:
        keys = [c.name for c in table.primary_key.columns]
        sums = [c for c in columns if c not in keys and c != "name"]
        changes = [f"{c} = {table.name}.{c} + excluded.{c}" for c in sums]
        if "name" in columns:
            changes.append("name = excluded.name")
        sql += f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(changes)}"
    return sa.text(sql)


def _insert(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], *, add: bool = False
) -> None:
    """Write ``rows`` into a rollup table (a row a statement cost half a millisecond each)."""
    if not rows:
        return
    statement = _insert_statement(table, conn.dialect.name, add)
    if conn.dialect.name == "postgresql":
        conn.execute(statement, {c.name: [row[c.name] for row in rows] for c in table.columns})
    else:
        conn.execute(statement, rows)


def _read_day(conn: sa.Connection, day: date) -> Day:
    """The day's rollup rows as they stand."""
    found = Day()
    for row in conn.execute(
        sa.select(result_counts).where(result_counts.c.grain == "day", result_counts.c.day == day)
    ).mappings():
        key = (row["kind"], row["key"], row["department"], row["district"])
        found.groups[key] = Group(row["name"], {c: int(row[c]) for c in COUNTERS})
    for row in conn.execute(
        sa.select(result_dimensions).where(
            result_dimensions.c.grain == "day", result_dimensions.c.day == day
        )
    ).mappings():
        key = (row["kind"], row["key"], row["department"], row["district"])
        found.groups.setdefault(key, Group(row["key"])).dimensions[row["dimension"]] = [
            int(row["rated"]),
            int(row["level_sum"]),
        ]
    return found


def _change(before: Day, after: Day) -> Day:
    """What a day's recount changed: ``after`` minus ``before``, group by group."""
    change = Day()
    for key in before.groups.keys() | after.groups.keys():
        old = before.groups.get(key)
        new = after.groups.get(key)
        name = (new or old).name  # type: ignore[union-attr]
        group = Group(name)
        for counter in COUNTERS:
            group.counts[counter] = (new.counts[counter] if new else 0) - (
                old.counts[counter] if old else 0
            )
        for dimension in (old.dimensions if old else {}).keys() | (
            new.dimensions if new else {}
        ).keys():
            was = old.dimensions.get(dimension, [0, 0]) if old else [0, 0]
            now = new.dimensions.get(dimension, [0, 0]) if new else [0, 0]
            group.dimensions[dimension] = [now[0] - was[0], now[1] - was[1]]
        change.groups[key] = group
    return change


def write_day(conn: sa.Connection, day: date, counted: Day) -> None:
    """Replace the day's rollup rows with ``counted``."""
    for table in (result_counts, result_dimensions):
        conn.execute(sa.delete(table).where(table.c.grain == "day", table.c.day == day))
    count_rows, dimension_rows = _rows(day, counted)
    _insert(conn, result_counts, count_rows)
    _insert(conn, result_dimensions, dimension_rows)


def add_to_month(conn: sa.Connection, day: date, change: Day) -> None:
    """A day's change, added to its month's rows (a row left at nought is harmless: it counts
    nothing, and the reads leave it out)."""
    count_rows, dimension_rows = _rows(day.replace(day=1), change, "month")
    moved = [r for r in count_rows if any(r[c] for c in COUNTERS)]
    _insert(conn, result_counts, moved, add=True)
    _insert(
        conn,
        result_dimensions,
        [r for r in dimension_rows if r["rated"] or r["level_sum"]],
        add=True,
    )


def write_month(conn: sa.Connection, first: date) -> None:
    """A month's rollup rows, summed afresh from its days' rows (the rebuild)."""
    following = (first + timedelta(days=32)).replace(day=1)
    for table, keys, sums in (
        (result_counts, ("kind", "key", "department", "district"), COUNTERS),
        (
            result_dimensions,
            ("kind", "key", "department", "district", "dimension"),
            ("rated", "level_sum"),
        ),
    ):
        conn.execute(sa.delete(table).where(table.c.grain == "month", table.c.day == first))
        extra = ("name",) if table is result_counts else ()
        columns = [table.c[k] for k in keys]
        select = (
            sa.select(
                sa.literal("month").label("grain"),
                sa.literal(first, sa.Date).label("day"),
                *columns,
                *[sa.func.max(table.c[e]).label(e) for e in extra],
                *[sa.func.sum(table.c[s]).label(s) for s in sums],
            )
            .where(table.c.grain == "day", table.c.day >= first, table.c.day < following)
            .group_by(*columns)
        )
        conn.execute(sa.insert(table).from_select(["grain", "day", *keys, *extra, *sums], select))


def recount(conn: sa.Connection, days: Iterable[date], zone: str, evaluation: Evaluation) -> int:
    """Count ``days`` again from the raw rows, and add what changed to their months (the
    worker). The number of days."""
    days = sorted(set(days))
    for day in days:
        counted = count_day(conn, day, zone, evaluation)
        change = _change(_read_day(conn, day), counted)
        write_day(conn, day, counted)
        add_to_month(conn, day, change)
    return len(days)


def rebuild(db: sa.Engine, settings: Settings, first: date | None, last: date | None) -> int:
    """``ratebot stats rebuild``: recount every day from ``first`` (default: the first rating's)
    to ``last`` (default: today), a transaction per month. The number of days."""
    zone = settings.timezone
    if first is None:
        with db.connect() as conn:
            earliest = conn.execute(sa.select(sa.func.min(ratings.c.submitted_at))).scalar()
        first = local_day(earliest, zone) if earliest else date.today()
    last = last or local_day(utcnow(), zone)
    done = 0
    day = first
    while day <= last:
        following = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        end = min(following, last + timedelta(days=1))
        with db.begin() as conn:
            for n in range((end - day).days):
                counted = count_day(
                    conn, day + timedelta(days=n), zone, settings.results_evaluation
                )
                write_day(conn, day + timedelta(days=n), counted)
            write_month(conn, day.replace(day=1))
            done += (end - day).days
        day = following
    return done


def run_due(rt: Runtime) -> int:
    """One worker pass: recount the marked days, then drop the marks read. One worker at a
    time (an advisory lock on PostgreSQL; SQLite has one writer anyway). The days recounted."""
    with rt.db.begin() as conn:
        if (
            conn.dialect.name == "postgresql"
            and not conn.execute(
                sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK}
            ).scalar()
        ):
            return 0
        marks = conn.execute(
            sa.select(result_changes.c.id, result_changes.c.at)
            .order_by(result_changes.c.id)
            .limit(BATCH)
        ).all()
        if not marks:
            return 0
        zone = rt.settings.timezone
        days = recount(
            conn, (local_day(at, zone) for _, at in marks), zone, rt.settings.results_evaluation
        )
        conn.execute(
            sa.delete(result_changes).where(result_changes.c.id.in_([i for i, _ in marks]))
        )
    metrics.RESULT_DAYS_RECOUNTED.inc(days)
    log.debug("recounted %d day(s) for %d change(s)", days, len(marks))
    return days
