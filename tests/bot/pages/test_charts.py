"""The dashboard's charts on their own: each SVG parses as XML, carries the style nonce and no
script, names its text alternative; a ranking has one bar per group with the bottom N marked;
names are text, never markup; empty figures draw pygal's "no data" and no bar."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date
from typing import Any

import pytest

import locales
from bot.pages import charts

SVG = "{http://www.w3.org/2000/svg}"
NONCE = "n0nce"
HOSTILE = "<script>alert(1)</script>局"


def say(message_id: str, **params: Any) -> str:
    return locales.gettext("en", message_id, **params)


def drawn(chart: charts.Chart) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", chart.svg(NONCE), re.S)]


def bars(svg: ET.Element) -> list[ET.Element]:
    return [e for e in svg.iter() if "bar" in e.get("class", "").split()]


def title_of(element: ET.Element) -> str:
    title = element.find(f"{SVG}title")
    assert title is not None and title.text is not None
    return title.text


def accessible(svg: ET.Element, summary: str) -> None:
    assert svg.get("role") == "img"
    named = {e.get("id"): e.text for e in svg if e.tag in (f"{SVG}title", f"{SVG}desc")}
    labels = svg.get("aria-labelledby", "").split()
    assert len(labels) == 2 and all(label in named for label in labels)
    assert named[labels[1]] == summary
    assert not [e for e in svg.iter() if e.tag == f"{SVG}script"]
    assert not [e for e in svg.iter() if "style" in e.attrib]
    (style,) = [e for e in svg.iter() if e.tag == f"{SVG}style"]
    assert style.get("nonce") == NONCE


def ranked(*names: str) -> list[dict[str, Any]]:
    return [
        {
            "rank": n + 1,
            "key": f"k{n}",
            "name": name,
            "counted": 40 - n,
            "good_rate": 95.0 - 10 * n,
            "bad_rate": 5.0 + 10 * n,
            "score": 90.0 - 10 * n,
            "change": None if n == 0 else -1,
            "bottom_streak": 0,
        }
        for n, name in enumerate(names)
    ]


def test_a_ranking_has_a_bar_per_group_and_the_bottom_marked() -> None:
    rows = ranked("市自然资源局", "市公安局", HOSTILE, "市税务局")
    chart = charts.ranking_bars("chart-departments", "Departments", rows, {"k2", "k3"}, say)
    (svg,) = drawn(chart)
    accessible(svg, chart.summary)
    drawn_bars = bars(svg)
    assert len(drawn_bars) == len(rows) == chart.bars
    marked = {title_of(b).rsplit(":", 1)[0] for b in drawn_bars if "marked" in b.get("class", "")}
    assert marked == {HOSTILE, "市税务局"}
    assert chart.table.marked == {2, 3}  # the table marks the same rows
    assert [row[1] for row in chart.table.rows] == [r["name"] for r in rows]  # best first
    assert HOSTILE in chart.summary and "市自然资源局" in chart.summary
    assert chart.note == say("chart.ranking.marked", n=2)


def test_names_are_text_never_markup() -> None:
    rows = ranked(HOSTILE)
    text = charts.ranking_bars("chart-x", HOSTILE, rows, set(), say).svg(NONCE)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;局" in text
    overdue = charts.overdue_by_department([(HOSTILE, 2), (None, 1)], say).svg(NONCE)
    assert "<script>" not in overdue
    assert say("chart.triage") in overdue


def test_the_levels_histogram() -> None:
    chart = charts.levels_histogram({"1": 1, "2": 2, "3": 0, "4": 5, "5": 9}, say)
    (svg,) = drawn(chart)
    accessible(svg, chart.summary)
    assert [title_of(b) for b in bars(svg)] == [
        f"{n} {say(f'level.{n}')}: {c}" for n, c in zip(range(1, 6), (1, 2, 0, 5, 9), strict=True)
    ]
    assert chart.summary == say("chart.levels.summary", counted=17, good=14, bad=3)
    assert [row[2] for row in chart.table.rows] == ["1", "2", "0", "5", "9"]


def test_the_rate_by_day_is_two_aligned_charts() -> None:
    days = [
        {"key": "2026-11-03", "counted": 4, "good_rate": 75.0, "bad": 1},
        {"key": "2026-11-10", "counted": 250, "good_rate": 90.0, "bad": 25},
    ]
    chart = charts.good_rate_by_day(days, date(2026, 11, 1), date(2026, 11, 30), say)
    line, bar = drawn(chart)
    for svg in (line, bar):
        accessible(svg, chart.summary)
    # a slot a day on both; a bar (its title naming the day) only on the days with ratings
    assert [title_of(b) for b in bars(bar)] == ["2026-11-03: 1", "2026-11-10: 25"]
    assert chart.bars == 2
    plots = [
        next(e for e in svg.iter() if e.get("class") == "plot").get("transform")
        for svg in drawn(chart)
    ]
    left = [re.match(r"translate\(([\d.]+)", p or "") for p in plots]
    assert left[0] and left[1] and left[0][1] == left[1][1]  # the plots start at the same x
    assert chart.summary == say(
        "chart.days.summary",
        first="2026-11-01",
        last="2026-11-30",
        low="75.00%",
        high="90.00%",
        bad=26,
    )
    assert [row[0] for row in chart.table.rows] == ["2026-11-03", "2026-11-10"]


def test_tickets_by_state() -> None:
    counts = {"open": 2, "acknowledged": 1, "responded": 0, "appealed": 0, "closed": 3}
    chart = charts.tickets_by_state(counts, say)
    (svg,) = drawn(chart)
    accessible(svg, chart.summary)
    assert len(bars(svg)) == 5
    assert chart.table.rows[0] == (say("report.state.open"), "2")


@pytest.mark.parametrize(
    "chart",
    [
        charts.good_rate_by_day([], date(2026, 11, 1), date(2026, 11, 30), say),
        charts.levels_histogram({}, say),
        charts.ranking_bars("chart-empty", "Departments", [], set(), say),
        charts.tickets_by_state(dict.fromkeys(charts.STATE_NAMES, 0), say),
        charts.overdue_by_department([], say),
    ],
    ids=["days", "levels", "ranking", "states", "overdue"],
)
def test_empty_figures_draw_no_bar(chart: charts.Chart) -> None:
    for svg in drawn(chart):
        accessible(svg, chart.summary)
        assert not bars(svg)
        assert say("chart.no_data") in "".join(svg.itertext())
    assert chart.bars == 0
