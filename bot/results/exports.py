"""Exports of ratings and tickets, as CSV or XLSX, in constant memory.

A sheet's rows are read from the database with a server-side cursor (``stream_results``,
``yield_per``) and written as they come: CSV chunk by chunk into the response, XLSX through
XlsxWriter's ``constant_memory`` mode into a temporary file that is then streamed. A month of a
province (a million rows) costs the memory of one batch, not of the month.

What a sheet holds: contacts masked (a case's phone mask, never a number), a column per
dimension rated in the period, the complaint (problems, details, callback), and whether the
rating is excluded (an upheld appeal: when, why) or flagged (a fraud flag). Headers and yes/no
are in the caller's language (``locales``; ``export.*`` ids). ``layout=national`` gives the
ratings in GB/T 39046 table 9 instead (``bot.results.national``), headed by the standard's own
field names.

Every text cell that a spreadsheet could read as a formula (it begins with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return) is written with a leading ``'``, in both formats: a citizen's
comment is data, never a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import xlsxwriter

import locales
from bot.results import national
from bot.results.counting import day_bounds
from dialogs.survey import SURVEYS_DIR, ChoiceStep, LevelStep, Survey, load_survey
from locales import N_
from storage.tables import complaints, dimensions, ratings, records, tickets

Layout = Literal["standard", "national"]
Cell = str | int | None
Row = Mapping[Any, Any]  # a row of a sheet's query
BATCH = 2000  # rows fetched from the server-side cursor at a time
CSV_CHUNK = 64 * 1024  # characters of CSV written to the response at a time
XLSX_ROWS = 1_048_576  # rows in one worksheet (Excel's limit), the header included
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Column headers: one message each, in every locale (locales/*/LC_MESSAGES/messages.po).
HEADERS = {
    "id": N_("export.column.id"),
    "rating_id": N_("export.column.rating_id"),
    "record_no": N_("export.column.record_no"),
    "submitted_at": N_("export.column.submitted_at"),
    "channel": N_("export.column.channel"),
    "provider": N_("export.column.provider"),
    "status": N_("export.column.status"),
    "unsolicited": N_("export.column.unsolicited"),
    "evaluation_count": N_("export.column.evaluation_count"),
    "level": N_("export.column.level"),
    "level_name": N_("export.column.level_name"),
    "comment": N_("export.column.comment"),
    "problems": N_("export.column.problems"),
    "details": N_("export.column.details"),
    "wants_callback": N_("export.column.wants_callback"),
    "department": N_("export.column.department"),
    "item_code": N_("export.column.item_code"),
    "item_name": N_("export.column.item_name"),
    "district": N_("export.column.district"),
    "hall": N_("export.column.hall"),
    "window": N_("export.column.window"),
    "clerk": N_("export.column.clerk"),
    "contact": N_("export.column.contact"),
    "excluded_at": N_("export.column.excluded_at"),
    "excluded_reason": N_("export.column.excluded_reason"),
    "flagged": N_("export.column.flagged"),
    "tier": N_("export.column.tier"),
    "state": N_("export.column.state"),
    "opened_at": N_("export.column.opened_at"),
    "due_at": N_("export.column.due_at"),
    "acknowledged_at": N_("export.column.acknowledged_at"),
    "responded_at": N_("export.column.responded_at"),
    "on_time": N_("export.column.on_time"),
    "outcome": N_("export.column.outcome"),
    "response": N_("export.column.response"),
    "closed_at": N_("export.column.closed_at"),
    "closed_reason": N_("export.column.closed_reason"),
    "rerating_level": N_("export.column.rerating_level"),
}
YES = N_("export.yes")
NO = N_("export.no")


def neutralised(value: str) -> str:
    """``value``, with a ``'`` before it if a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


@dataclass(frozen=True)
class Scope:
    """Which rows: local days ``first`` to ``last`` (both included, in ``zone``), of the
    ``departments`` the caller sees (``None``: all; a rating with no case belongs to none), and
    the filters that are set."""

    first: date
    last: date
    zone: str
    departments: frozenset[str] | None = None
    district: str | None = None
    hall: str | None = None
    item_code: str | None = None
    channel: str | None = None  # ratings
    state: str | None = None  # tickets

    def where(
        self, moment: sa.ColumnElement[Any], department: sa.ColumnElement[Any]
    ) -> list[sa.ColumnElement[bool]]:
        start, _ = day_bounds(self.first, self.zone)
        _, end = day_bounds(self.last, self.zone)
        clauses = [moment >= start, moment < end]
        if self.departments is not None:
            clauses.append(department.in_(sorted(self.departments)))
        for column, value in (
            (records.c.district, self.district),
            (records.c.hall, self.hall),
            (records.c.item_code, self.item_code),
            (ratings.c.channel, self.channel),
            (tickets.c.state, self.state),
        ):
            if value is not None:
                clauses.append(column == value)
        return clauses


