"""The monthly report (``bot.results.report``) as a file: HTML that prints on A4, or XLSX.

Both files are written from one layout — sections of tables whose cells carry their kind (text,
a count, a percentage…) — so they always hold the same figures. Every heading and label is a
catalog message (``report.*``) in the reader's locale, and so are the values ratebot names
itself (a ticket's state, an appeal's ground, a flag's rule); a value no catalog names (a
deployment's own deadline tier) is shown as it is stored.

HTML goes through a Jinja2 template (``templates/report.html``) with autoescape on, so a name is
text and never markup; its stylesheet is embedded (no external asset, no script). XLSX goes
through XlsxWriter, one sheet per section, with strings never read as formulas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jinja2
import xlsxwriter

import locales
from bot.results.exports import neutralised
from bot.results.report import MonthFigures, MonthlyReport
from locales import N_

SUFFIXES = (".html", ".xlsx")
TEMPLATES = Path(__file__).resolve().parent / "templates"
TIME_FORMAT = "%Y-%m-%d %H:%M"
SHEET_NAME = 31  # characters Excel allows in a sheet's name
NOT_A_NUMBER = "—"

Kind = Literal["text", "count", "percent", "decimal", "signed"]
Value = str | int | float | None

RANKED_BY = {
    "department": N_("report.by.department"),
    "item": N_("report.by.item"),
    "district": N_("report.by.district"),
    "hall": N_("report.by.hall"),
    "window": N_("report.by.window"),
    "clerk": N_("report.by.clerk"),
}
STATES = {
    "open": N_("report.state.open"),
    "acknowledged": N_("report.state.acknowledged"),
    "responded": N_("report.state.responded"),
    "appealed": N_("report.state.appealed"),
    "closed": N_("report.state.closed"),
}
OUTCOMES: dict[str | None, str] = {
    "rectified": N_("report.outcome.rectified"),
    "explained": N_("report.outcome.explained"),
    "appeal_upheld": N_("report.outcome.appeal_upheld"),
    None: N_("report.outcome.none"),
}
TIERS = {
    "immediate": N_("report.tier.immediate"),
    "general": N_("report.tier.general"),
    "complex": N_("report.tier.complex"),
}
GROUNDS = {
    "malicious": N_("report.ground.malicious"),
    "untrue": N_("report.ground.untrue"),
    "not_ours": N_("report.ground.not_ours"),
}
VERDICTS = {"upheld": N_("report.verdict.upheld"), "rejected": N_("report.verdict.rejected")}
RULES = {
    "contact_ratings": N_("report.rule.contact_ratings"),
    "staff_contact": N_("report.rule.staff_contact"),
    "top_burst": N_("report.rule.top_burst"),
}
FLAG_STATES = {
    "pending": N_("report.flag.pending"),
    "confirmed": N_("report.flag.confirmed"),
    "cleared": N_("report.flag.cleared"),
}


@dataclass(frozen=True)
class Cell:
    """A value, and what it is: how it is printed, and its number format in XLSX."""

    value: Value
    kind: Kind = "text"


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Cell]]
    empty: str  # shown in place of rows when there are none
    caption: str | None = None


@dataclass(frozen=True)
class Section:
    title: str
    tables: list[Table]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    """The report in the reader's words: a title, the lines under it, the sections."""

    lang: str  # BCP 47, for the HTML
    title: str
    cover: list[str]
    sections: list[Section]


class _Words:
    """The report's messages in one locale."""

    def __init__(self, locale: str) -> None:
        self.locale = locale

    def __call__(self, message_id: str, **params: Any) -> str:
        return locales.gettext(self.locale, message_id, **params)

    def named(self, labels: Mapping[Any, str], value: Any) -> str:
        """The label of a value ratebot names, else the value as it is stored."""
        label = labels.get(value)
        return self(label) if label else str(value)

    def table(self, header: list[str], rows: list[list[Cell]], caption: str | None = None) -> Table:
        return Table(header, rows, self(N_("report.empty")), caption)


def layout(report: MonthlyReport, locale: str) -> Layout:
    """What both files show, in ``locale``."""
    say = _Words(locale)
    generated = report.generated_at.astimezone(ZoneInfo(report.zone)).strftime(TIME_FORMAT)
    return Layout(
        lang=locale.replace("_", "-"),
        title=say(N_("report.title"), period=report.period.label),
        cover=[
            say(
                N_("report.period"),
                first=report.period.first.isoformat(),
                last=report.period.last.isoformat(),
            ),
            say(N_("report.ranked_by"), by=say.named(RANKED_BY, report.by)),
            say(N_("report.generated"), time=generated, zone=report.zone),
        ],
        sections=[
            _ranking(report, say),
            _trend(report, say),
            _tickets(report, say),
            _overdue(report, say),
            _appeals(report, say),
            _flags(report, say),
        ],
    )


