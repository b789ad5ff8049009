"""The supervisor dashboard's charts, drawn on the server as SVG with pygal, each with its text
alternative and the table of its numbers.

A :class:`Chart` is built from figures the statistics already computed (``bot.results.stats``,
``bot.tickets.figures``) and draws itself into the page with the response's style nonce:
the page's CSP allows no script and no inline style but ``<style nonce=…>``. So pygal runs
with ``js=[]`` (no script fetched from elsewhere), and every SVG is finished by
:func:`_finish`: its scripts (pygal's tooltip config) and ``style`` attributes dropped, its
``<style>`` given the nonce, a ``<title>`` and ``<desc>`` (the summary) that ``aria-labelledby``
names, a ``<title>`` on each bar ("name: value", shown on hover), the marked bars (the bottom N)
given the class ``marked``. Names and words are text: pygal builds the SVG with ElementTree, which
escapes them.

好评率 by day with the bad reviews as bars is two aligned charts, not one: pygal draws one kind of
chart at a time, and a bar chart with the rate on a secondary axis would draw the rate as bars
too, side by side with the counts, which reads as two counts. A line over the days for the rate,
and below it bars over the same days, same width, same margins (the y labels padded to one
width), read as one.
"""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pygal
from markupsafe import Markup
from pygal.style import Style

from bot.results.report_files import NOT_A_NUMBER
from locales import N_

# pygal puts an import hook on sys.meta_path for its map plugins (pygal.maps.*, unused here). It
# has only the old find_module, so every later import in the process warns (ImportWarning).
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, pygal.PluginImportFixer)]

Say = Callable[..., str]  # the page's gettext: say("chart.x", n=3)

WIDTH = 800
BAR_HEIGHT = 30  # of one horizontal bar, with its gap
FIGURE_SPACE = "\u2007"  # as wide as a digit: pads y labels to one width
MARKED_COLOUR = "#c53030"

STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#1a202c",
    foreground_strong="#1a202c",
    foreground_subtle="#a0aec0",
    font_family="system-ui, 'Noto Sans CJK SC', 'PingFang SC', 'Microsoft YaHei', sans-serif",
    label_font_size=13,
    major_label_font_size=13,
    value_font_size=12,
    title_font_size=15,
    colors=("#2b6cb0", "#dd6b20", "#2f855a", "#6b46c1", "#b7791f"),
    opacity="0.9",
    opacity_hover="1",
)
# The bottom N in another colour; a rule of the chart's own stylesheet (nonce'd with it).
MARKED_CSS = f"inline:.pygal-chart .bar.marked rect{{fill:{MARKED_COLOUR};stroke:{MARKED_COLOUR}}}"

LEVEL_NAMES = {n: f"level.{n}" for n in range(1, 6)}  # the national scheme's labels (catalogs)
STATE_NAMES = {
    "open": "report.state.open",
    "acknowledged": "report.state.acknowledged",
    "responded": "report.state.responded",
    "appealed": "report.state.appealed",
    "closed": "report.state.closed",
}

NO_DATA = N_("chart.no_data")
TRIAGE = N_("chart.triage")
DAYS_TITLE = N_("chart.days.title")
DAYS_RATE = N_("chart.days.rate")
DAYS_BAD = N_("chart.days.bad")
DAYS_SUMMARY = N_("chart.days.summary")
DAYS_EMPTY = N_("chart.days.empty")
LEVELS_TITLE = N_("chart.levels.title")
LEVELS_SUMMARY = N_("chart.levels.summary")
RANKING_SUMMARY = N_("chart.ranking.summary")
RANKING_EMPTY = N_("chart.ranking.empty")
RANKING_NOTE = N_("chart.ranking.marked")
STATES_TITLE = N_("chart.states.title")
STATES_SUMMARY = N_("chart.states.summary")
OVERDUE_TITLE = N_("chart.overdue.title")
OVERDUE_SUMMARY = N_("chart.overdue.summary")
OVERDUE_EMPTY = N_("chart.overdue.empty")
COLUMN_DAY = N_("chart.column.day")
COLUMN_COUNTED = N_("chart.column.counted")
COLUMN_GOOD_RATE = N_("chart.column.good_rate")
COLUMN_BAD_RATE = N_("chart.column.bad_rate")
COLUMN_BAD = N_("chart.column.bad")
COLUMN_LEVEL = N_("chart.column.level")
COLUMN_SHARE = N_("chart.column.share")
COLUMN_RANK = N_("chart.column.rank")
COLUMN_NAME = N_("chart.column.name")
COLUMN_SCORE = N_("chart.column.score")
COLUMN_CHANGE = N_("chart.column.change")
COLUMN_STREAK = N_("chart.column.streak")
COLUMN_STATE = N_("chart.column.state")
COLUMN_TICKETS = N_("chart.column.tickets")
COLUMN_DEPARTMENT = N_("chart.column.department")
COLUMN_OVERDUE = N_("chart.column.overdue")