@dataclass(frozen=True)
class Sheet:
    """A header, and the rows under it, read from the database only as they are written."""

    name: str
    header: list[str]
    rows: Iterable[list[Cell]]


# --- what the caller reads -------------------------------------------------------------------


@cache
def _shipped_surveys() -> tuple[Survey, ...]:
    return tuple(load_survey(path) for path in sorted(SURVEYS_DIR.glob("*.yaml")))


class Words:
    """The sheet's words in one locale: headers, yes/no, level names, the surveys' labels of
    dimensions and problems (the deployment's survey first, then the shipped ones)."""

    def __init__(self, locale: str, survey: Survey) -> None:
        self.locale = locale
        self.dimension_labels: dict[str, str] = {}
        self.problem_labels: dict[str, str] = {}
        for known in (survey, *_shipped_surveys()):
            for step in known.steps:
                if isinstance(step, LevelStep) and step.dimension and step.label:
                    self.dimension_labels.setdefault(step.dimension, step.label)
                if isinstance(step, ChoiceStep):
                    for option in step.options:
                        self.problem_labels.setdefault(option.value, option.label)
        self.order = list(self.dimension_labels)
        self.separator = locales.gettext(locale, "list.separator")
        self.levels = {n: locales.gettext(locale, f"level.{n}") for n in range(1, 6)}
        self.yes, self.no = locales.gettext(locale, YES), locales.gettext(locale, NO)

    def header(self, key: str) -> str:
        return locales.gettext(self.locale, HEADERS[key])

    def dimension(self, dimension: str) -> str:
        label = self.dimension_labels.get(dimension)
        return locales.gettext(self.locale, label) if label else dimension

    def yes_no(self, value: bool | None) -> str | None:
        return None if value is None else self.yes if value else self.no

    def problems(self, values: list[str] | None) -> str | None:
        if not values:
            return None
        named = (self.problem_labels.get(v) for v in values)
        return self.separator.join(
            locales.gettext(self.locale, label) if label else value
            for label, value in zip(named, values, strict=True)
        )


def _local(zone: ZoneInfo) -> Callable[[datetime | None], str | None]:
    def local(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).strftime(TIME_FORMAT) if moment else None

    return local


# --- reading ---------------------------------------------------------------------------------


def _stream(engine: sa.Engine, query: sa.Select[Any]) -> Iterator[sa.RowMapping]:
    """The rows of ``query``, a batch at a time from a server-side cursor (PostgreSQL; SQLite's
    cursor steps through the rows as they are asked for)."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(query)
        yield from result.mappings()


def _rated_dimensions(
    engine: sa.Engine, source: sa.FromClause, where: list[sa.ColumnElement[bool]], words: Words
) -> list[str]:
    """The dimensions rated among the rows, the survey's first in its order."""
    with engine.connect() as conn:
        found = set(
            conn.execute(
                sa.select(dimensions.c.dimension)
                .distinct()
                .select_from(source.join(dimensions, dimensions.c.rating_id == ratings.c.id))
                .where(*where)
            ).scalars()
        )
    return [d for d in words.order if d in found] + sorted(found - set(words.order))


def _dimension_levels(rated: list[str]) -> list[sa.Label[Any]]:
    """One column per dimension: the rating's level in it (a look-up by the primary key)."""
    return [
        sa.select(dimensions.c.level)
        .where(dimensions.c.rating_id == ratings.c.id, dimensions.c.dimension == dimension)
        .scalar_subquery()
        .label(f"dimension_{i}")
        for i, dimension in enumerate(rated)
    ]


Column = tuple[str, Callable[[Row], Cell]]


def _complaint(words: Words) -> list[Column]:
    return [
        ("comment", lambda r: r["comment"]),
        ("problems", lambda r: words.problems(r["problems"])),
        ("details", lambda r: r["details"]),
        ("wants_callback", lambda r: words.yes_no(r["wants_callback"])),
    ]


def _marks(words: Words, local: Callable[[datetime | None], str | None]) -> list[Column]:
    return [
        ("contact", lambda r: r["phone_mask"] or national.NO_CONTACT),
        ("excluded_at", lambda r: local(r["excluded_at"])),
        ("excluded_reason", lambda r: r["excluded_reason"]),
        ("flagged", lambda r: words.yes_no(r["flagged"])),
    ]


