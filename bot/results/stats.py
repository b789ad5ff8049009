"""Statistics and rankings, read from the rollups (``bot.results.rollups``), never from a scan of
the ratings: the full months of a range from the month rows, its other days from the day rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from bot.results.rollups import COUNTERS
from bot.results.scoring import ResultsRules, bottom, parts, percent, rank, score
from storage.tables import result_counts, result_dimensions

GroupBy = Literal[
    "department", "item", "district", "hall", "window", "clerk", "channel", "day", "month", "total"
]
RankBy = Literal["department", "item", "district", "hall", "window", "clerk"]
MAX_DAYS = 400  # a per-day query's longest range
YEARS = (2000, 2100)  # the years a range may name (a period, too)
STREAK_LOOKBACK = 24  # periods looked back for a bottom streak


class BadPeriod(ValueError):
    """A period, range or grouping that cannot be read (422)."""


@dataclass(frozen=True)
class Period:
    """A month (2026-11), a quarter (2026Q4) or a year (2026)."""

    label: str
    first: date
    last: date

    @classmethod
    def parse(cls, text: str) -> Period:
        if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
            year, month = int(m[1]), int(m[2])
            if not 1 <= month <= 12:
                raise BadPeriod(f"period {text!r}: no month {month}")
            return cls._months(text, year, month, 1)
        if m := re.fullmatch(r"(\d{4})Q([1-4])", text):
            return cls._months(text, int(m[1]), 3 * int(m[2]) - 2, 3)
        if m := re.fullmatch(r"(\d{4})", text):
            return cls._months(text, int(m[1]), 1, 12)
        raise BadPeriod(f"period {text!r}: write 2026-11, 2026Q4 or 2026")

    @classmethod
    def _months(cls, label: str, year: int, month: int, count: int) -> Period:
        if not YEARS[0] <= year <= YEARS[1]:
            raise BadPeriod(f"period {label!r}: year {year} is out of range")
        first = date(year, month, 1)
        following = _add_months(first, count)
        return cls(label, first, following - timedelta(days=1))

    def previous(self) -> Period:
        before = self.first - timedelta(days=1)
        if re.fullmatch(r"\d{4}-\d{2}", self.label):
            return Period.parse(f"{before.year}-{before.month:02d}")
        if "Q" in self.label:
            return Period.parse(f"{before.year}Q{(before.month - 1) // 3 + 1}")
        return Period.parse(str(before.year))


def _add_months(day: date, count: int) -> date:
    month = day.month - 1 + count
    return date(day.year + month // 12, month % 12 + 1, 1)


def check_range(first: date, last: date, *, bounded: bool = True) -> None:
    """A range of local days a query may cover: within the years ``YEARS``, ``first`` not after
    ``last`` and, when ``bounded`` (per-day figures, exports), at most ``MAX_DAYS`` days."""
    if not (YEARS[0] <= first.year and last.year <= YEARS[1]):
        # 0001-01-01 in Shanghai is before the first UTC instant there is (OverflowError: 500)
        raise BadPeriod(f"from and to must be within the years {YEARS[0]}-{YEARS[1]}")
    if first > last:
        raise BadPeriod(f"from ({first}) is after to ({last})")
    days = (last - first).days + 1
    if bounded and days > MAX_DAYS:
        raise BadPeriod(f"the period is {days} days; at most {MAX_DAYS} at once")


def _spans(first: date, last: date) -> Iterator[tuple[str, date, date]]:
    """The range as (grain, from, to) pieces: its full months as months, the rest as days."""
    day = first
    while day <= last:
        following = _add_months(day.replace(day=1), 1)
        end = min(following - timedelta(days=1), last)
        if day.day == 1 and end == following - timedelta(days=1):
            yield "month", day, day
        else:
            yield "day", day, end
        day = end + timedelta(days=1)


def _in_range(
    table: sa.Table, first: date, last: date, *, days_only: bool
) -> sa.ColumnElement[bool]:
    if days_only:
        return sa.and_(table.c.grain == "day", table.c.day >= first, table.c.day <= last)
    return sa.or_(
        *(
            sa.and_(table.c.grain == grain, table.c.day >= start, table.c.day <= end)
            for grain, start, end in _spans(first, last)
        )
    )


@dataclass(frozen=True)
class Scope:
    """Which rows a caller may see and asked for: ``departments`` None is every department."""

    departments: frozenset[str] | None = None
    department: str | None = None
    district: str | None = None

    def where(self, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        found: list[sa.ColumnElement[bool]] = []
        if self.departments is not None:
            found.append(table.c.department.in_(sorted(self.departments)))
        if self.department is not None:
            found.append(table.c.department == self.department)
        if self.district is not None:
            found.append(table.c.district == self.district)
        return found


def figures(counts: Sequence[int], dimensions: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """A group's figures from its summed counters (in ``COUNTERS``' order)."""
    (
        counted,
        level_1,
        level_2,
        level_3,
        level_4,
        level_5,
        level_sum,
        rerated,
        rerated_good,
        tickets_due,
        tickets_on_time,
        callbacks,
        invitations,
    ) = counts
    good = level_3 + level_4 + level_5
    bad = level_1 + level_2
    return {
        "counted": counted,
        "levels": {"1": level_1, "2": level_2, "3": level_3, "4": level_4, "5": level_5},
        "good": good,
        "bad": bad,
        "good_rate": _round(percent(good, counted)),
        "bad_rate": _round(percent(bad, counted)),
        "average": None if counted == 0 else round(level_sum / counted, 3),
        "dimensions": {
            d: round(total / rated, 3) for d, (rated, total) in sorted(dimensions.items()) if rated
        },
        "tickets_due": tickets_due,
        "tickets_on_time": tickets_on_time,
        "rerated": rerated,
        "rerated_good": rerated_good,
        "callbacks": callbacks,
        "invitations": invitations,
        "on_time_rate": _round(percent(tickets_on_time, tickets_due)),
        "rerated_good_rate": _round(percent(rerated_good, rerated)),
        "response_rate": _round(percent(counted, invitations)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def group_stats(
    conn: sa.Connection, group_by: GroupBy, first: date, last: date, scope: Scope
) -> list[dict[str, Any]]:
    """``GET /api/v1/stats``: each group's figures over ``first``..``last`` (local days)."""
    check_range(first, last, bounded=group_by == "day")
    by_time = group_by in ("day", "month", "total")  # total: the whole range as one group
    kind: str = group_by
    if by_time:  # the whole, or — filtered — the rows of the departments or districts asked for
        filtered = scope.departments is not None or scope.department is not None
        kind = "department" if filtered else "district" if scope.district is not None else "all"

    def key_of(value: Any) -> str:
        if group_by == "total":
            return "total"
        if group_by == "day":
            return str(value.isoformat())
        if group_by == "month":
            return str(value.strftime("%Y-%m"))
        return str(value)

    days_only = group_by == "day"
    rows = _summed(conn, result_counts, kind, first, last, scope, by_time, days_only, COUNTERS)
    dims = _summed(
        conn,
        result_dimensions,
        kind,
        first,
        last,
        scope,
        by_time,
        days_only,
        ("rated", "level_sum"),
    )
    # Rows are plain tuples (key, name, *sums) and the sums lists: a month of 8,000 clerks
    # makes few containers, so few collections (see bot.app.served_app).
    groups: dict[str, list[int]] = {}
    names: dict[str, str] = {}
    for value, name, *sums in rows:
        key = key_of(value)
        total = groups.get(key)
        if total is None:
            groups[key] = [int(n) for n in sums]
            names[key] = key if by_time else name
        else:
            for i, n in enumerate(sums):
                total[i] += int(n)
    dimensions: dict[str, dict[str, tuple[int, int]]] = {}
    for value, dimension, rated, level_sum in dims:
        of = dimensions.setdefault(key_of(value), {})
        was_rated, was_sum = of.get(dimension, (0, 0))
        of[dimension] = (was_rated + int(rated), was_sum + int(level_sum))
    groups = {key: total for key, total in groups.items() if any(total)}  # not noughts
    order = sorted(groups) if by_time else sorted(groups, key=lambda k: (-groups[k][0], k))
    return [
        {"key": key, "name": names[key], **figures(groups[key], dimensions.get(key, {}))}
        for key in order
    ]