def _ranking(report: MonthlyReport, say: _Words) -> Section:
    rules = report.ranking["rules"]
    name, counted = say(N_("report.column.name")), say(N_("report.column.counted"))
    good, bad = say(N_("report.column.good_rate")), say(N_("report.column.bad_rate"))
    rank, score = say(N_("report.column.rank")), say(N_("report.column.score"))
    streak = say(N_("report.column.bottom_streak"))
    return Section(
        say(N_("report.ranking.title")),
        notes=[
            say(N_("report.ranking.rules"), min_sample=rules["min_sample"], bottom=rules["bottom"])
        ],
        tables=[
            say.table(
                [rank, name, counted, good, bad, score, say(N_("report.column.change")), streak],
                [
                    [
                        Cell(r["rank"], "count"),
                        Cell(r["name"]),
                        Cell(r["counted"], "count"),
                        Cell(r["good_rate"], "percent"),
                        Cell(r["bad_rate"], "percent"),
                        Cell(r["score"], "decimal"),
                        Cell(r["change"], "signed"),
                        Cell(r["bottom_streak"], "count"),
                    ]
                    for r in report.ranking["ranked"]
                ],
            ),
            say.table(
                [rank, name, score, streak],
                [
                    [
                        Cell(r["rank"], "count"),
                        Cell(r["name"]),
                        Cell(r["score"], "decimal"),
                        Cell(r["bottom_streak"], "count"),
                    ]
                    for r in report.summoned
                ],
                caption=say(N_("report.ranking.summoned")),
            ),
            say.table(
                [name, counted, good, bad],
                [
                    [
                        Cell(r["name"]),
                        Cell(r["counted"], "count"),
                        Cell(r["good_rate"], "percent"),
                        Cell(r["bad_rate"], "percent"),
                    ]
                    for r in report.ranking["too_few_ratings"]
                ],
                caption=say(N_("report.ranking.too_few")),
            ),
        ],
    )


FIGURES: list[tuple[str, str, Kind]] = [
    ("counted", N_("report.column.counted"), "count"),
    ("good_rate", N_("report.column.good_rate"), "percent"),
    ("bad_rate", N_("report.column.bad_rate"), "percent"),
    ("average", N_("report.column.average"), "decimal"),
    ("on_time_rate", N_("report.column.on_time_rate"), "percent"),
    ("rerated_good_rate", N_("report.column.rerated_good_rate"), "percent"),
]


def _change(now: MonthFigures, before: MonthFigures, name: str) -> Value:
    this: float | None = getattr(now, name)
    that: float | None = getattr(before, name)
    if this is None or that is None:
        return None
    return this - that if isinstance(this, int) else round(this - that, 2)


def _trend(report: MonthlyReport, say: _Words) -> Section:
    now, before = report.months[-1], report.months[-2]
    return Section(
        say(N_("report.trend.title")),
        tables=[
            say.table(
                [
                    say(N_("report.column.figure")),
                    say(N_("report.column.this_month")),
                    say(N_("report.column.previous_month")),
                    say(N_("report.column.month_change")),
                ],
                [
                    [
                        Cell(say(label)),
                        Cell(getattr(now, name), kind),
                        Cell(getattr(before, name), kind),
                        Cell(_change(now, before, name), "signed"),
                    ]
                    for name, label, kind in FIGURES
                ],
            ),
            say.table(
                [say(N_("report.column.month")), *(say(label) for _, label, _ in FIGURES)],
                [
                    [Cell(m.month), *(Cell(getattr(m, name), kind) for name, _, kind in FIGURES)]
                    for m in report.months
                ],
                caption=say(N_("report.trend.months")),
            ),
        ],
    )


def _in_order(labels: Mapping[Any, str], found: Iterable[Any]) -> list[Any]:
    """The values ratebot names, in their order, then any other found, sorted."""
    return [*labels, *sorted((v for v in found if v not in labels), key=str)]


def _tickets(report: MonthlyReport, say: _Words) -> Section:
    count = say(N_("report.column.count"))
    return Section(
        say(N_("report.tickets.title")),
        notes=[say(N_("report.tickets.opened"), count=report.tickets_opened)],
        tables=[
            say.table(
                [say(N_("report.column.state")), count],
                [
                    [Cell(say.named(STATES, s)), Cell(report.tickets_by_state.get(s, 0), "count")]
                    for s in _in_order(STATES, report.tickets_by_state)
                ],
                caption=say(N_("report.tickets.by_state")),
            ),
            say.table(
                [say(N_("report.column.outcome")), count],
                [
                    [
                        Cell(say.named(OUTCOMES, o)),
                        Cell(report.tickets_by_outcome.get(o, 0), "count"),
                    ]
                    for o in _in_order(OUTCOMES, report.tickets_by_outcome)
                ],
                caption=say(N_("report.tickets.by_outcome")),
            ),
        ],
    )


def _overdue(report: MonthlyReport, say: _Words) -> Section:
    zone = ZoneInfo(report.zone)
    triage = say(N_("report.triage"))
    return Section(
        say(N_("report.overdue.title")),
        notes=[
            say(N_("report.overdue.rule")),
            say(N_("report.overdue.shown"), total=report.overdue_total, shown=len(report.overdue)),
        ],
        tables=[
            say.table(
                [
                    say(N_("report.column.ticket")),
                    say(N_("report.column.department")),
                    say(N_("report.column.tier")),
                    say(N_("report.column.due_at")),
                    say(N_("report.column.state")),
                ],
                [
                    [
                        Cell(t.id, "count"),
                        Cell(t.department or triage),
                        Cell(say.named(TIERS, t.tier)),
                        Cell(t.due_at.astimezone(zone).strftime(TIME_FORMAT)),
                        Cell(say.named(STATES, t.state)),
                    ]
                    for t in report.overdue
                ],
            )
        ],
    )