@dataclass(frozen=True)
class Table:
    """The numbers a chart draws, as a table beside it; ``marked``: the indexes of the rows of
    the marked bars."""

    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    marked: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Graph:
    """One pygal chart and what :func:`_finish` adds to it."""

    chart: Any  # a pygal chart, values added
    bar_titles: Sequence[str] = ()  # a <title> per bar, in the order of the values
    marked: frozenset[int] = frozenset()  # the bars drawn in the marked colour


@dataclass(frozen=True)
class Chart:
    """A chart of the dashboard: ``name`` is its id in the page."""

    name: str
    title: str
    summary: str  # one sentence: the text alternative
    table: Table
    graphs: tuple[Graph, ...] = ()
    note: str | None = None  # what the marked colour means
    bars: int = field(default=0)  # bars drawn (one per group), for the page's tests

    def svg(self, nonce: str) -> Markup:
        """The chart's SVG, finished for a page whose CSP has ``'nonce-<nonce>'``."""
        drawn = []
        for n, graph in enumerate(self.graphs):
            label = f"{self.name}-{n}"
            finish = _finisher(nonce, label, self.summary, graph.bar_titles, graph.marked)
            drawn.append(graph.chart.render(xml_filters=[finish]))
        return Markup("".join(drawn))  # noqa: S704 — ElementTree's serialisation, escaped


def _base(chart_type: Any, say: Say, title: str, *, height: int, **config: Any) -> Any:
    return chart_type(
        js=[],
        css=["file://style.css", "file://graph.css", MARKED_CSS],
        disable_xml_declaration=True,
        explicit_size=False,
        width=WIDTH,
        height=height,
        style=STYLE,
        title=title,
        show_legend=False,
        no_data_text=say(NO_DATA),
        pretty_print=False,
        **config,
    )


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _finisher(
    nonce: str, label: str, summary: str, bar_titles: Sequence[str], marked: frozenset[int]
) -> Callable[[ET.Element], ET.Element]:
    def finish(root: ET.Element) -> ET.Element:
        for parent in list(root.iter()):
            for child in list(parent):
                if _local(child.tag) == "script" or not isinstance(child.tag, str):
                    parent.remove(child)  # pygal's tooltip script; its comments
        for element in root.iter():
            element.attrib.pop("style", None)  # inline style is refused by the CSP anyway
            if _local(element.tag) == "style":
                element.set("nonce", nonce)
        root.set("role", "img")  # its id stays pygal's: the stylesheet is scoped by it
        root.set("aria-labelledby", f"{label}-title {label}-desc")
        title = next(e for e in root if _local(e.tag) == "title")
        title.set("id", f"{label}-title")
        desc = ET.Element("desc", {"id": f"{label}-desc"})
        desc.text = summary
        root.insert(list(root).index(title) + 1, desc)
        bars = [e for e in root.iter() if "bar" in e.get("class", "").split()]
        for n, bar in enumerate(bars):
            if n < len(bar_titles):
                ET.SubElement(bar, "title").text = bar_titles[n]
            if n in marked:
                bar.set("class", "bar marked")
        return root

    return finish


def _percent(value: float | None, say: Say) -> str:
    return NOT_A_NUMBER if value is None else f"{value:.2f}%"


def _y_labels(ticks: Sequence[float], form: str, width: int) -> list[dict[str, Any]]:
    """``ticks`` labelled by ``form``, padded to ``width`` characters (pygal sizes the margin
    by the longest label's length)."""
    labels = (form.format(t) for t in ticks)
    return [
        {"value": t, "label": FIGURE_SPACE * (width - len(text)) + text}
        for t, text in zip(ticks, labels, strict=True)
    ]


def _ticks(top: float, count: int = 5) -> list[float] | None:
    """Whole-number ticks of a count axis, from 0 to at least ``top``; none for a chart with
    nothing drawn (pygal draws its "no data" text alone)."""
    if top <= 0:
        return None
    step = 1
    while step * count < top:  # 1, 2, 5, 10, 20, 50 …
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    return [float(step * n) for n in range(math.ceil(top / step) + 1)]


# --- 好评率 by day, the bad reviews as bars ---------------------------------------------------