def _dimension_columns(words: Words, rated: list[str]) -> list[tuple[str, str]]:
    return [(words.dimension(d), f"dimension_{i}") for i, d in enumerate(rated)]


def _sheet(
    name: str,
    engine: sa.Engine,
    query: sa.Select[Any],
    words: Words,
    before: list[Column],
    rated: list[str],
    after: list[Column],
) -> Sheet:
    dims = _dimension_columns(words, rated)
    header = (
        [words.header(k) for k, _ in before]
        + [label for label, _ in dims]
        + [words.header(k) for k, _ in after]
    )
    getters = [g for _, g in before] + [_get(c) for _, c in dims] + [g for _, g in after]

    def rows() -> Iterator[list[Cell]]:
        for row in _stream(engine, query):
            yield [get(row) for get in getters]

    return Sheet(name, header, rows())


def _get(column: str) -> Callable[[Row], Cell]:
    return lambda r: r[column]


RATED = ratings.outerjoin(records, records.c.id == ratings.c.record_id).outerjoin(
    complaints, complaints.c.rating_id == ratings.c.id
)
TICKETED = (
    tickets.join(ratings, ratings.c.id == tickets.c.rating_id)
    .outerjoin(records, records.c.id == tickets.c.record_id)
    .outerjoin(complaints, complaints.c.rating_id == ratings.c.id)
)
RATING_COLUMNS = (
    ratings.c.comment,
    complaints.c.problems,
    complaints.c.details,
    complaints.c.wants_callback,
    records.c.phone_mask,
    ratings.c.excluded_at,
    ratings.c.excluded_reason,
    ratings.c.flagged,
)


def ratings_sheet(
    engine: sa.Engine,
    scope: Scope,
    *,
    locale: str,
    survey: Survey,
    layout: Layout = "standard",
    codes: national.Codes,
) -> Sheet:
    """The ratings submitted in ``scope``, oldest first."""
    zone = ZoneInfo(scope.zone)
    where = scope.where(ratings.c.submitted_at, records.c.department)
    order = (ratings.c.submitted_at, ratings.c.id)
    if layout == "national":
        query = sa.select(*national.columns()).select_from(RATED).where(*where).order_by(*order)

        def national_rows() -> Iterator[list[Cell]]:
            for row in _stream(engine, query):
                yield list(national.national_row(row, zone=zone, codes=codes).values())

        return Sheet("ratings", list(national.FIELDS), national_rows())
    words = Words(locale, survey)
    local = _local(zone)
    rated = _rated_dimensions(engine, RATED, where, words)
    query = (
        sa.select(
            ratings.c.id,
            records.c.record_no,
            ratings.c.submitted_at,
            ratings.c.channel,
            ratings.c.provider,
            ratings.c.status,
            ratings.c.unsolicited,
            ratings.c.evaluation_count,
            ratings.c.level,
            records.c.department,
            records.c.item_code,
            records.c.item_name,
            records.c.district,
            records.c.hall,
            records.c.window,
            records.c.clerk,
            *RATING_COLUMNS,
            *_dimension_levels(rated),
        )
        .select_from(RATED)
        .where(*where)
        .order_by(*order)
    )
    before: list[Column] = [
        ("id", lambda r: r["id"]),
        ("record_no", lambda r: r["record_no"]),
        ("submitted_at", lambda r: local(r["submitted_at"])),
        ("channel", lambda r: r["channel"]),
        ("provider", lambda r: r["provider"]),
        ("status", lambda r: r["status"]),
        ("unsolicited", lambda r: words.yes_no(r["unsolicited"])),
        ("evaluation_count", lambda r: r["evaluation_count"]),
        ("level", lambda r: r["level"]),
        ("level_name", lambda r: words.levels[r["level"]]),
    ]
    after: list[Column] = [
        *_complaint(words),
        ("department", lambda r: r["department"]),
        ("item_code", lambda r: r["item_code"]),
        ("item_name", lambda r: r["item_name"]),
        ("district", lambda r: r["district"]),
        ("hall", lambda r: r["hall"]),
        ("window", lambda r: r["window"]),
        ("clerk", lambda r: r["clerk"]),
        *_marks(words, local),
    ]
    return _sheet("ratings", engine, query, words, before, rated, after)