def _summed(
    conn: sa.Connection,
    table: sa.Table,
    kind: str,
    first: date,
    last: date,
    scope: Scope,
    by_time: bool,
    days_only: bool,
    sums: Iterable[str],
) -> Sequence[Any]:  # Row tuples
    """The counters of ``kind``'s rows in the range and scope, summed per key (or per day), as
    tuples: the key (or day), then the name (counts) or the dimension (dimensions), then the
    sums."""
    key = table.c.day if by_time else table.c.key
    keys: list[sa.ColumnElement[Any]] = [key]
    if table is result_dimensions:
        keys.append(table.c.dimension)
        second: sa.ColumnElement[Any] = table.c.dimension
    else:
        second = sa.literal("") if by_time else sa.func.max(table.c.name)
    query = (
        sa.select(key, second, *[sa.func.sum(table.c[s]) for s in sums])
        .where(
            table.c.kind == kind,
            _in_range(table, first, last, days_only=days_only),
            *scope.where(table),
        )
        .group_by(*keys)
    )
    return conn.execute(query).all()  # fetchall: a row at a time costs 16 µs more


# --- rankings ------------------------------------------------------------------------------------


def ranking(
    conn: sa.Connection,
    by: RankBy,
    period: Period,
    rules: ResultsRules,
    *,
    district: str | None = None,
) -> dict[str, Any]:
    """A period's ranking: rank, key, name, counted, 好评率, 差评率, the score and its parts, the
    previous period's rank and the change, the bottom streak; groups under the minimum sample
    apart."""
    scope = Scope(district=district)
    ranked, too_few = _ranked(conn, by, period, rules, scope)
    ranks = rank([(key, row["score"]) for key, row in ranked.items()])
    previous = _ranked(conn, by, period.previous(), rules, scope)[0]
    previous_ranks = rank([(key, row["score"]) for key, row in previous.items()])
    streaks = _bottom_streaks(conn, by, period, rules, scope, ranks, previous_ranks)
    rows = []
    for key in sorted(ranks, key=lambda k: (ranks[k], k)):
        row = ranked[key]
        before = previous_ranks.get(key)
        rows.append(
            {
                "rank": ranks[key],
                **row,
                "previous_rank": before,
                "change": None if before is None else before - ranks[key],
                "bottom_streak": streaks.get(key, 0),
            }
        )
    return {
        "period": period.label,
        "by": by,
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "rules": rules.model_dump(),
        "ranked": rows,
        "too_few_ratings": sorted(too_few.values(), key=lambda r: (-r["counted"], r["key"])),
    }