def good_rate_by_day(days: Sequence[Mapping[str, Any]], first: date, last: date, say: Say) -> Chart:
    """``days``: ``group_stats(group_by="day")`` groups over ``first``..``last``. Every day of
    the range is on the axis: a day with no rating is a gap in the line and no bar."""
    by_day = {group["key"]: group for group in days}
    axis = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    rates = [by_day.get(d.isoformat(), {}).get("good_rate") for d in axis]
    bad = [by_day[d.isoformat()]["bad"] if d.isoformat() in by_day else None for d in axis]
    labels = [f"{d.month:02d}-{d.day:02d}" for d in axis]
    common = {
        "x_labels_major_every": max(1, len(axis) // 10),
        "show_minor_x_labels": False,
        "truncate_label": -1,
    }
    line = _base(
        pygal.Line,
        say,
        say(DAYS_RATE),
        height=260,
        range=(0, 100),
        allow_interruptions=True,
        show_dots=len(axis) <= 62,
        dots_size=3,
        **common,
    )
    bars = _base(pygal.Bar, say, say(DAYS_BAD), height=200, **common)
    line.x_labels = bars.x_labels = labels
    if days:  # both y axes labelled to one width: the two plots line up
        rate_ticks = [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        bad_ticks = _ticks(max((b or 0 for b in bad), default=0)) or [0.0, 1.0]
        width = max(len(f"{t:g}%") for t in rate_ticks + bad_ticks)
        line.y_labels = _y_labels(rate_ticks, "{:g}%", width)
        bars.y_labels = _y_labels(bad_ticks, "{:g}", width)
        line.add(say(DAYS_RATE), rates)
        bars.add(say(DAYS_BAD), bad)
    rows = [
        (
            g["key"],
            str(g["counted"]),
            _percent(g["good_rate"], say),
            str(g["bad"]),
        )
        for g in sorted(days, key=lambda g: str(g["key"]))
    ]
    rated = [g["good_rate"] for g in days if g["good_rate"] is not None]
    summary = (
        say(
            DAYS_SUMMARY,
            first=first.isoformat(),
            last=last.isoformat(),
            low=_percent(min(rated), say),
            high=_percent(max(rated), say),
            bad=sum(int(g["bad"]) for g in days),
        )
        if rated
        else say(DAYS_EMPTY, first=first.isoformat(), last=last.isoformat())
    )
    return Chart(
        name="chart-days",
        title=say(DAYS_TITLE),
        summary=summary,
        table=Table(
            (say(COLUMN_DAY), say(COLUMN_COUNTED), say(COLUMN_GOOD_RATE), say(COLUMN_BAD)), rows
        ),
        graphs=(
            Graph(line),
            Graph(
                bars,
                # pygal draws no bar for a day without ratings (None)
                bar_titles=[
                    f"{d.isoformat()}: {b}" for d, b in zip(axis, bad, strict=True) if b is not None
                ],
            ),
        ),
        bars=sum(1 for b in bad if b is not None),
    )


# --- the levels histogram ------------------------------------------------------------------------


def levels_histogram(levels: Mapping[str, int], say: Say) -> Chart:
    """``levels``: the count of each level 1–5 (``group_stats``' ``levels``)."""
    counts = [int(levels.get(str(n), 0)) for n in range(1, 6)]
    total = sum(counts)
    names = [f"{n} {say(LEVEL_NAMES[n])}" for n in range(1, 6)]
    chart = _base(
        pygal.Bar,
        say,
        say(LEVELS_TITLE),
        height=300,
        print_values=True,
        y_labels=_ticks(max(counts)),
    )
    chart.x_labels = names
    if total:
        chart.add(say(LEVELS_TITLE), counts)
    rows = [
        (str(n), say(LEVEL_NAMES[n]), str(c), _percent(100 * c / total if total else None, say))
        for n, c in zip(range(1, 6), counts, strict=True)
    ]
    good, bad = sum(counts[2:]), sum(counts[:2])
    return Chart(
        name="chart-levels",
        title=say(LEVELS_TITLE),
        summary=say(LEVELS_SUMMARY, counted=total, good=good, bad=bad),
        table=Table(
            (say(COLUMN_LEVEL), say(COLUMN_NAME), say(COLUMN_COUNTED), say(COLUMN_SHARE)), rows
        ),
        graphs=(
            Graph(chart, bar_titles=[f"{n}: {c}" for n, c in zip(names, counts, strict=True)]),
        ),
        bars=5 if total else 0,
    )


# --- a ranking as horizontal bars, the bottom N marked -------------------------------------------


def ranking_bars(
    name: str, title: str, ranked: Sequence[Mapping[str, Any]], bottom: Iterable[str], say: Say
) -> Chart:
    """``ranked``: the ``ranked`` rows of ``stats.ranking`` (best first); ``bottom``: the keys
    in the bottom N (``scoring.bottom``), drawn in the marked colour and marked in the table."""
    low = set(bottom)
    count = len(ranked)
    chart = _base(
        pygal.HorizontalBar,
        say,
        title,
        height=90 + BAR_HEIGHT * max(count, 1),
        range=(0, 100),
        print_values=True,
        formatter=lambda v: f"{v:.2f}",
        truncate_label=-1,
    )
    # pygal stacks horizontal bars from the bottom up: the best rank goes on top
    upward = list(reversed(ranked))
    chart.x_labels = [str(row["name"]) for row in upward]
    if ranked:
        chart.add(title, [float(row["score"]) for row in upward])
    marked = frozenset(n for n, row in enumerate(upward) if row["key"] in low)
    rows = [
        (
            str(row["rank"]),
            str(row["name"]),
            str(row["counted"]),
            _percent(row["good_rate"], say),
            _percent(row["bad_rate"], say),
            f"{float(row['score']):.2f}",
            NOT_A_NUMBER if row["change"] is None else f"{row['change']:+d}",
            str(row["bottom_streak"]),
        )
        for row in ranked
    ]
    bottom_names = [str(row["name"]) for row in ranked if row["key"] in low]
    summary = (
        say(
            RANKING_SUMMARY,
            count=count,
            best=str(ranked[0]["name"]),
            score=f"{float(ranked[0]['score']):.2f}",
            bottom=say("list.separator").join(bottom_names),
        )
        if ranked
        else say(RANKING_EMPTY)
    )
    return Chart(
        name=name,
        title=title,
        summary=summary,
        table=Table(
            (
                say(COLUMN_RANK),
                say(COLUMN_NAME),
                say(COLUMN_COUNTED),
                say(COLUMN_GOOD_RATE),
                say(COLUMN_BAD_RATE),
                say(COLUMN_SCORE),
                say(COLUMN_CHANGE),
                say(COLUMN_STREAK),
            ),
            rows,
            frozenset(n for n, row in enumerate(ranked) if row["key"] in low),
        ),
        graphs=(
            Graph(
                chart,
                bar_titles=[f"{row['name']}: {float(row['score']):.2f}" for row in upward],
                marked=marked,
            ),
        ),
        note=say(RANKING_NOTE, n=len(low)) if low else None,
        bars=count,
    )


# --- tickets ---------------------------------------------------------------------------------


def tickets_by_state(counts: Mapping[str, int], say: Say) -> Chart:
    """``counts``: the tickets opened in the period, by state (``TicketFigures``)."""
    states = [s for s in STATE_NAMES if s in counts]
    names = [say(STATE_NAMES[s]) for s in states]
    values = [int(counts[s]) for s in states]
    total = sum(values)
    chart = _base(
        pygal.Bar,
        say,
        say(STATES_TITLE),
        height=280,
        print_values=True,
        y_labels=_ticks(max(values, default=0)),
    )
    chart.x_labels = names
    if total:
        chart.add(say(STATES_TITLE), values)
    return Chart(
        name="chart-states",
        title=say(STATES_TITLE),
        summary=say(STATES_SUMMARY, total=total),
        table=Table(
            (say(COLUMN_STATE), say(COLUMN_TICKETS)),
            [(n, str(v)) for n, v in zip(names, values, strict=True)],
        ),
        graphs=(
            Graph(chart, bar_titles=[f"{n}: {v}" for n, v in zip(names, values, strict=True)]),
        ),
        bars=len(values) if total else 0,
    )


def overdue_by_department(pairs: Sequence[tuple[str | None, int]], say: Say) -> Chart:
    """``pairs``: (department, tickets overdue now), most first; ``None``: still in triage."""
    names = [say(TRIAGE) if d is None else d for d, _ in pairs]
    chart = _base(
        pygal.HorizontalBar,
        say,
        say(OVERDUE_TITLE),
        height=90 + BAR_HEIGHT * max(len(pairs), 1),
        print_values=True,
        truncate_label=-1,
        y_labels=_ticks(max((n for _, n in pairs), default=0)),
    )
    upward = list(reversed(list(zip(names, (n for _, n in pairs), strict=True))))
    chart.x_labels = [n for n, _ in upward]
    if pairs:
        chart.add(say(OVERDUE_TITLE), [v for _, v in upward])
    total = sum(n for _, n in pairs)
    return Chart(
        name="chart-overdue",
        title=say(OVERDUE_TITLE),
        summary=say(OVERDUE_SUMMARY, total=total, departments=len(pairs))
        if pairs
        else say(OVERDUE_EMPTY),
        table=Table(
            (say(COLUMN_DEPARTMENT), say(COLUMN_OVERDUE)),
            [(n, str(v)) for n, (_, v) in zip(names, pairs, strict=True)],
        ),
        graphs=(Graph(chart, bar_titles=[f"{n}: {v}" for n, v in upward]),),
        bars=len(pairs),
    )