def tickets_sheet(engine: sa.Engine, scope: Scope, *, locale: str, survey: Survey) -> Sheet:
    """The tickets opened in ``scope`` (a department's: the tickets it holds), oldest first,
    with their bad review."""
    zone = ZoneInfo(scope.zone)
    where = scope.where(tickets.c.opened_at, tickets.c.department)
    words = Words(locale, survey)
    local = _local(zone)
    rated = _rated_dimensions(engine, TICKETED, where, words)
    query = (
        sa.select(
            tickets.c.id,
            tickets.c.rating_id,
            records.c.record_no,
            tickets.c.department,
            records.c.district,
            records.c.item_name,
            records.c.hall,
            records.c.window,
            tickets.c.tier,
            tickets.c.state,
            tickets.c.opened_at,
            tickets.c.due_at,
            tickets.c.acknowledged_at,
            tickets.c.responded_at,
            tickets.c.outcome,
            tickets.c.response,
            tickets.c.closed_at,
            tickets.c.closed_reason,
            tickets.c.rerating_level,
            ratings.c.level,
            *RATING_COLUMNS,
            *_dimension_levels(rated),
        )
        .select_from(TICKETED)
        .where(*where)
        .order_by(tickets.c.opened_at, tickets.c.id)
    )

    def on_time(r: Row) -> str | None:
        if r["responded_at"] is None:
            return None
        return words.yes_no(r["responded_at"] <= r["due_at"])

    before: list[Column] = [
        ("id", lambda r: r["id"]),
        ("rating_id", lambda r: r["rating_id"]),
        ("record_no", lambda r: r["record_no"]),
        ("department", lambda r: r["department"]),
        ("district", lambda r: r["district"]),
        ("item_name", lambda r: r["item_name"]),
        ("hall", lambda r: r["hall"]),
        ("window", lambda r: r["window"]),
        ("tier", lambda r: r["tier"]),
        ("state", lambda r: r["state"]),
        ("opened_at", lambda r: local(r["opened_at"])),
        ("due_at", lambda r: local(r["due_at"])),
        ("acknowledged_at", lambda r: local(r["acknowledged_at"])),
        ("responded_at", lambda r: local(r["responded_at"])),
        ("on_time", on_time),
        ("outcome", lambda r: r["outcome"]),
        ("response", lambda r: r["response"]),
        ("closed_at", lambda r: local(r["closed_at"])),
        ("closed_reason", lambda r: r["closed_reason"]),
        ("rerating_level", lambda r: r["rerating_level"]),
        ("level", lambda r: r["level"]),
        ("level_name", lambda r: words.levels[r["level"]]),
    ]
    after = [*_complaint(words), *_marks(words, local)]
    return _sheet("tickets", engine, query, words, before, rated, after)


# --- writing ---------------------------------------------------------------------------------


def csv_chunks(sheet: Sheet) -> Iterator[bytes]:
    """The sheet as UTF-8 CSV (with a byte-order mark, so that Excel reads the Chinese), in
    chunks of about :data:`CSV_CHUNK` characters."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow([neutralised(h) for h in sheet.header])
    starts = frozenset(FORMULA_STARTS)  # one character each: the cell's first is looked up
    for row in sheet.rows:
        # neutralised() inline: a million rows of thirty cells make a call a cell count
        writer.writerow(
            [
                "'" + c if c.__class__ is str and c[:1] in starts else "" if c is None else c
                for c in row
            ]
        )
        if buffer.tell() >= CSV_CHUNK:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def write_xlsx(sheet: Sheet, path: Path) -> int:
    """Write the sheet to ``path`` as XLSX in constant memory (a row is on disk once the next
    begins), continuing on a new worksheet past Excel's row limit. The number of rows."""
    workbook = xlsxwriter.Workbook(
        str(path),
        # Strings stay strings: never a formula or a link made of a citizen's words.
        {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False},
    )
    bold = workbook.add_format({"bold": True})
    header = [neutralised(h) for h in sheet.header]

    def new_worksheet(number: int) -> Any:
        worksheet = workbook.add_worksheet(sheet.name if number == 1 else f"{sheet.name} {number}")
        for col, text in enumerate(header):
            worksheet.write_string(0, col, text, bold)
        return worksheet

    worksheet = new_worksheet(1)
    line = 1
    written = 0
    for row in sheet.rows:
        if line == XLSX_ROWS:
            worksheet = new_worksheet(written // (XLSX_ROWS - 1) + 1)
            line = 1
        for col, cell in enumerate(row):
            if isinstance(cell, str):
                worksheet.write_string(line, col, neutralised(cell))
            elif cell is not None:
                worksheet.write_number(line, col, cell)
        line += 1
        written += 1
    workbook.close()
    return written