def _cross(
    say: _Words,
    corner: str,
    counts: Mapping[tuple[str, str], int],
    rows: Mapping[str, str],
    columns: Mapping[str, str],
) -> Table:
    """Counts by two values: a row for each of the first, a column for each of the second."""
    across = _in_order(columns, {b for _, b in counts})
    return say.table(
        [corner, *(say.named(columns, b) for b in across)],
        [
            [Cell(say.named(rows, a)), *(Cell(counts.get((a, b), 0), "count") for b in across)]
            for a in _in_order(rows, {a for a, _ in counts})
        ],
    )


def _appeals(report: MonthlyReport, say: _Words) -> Section:
    return Section(
        say(N_("report.appeals.title")),
        tables=[_cross(say, say(N_("report.column.ground")), report.appeals, GROUNDS, VERDICTS)],
    )


def _flags(report: MonthlyReport, say: _Words) -> Section:
    return Section(
        say(N_("report.flags.title")),
        tables=[_cross(say, say(N_("report.column.rule")), report.flags, RULES, FLAG_STATES)],
    )


# --- writing ---------------------------------------------------------------------------------


def shown(cell: Cell) -> str:
    """A cell as the HTML prints it."""
    value = cell.value
    if value is None:
        return NOT_A_NUMBER
    if isinstance(value, str):
        return value
    if cell.kind == "percent":
        return f"{value:.2f}%"
    if cell.kind == "decimal":
        return f"{value:.2f}"
    if cell.kind == "signed":
        if not value:
            return "0"
        return f"{value:+d}" if isinstance(value, int) else f"{value:+.2f}"
    return str(value)


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["shown"] = shown
    return environment.get_template("report.html")


def write_html(report: MonthlyReport, path: Path, locale: str) -> None:
    path.write_text(_template().render(page=layout(report, locale)), encoding="utf-8")


NUMBER_FORMATS = {  # by kind, and whether the value is a whole number
    ("count", True): "0",
    ("percent", False): "0.00%",
    ("percent", True): "0.00%",
    ("decimal", False): "0.00",
    ("decimal", True): "0.00",
    ("signed", True): "+0;-0;0",
    ("signed", False): "+0.00;-0.00;0",
}


def write_xlsx(report: MonthlyReport, path: Path, locale: str) -> None:
    page = layout(report, locale)
    workbook = xlsxwriter.Workbook(
        str(path), {"strings_to_formulas": False, "strings_to_urls": False}
    )
    bold = workbook.add_format({"bold": True})
    title = workbook.add_format({"bold": True, "font_size": 14})
    formats = {key: workbook.add_format({"num_format": f}) for key, f in NUMBER_FORMATS.items()}
    for section in page.sections:
        sheet = workbook.add_worksheet(_sheet_name(section.title))
        sheet.set_column(0, 0, 28)
        sheet.set_column(1, 8, 14)
        sheet.write_string(0, 0, neutralised(page.title), title)
        line = 1
        for text in page.cover:
            sheet.write_string(line, 0, neutralised(text))
            line += 1
        sheet.write_string(line, 0, neutralised(section.title), bold)
        line += 1
        for text in section.notes:
            sheet.write_string(line, 0, neutralised(text))
            line += 1
        for table in section.tables:
            line += 1
            if table.caption:
                sheet.write_string(line, 0, neutralised(table.caption), bold)
                line += 1
            for col, label in enumerate(table.header):
                sheet.write_string(line, col, neutralised(label), bold)
            line += 1
            if not table.rows:
                sheet.write_string(line, 0, neutralised(table.empty))
                line += 1
            for row in table.rows:
                for col, cell in enumerate(row):
                    _write_cell(sheet, line, col, cell, formats)
                line += 1
    workbook.close()


def _write_cell(sheet: Any, line: int, col: int, cell: Cell, formats: Mapping[Any, Any]) -> None:
    value = cell.value
    if value is None:
        sheet.write_string(line, col, NOT_A_NUMBER)
    elif isinstance(value, str):
        sheet.write_string(line, col, neutralised(value))
    else:
        number = value / 100 if cell.kind == "percent" else value
        sheet.write_number(line, col, number, formats.get((cell.kind, isinstance(value, int))))


def _sheet_name(title: str) -> str:
    name = "".join(" " if c in "[]:*?/\\" else c for c in title)
    return name[:SHEET_NAME].strip().strip("'")


def write(report: MonthlyReport, path: Path, locale: str) -> None:
    """Write the report to ``path``, as its suffix says (one of :data:`SUFFIXES`)."""
    writers = {".html": write_html, ".xlsx": write_xlsx}
    writers[path.suffix.lower()](report, path, locale)
