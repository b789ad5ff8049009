"""The supervisor dashboard, ``/dashboard``, on SQLite and on PostgreSQL: its figures are the
statistics, rankings and ticket figures of the JSON API for the same filters (read from the
page's table cells), the charts are inline SVG with a bar per department under the response's
style nonce, every locale renders, an empty month renders, a bad period is a 422 page, only
supervisors (and admins) get in, and the download buttons give the API's exports and the
monthly report, audited as the signed-in account."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

import locales
from bot.results import rollups
from storage.tables import appeals, audit_log, ratings, tickets
from tests.bot.conftest import Harness
from tests.bot.pages.support import create_user, sign_in
from tests.bot.results.seed import seed_rating

A = "市自然资源局"
B = "市市场监督管理局"
C = "<b>市公安局</b>"  # a name is text, never markup
HOME = "370202"
AWAY = "370203"
HALL = "烟台市政务服务中心"  # the seeded cases' hall
NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    rules = tmp_path / "results.yaml"
    rules.write_text(
        "weights: {good_rate: 80, on_time: 20}\nmin_sample: 2\nbottom: 1\ndecimals: 2\n",
        encoding="utf-8",
    )
    return {"results_file": rules}


def shanghai(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


def ticket(conn: sa.Connection, rating_id: int, department: str | None, **values: Any) -> int:
    record_id = conn.execute(
        sa.select(ratings.c.record_id).where(ratings.c.id == rating_id)
    ).scalar_one()
    ticket_id = conn.execute(
        sa.insert(tickets)
        .values(
            rating_id=rating_id,
            record_id=record_id,
            department=department,
            **{"tier": "general", "paused_seconds": 0, **values},
        )
        .returning(tickets.c.id)
    ).scalar_one()
    rollups.mark(conn, values["due_at"])
    return int(ticket_id)


def seed_months(h: Harness) -> None:
    """October and November: A good, B mixed, C mostly bad (the bottom one), a rating in another
    district; November's bad reviews have tickets (one overdue now, one in triage overdue, one
    answered), one appeal upheld in November and one in October."""
    with h.rt.db.begin() as conn:

        def rate(department: str, level: int, at: datetime, district: str = HOME) -> int:
            return seed_rating(conn, level=level, at=at, department=department, district=district)[
                1
            ]

        for level in (5, 5, 4):
            rate(A, level, shanghai(10, 8))
        rate(B, 1, shanghai(10, 9))
        rate(B, 4, shanghai(10, 9))
        for level, day in ((5, 3), (5, 4), (4, 10), (3, 20)):
            rate(A, level, shanghai(11, day))
        rate(B, 5, shanghai(11, 5))
        bad_b = rate(B, 2, shanghai(11, 6))
        rate(C, 4, shanghai(11, 6))
        bad_c = rate(C, 1, shanghai(11, 7))
        bad_c2 = rate(C, 1, shanghai(11, 8))
        rate(A, 5, shanghai(11, 9), district=AWAY)
        unassigned = rate(B, 2, shanghai(11, 12), district=AWAY)
        overdue = ticket(
            conn, bad_c, C, state="open", opened_at=shanghai(11, 7), due_at=shanghai(11, 14)
        )
        ticket(
            conn,
            unassigned,
            None,
            state="open",
            opened_at=shanghai(11, 12),
            due_at=shanghai(11, 19),
        )
        ticket(
            conn,
            bad_b,
            B,
            state="responded",
            opened_at=shanghai(11, 6),
            due_at=shanghai(11, 13),
            responded_at=shanghai(11, 10),
            outcome="rectified",
        )
        appealed = ticket(
            conn,
            bad_c2,
            C,
            state="closed",
            opened_at=shanghai(11, 8),
            due_at=shanghai(11, 30),
            closed_at=shanghai(11, 20),
            outcome="appeal_upheld",
        )
        for ticket_id, at in ((appealed, shanghai(11, 20)), (overdue, shanghai(10, 30))):
            conn.execute(
                sa.insert(appeals).values(
                    ticket_id=ticket_id,
                    ground="malicious",
                    state="upheld",
                    statement="申诉理由",
                    filed_by="department",
                    filed_at=at - timedelta(days=1),
                    decided_at=at,
                    decided_by="reviewer",
                )
            )
    rollups.run_due(h.rt)


async def supervisor(h: Harness, name: str = "督查科王五") -> None:
    create_user(h, name, "supervisor")
    await sign_in(h.client, name)


async def api(h: Harness, path: str, **params: str) -> Any:
    if not hasattr(h, "_supervisor_key"):
        h._supervisor_key = h.api_key("supervisor")  # type: ignore[attr-defined]
    response = await h.client.get(path, params=params, headers=h._supervisor_key)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    return response.json()


HEADLINE = re.compile(
    r'<tr data-figure="(\w+)">\s*<th scope="row">[^<]*</th>\s*'
    r'<td class="value">([^<]*)</td>\s*<td class="change">([^<]*)</td>'
)


def headline(html: str) -> dict[str, tuple[str, str]]:
    return {name: (value, change) for name, value, change in HEADLINE.findall(html)}


def chart_section(html: str, name: str) -> str:
    start = html.index(f'id="{name}"')
    return html[start : html.index("</section>", start)]


def svgs(section: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", section, re.S)]


def table_rows(section: str) -> list[list[str]]:
    body = section[section.index("<tbody>") : section.index("</tbody>")]
    return [
        re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr.*?</tr>", body, re.S)
    ]


def bars(svg: ET.Element) -> list[ET.Element]:
    return [e for e in svg.iter() if "bar" in e.get("class", "").split()]


def title_of(bar: ET.Element) -> str:
    title = bar.find(f"{SVG}title")
    assert title is not None and title.text is not None
    return title.text


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"


async def test_the_figures_are_the_apis(harness: Harness) -> None:
    seed_months(harness)
    await supervisor(harness)
    for district in (None, HOME):
        where = {"district": district} if district else {}
        response = await harness.client.get("/dashboard", params={"period": "2026-11", **where})
        assert response.status_code == 200, response.text
        html = response.text
        shown = headline(html)
        total = (await api(harness, "/api/v1/stats", group_by="total", **NOVEMBER, **where))[
            "groups"
        ][0]
        before = (
            await api(
                harness,
                "/api/v1/stats",
                group_by="total",
                **{"from": "2026-10-01", "to": "2026-10-31"},
                **where,
            )
        )["groups"][0]
        assert shown["counted"] == (
            str(total["counted"]),
            f"{total['counted'] - before['counted']:+d}",
        )
        for name in ("good_rate", "bad_rate"):
            assert shown[name][0] == percent(total[name])
            assert shown[name][1] == f"{total[name] - before[name]:+.2f}"
        assert shown["on_time_rate"][0] == percent(total["on_time_rate"])
        loop = await api(harness, "/api/v1/stats/tickets", **NOVEMBER, **where)
        assert shown["overdue"] == (str(loop["overdue_now"]["total"]), "—")
        october = await api(
            harness, "/api/v1/stats/tickets", **{"from": "2026-10-01", "to": "2026-10-31"}, **where
        )
        upheld = loop["appeals_decided"]["upheld"]
        change = upheld - october["appeals_decided"]["upheld"]
        assert shown["appeals_upheld"] == (str(upheld), f"{change:+d}" if change else "0")
        ranked = (
            await api(harness, "/api/v1/rankings", by="department", period="2026-11", **where)
        )["ranked"]
        departments = chart_section(html, "chart-departments")
        rows = table_rows(departments)
        assert [(r[0], r[2], r[3], r[5]) for r in rows] == [
            (str(r["rank"]), str(r["counted"]), percent(r["good_rate"]), f"{r['score']:.2f}")
            for r in ranked
        ]
        (svg,) = svgs(departments)
        assert len(bars(svg)) == len(ranked)
        states = table_rows(chart_section(html, "chart-states"))
        assert [int(r[1]) for r in states] == list(loop["opened_by_state"].values())
        overdue = table_rows(chart_section(html, "chart-overdue"))
        assert [int(r[1]) for r in overdue] == [
            d["overdue"] for d in loop["overdue_now"]["by_department"]
        ]
    # all districts: C's overdue ticket and the triage one; the overdue API agrees
    everywhere = (await api(harness, "/api/v1/tickets", overdue="true"))["total"]
    assert everywhere == 2


async def test_the_charts_mark_the_bottom_and_carry_the_nonce(harness: Harness) -> None:
    seed_months(harness)
    await supervisor(harness)
    response = await harness.client.get("/dashboard", params={"period": "2026-11", "hall": HALL})
    assert response.status_code == 200, response.text
    html = response.text
    policy = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None and "unsafe-inline" not in policy and "script-src" not in policy
    assert "<script" not in html
    assert "&lt;b&gt;市公安局&lt;/b&gt;" in html and "<b>市公安局" not in html
    for name in (
        "chart-days",
        "chart-levels",
        "chart-departments",
        "chart-windows",
        "chart-states",
        "chart-overdue",
    ):
        section = chart_section(html, name)
        drawn = svgs(section)
        assert drawn, name
        for svg in drawn:
            assert svg.get("role") == "img"
            (style,) = [e for e in svg.iter() if e.tag.endswith("style")]
            assert style.get("nonce") == nonce.group(1)
            described = {e.get("id") for e in svg.iter() if e.tag.endswith(("title", "desc"))}
            assert set(svg.get("aria-labelledby", "").split()) <= described
        assert 'class="chart-summary"' in section
    (svg,) = svgs(chart_section(html, "chart-departments"))
    marked = [b for b in bars(svg) if "marked" in b.get("class", "")]
    assert [title_of(b).split(":")[0] for b in marked] == [C]
    windows = table_rows(chart_section(html, "chart-windows"))
    assert windows and all(row[1].startswith(HALL + "/") for row in windows)


@pytest.mark.parametrize("lang", locales.LOCALES)
async def test_every_locale(harness: Harness, lang: str) -> None:
    seed_months(harness)
    await supervisor(harness)
    response = await harness.client.get("/dashboard", params={"period": "2026-11", "lang": lang})
    assert response.status_code == 200, response.text
    html = response.text
    assert locales.gettext(lang, "page.dashboard.title") in html
    assert locales.gettext(lang, "chart.levels.title") in html
    for name in ("counted", "good_rate", "overdue"):
        assert locales.gettext(lang, f"page.dashboard.figure.{name}") in html
    assert locales.gettext(lang, "level.5") in chart_section(html, "chart-levels")


async def test_a_month_with_no_ratings(harness: Harness) -> None:
    await supervisor(harness)
    response = await harness.client.get("/dashboard", params={"lang": "en"})
    assert response.status_code == 200, response.text
    html = response.text
    assert locales.gettext("en", "page.dashboard.empty") in html
    assert headline(html)["counted"] == ("0", "0")
    assert headline(html)["good_rate"] == ("—", "—")
    for name in (
        "chart-days",
        "chart-levels",
        "chart-departments",
        "chart-states",
        "chart-overdue",
    ):
        section = chart_section(html, name)
        assert all(not bars(svg) for svg in svgs(section)), name


@pytest.mark.parametrize("period", ["2026-13", "November", "1999", "2026Q5"])
async def test_a_bad_period_is_a_422_page(harness: Harness, period: str) -> None:
    await supervisor(harness)
    response = await harness.client.get("/dashboard", params={"period": period, "lang": "en"})
    assert response.status_code == 422
    assert "text/html" in response.headers["content-type"]
    assert period in response.text


async def test_only_supervisors_and_admins_get_in(harness: Harness) -> None:
    away = await harness.client.get("/dashboard")
    assert away.status_code == 303 and away.headers["location"].startswith("/login?next=")
    create_user(harness, "资源局李四", "department", departments=[A])
    await sign_in(harness.client, "资源局李四")
    refused = await harness.client.get("/dashboard")
    assert refused.status_code == 403
    assert (await harness.client.get("/dashboard/exports/ratings.csv")).status_code == 403
    harness.client.cookies.clear()
    create_user(harness, "管理员", "admin")
    await sign_in(harness.client, "管理员")
    assert (await harness.client.get("/dashboard")).status_code == 200


async def test_the_downloads(harness: Harness) -> None:
    seed_months(harness)
    await supervisor(harness)
    csv = await harness.client.get(
        "/dashboard/exports/ratings.csv",
        params={"period": "2026-11", "district": HOME, "lang": "en"},
    )
    assert csv.status_code == 200, csv.text
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert len(lines) == 1 + 9  # the header and November's ratings in the district
    via_api = await harness.client.get(
        "/api/v1/exports/ratings.csv",
        params={**NOVEMBER, "district": HOME, "lang": "en"},
        headers=harness.api_key("supervisor"),
    )
    assert via_api.text == csv.text
    xlsx = await harness.client.get("/dashboard/exports/tickets.xlsx", params={"period": "2026-11"})
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    report = await harness.client.get("/dashboard/report.html", params={"period": "2026-11"})
    assert report.status_code == 200 and "<html" in report.text and A in report.text
    quarter = await harness.client.get("/dashboard/report.xlsx", params={"period": "2026Q4"})
    assert quarter.status_code == 422
    with harness.rt.db.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.actor_kind, audit_log.c.actor_name)
            .where(audit_log.c.entity == "export", audit_log.c.actor_kind == "user")
            .order_by(audit_log.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("export_ratings", "user", "督查科王五"),
        ("export_tickets", "user", "督查科王五"),
        ("export_report", "user", "督查科王五"),
    ]