def _ranked(
    conn: sa.Connection, by: RankBy, period: Period, rules: ResultsRules, scope: Scope
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    ranked: dict[str, dict[str, Any]] = {}
    too_few: dict[str, dict[str, Any]] = {}
    for group in group_stats(conn, by, period.first, period.last, scope):
        of = parts(group)
        row = {
            "key": group["key"],
            "name": group["name"],
            "counted": group["counted"],
            "good_rate": group["good_rate"],
            "bad_rate": group["bad_rate"],
            "score": score(rules, of),
            "parts": {name: _round(value) for name, value in of.items()},
        }
        (ranked if group["counted"] >= rules.min_sample else too_few)[group["key"]] = row
    return ranked, too_few


def _bottom_streaks(
    conn: sa.Connection,
    by: RankBy,
    period: Period,
    rules: ResultsRules,
    scope: Scope,
    ranks: Mapping[str, int],
    previous_ranks: Mapping[str, int],
) -> dict[str, int]:
    """Periods in a row, ending with this one, each group spent in the bottom N (the previous
    period's ranks given, already counted for the change of rank)."""
    streaks = {key: 1 for key in bottom(ranks, rules.bottom)}
    still = set(streaks)
    earlier = period
    for n in range(STREAK_LOOKBACK):
        if not still:
            break
        earlier = earlier.previous()
        if n == 0:
            earlier_ranks: Mapping[str, int] = previous_ranks
        else:
            ranked = _ranked(conn, by, earlier, rules, scope)[0]
            earlier_ranks = rank([(k, r["score"]) for k, r in ranked.items()])
        still &= bottom(earlier_ranks, rules.bottom)
        for key in still:
            streaks[key] += 1
    return streaks
