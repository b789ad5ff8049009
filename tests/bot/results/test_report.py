"""The monthly report, on SQLite and on PostgreSQL: the month's ranking with the groups called in
(约谈), the headline figures and the trend, the tickets opened in the month's local days, those
overdue at its end, appeals decided and fraud flags raised in it; rendered as HTML (names
escaped, no script) and XLSX (read back); and ``ratebot report`` end to end."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import sqlalchemy as sa

from bot.cli import main
from bot.results import report, report_files, rollups
from bot.results.report import MonthlyReport, monthly_report
from bot.results.scoring import results_rules
from storage.tables import appeals, flags, ratings, tickets
from tests.bot.conftest import Harness
from tests.bot.results.seed import seed_rating

A = "市自然资源局"
B = "市市场监督管理局"
C = "市公安局"
D = "<script>alert(1)</script>市人社局"  # a name is text, never markup
E = "市税务局"  # its only ratings are excluded or flagged: it counts nowhere
RULES = "weights: {good_rate: 60, on_time: 20}\nmin_sample: 2\nbottom: 1\ndecimals: 2\n"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    rules = tmp_path / "results.yaml"
    rules.write_text(RULES, encoding="utf-8")
    return {"results_file": rules}


def shanghai(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A time of 2026 in Shanghai, as UTC."""
    local = datetime(2026, month, day, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai"))
    return local.astimezone(UTC)


def due(month: int, day: int) -> datetime:
    """The end of a local day, as a ticket's deadline is kept: the next local midnight."""
    return shanghai(month, day, 0) + timedelta(days=1)


def rated(conn: sa.Connection, department: str, level: int, at: datetime) -> int:
    return seed_rating(conn, level=level, at=at, department=department)[1]


def ticket(conn: sa.Connection, rating_id: int, department: str | None, **values: Any) -> int:
    row = conn.execute(sa.select(ratings.c.record_id).where(ratings.c.id == rating_id)).scalar_one()
    ticket_id = conn.execute(
        sa.insert(tickets)
        .values(
            rating_id=rating_id,
            record_id=row,
            department=department,
            **{"tier": "general", "paused_seconds": 0, **values},
        )
        .returning(tickets.c.id)
    ).scalar_one()
    rollups.mark(conn, values["due_at"])
    return int(ticket_id)


def appeal(conn: sa.Connection, ticket_id: int, ground: str, state: str, **values: Any) -> None:
    conn.execute(
        sa.insert(appeals).values(
            ticket_id=ticket_id,
            ground=ground,
            state=state,
            statement="申诉理由",
            filed_by="department",
            filed_at=shanghai(10, 1),
            **values,
        )
    )


def flag(conn: sa.Connection, rating_id: int, rule: str, state: str, at: datetime) -> None:
    conn.execute(
        sa.insert(flags).values(
            rating_id=rating_id, rule=rule, detail="test", state=state, created_at=at
        )
    )


def two_months(h: Harness) -> dict[str, int]:
    """October and November: ratings of four departments, and November's tickets, appeals and
    flags (some on the boundaries of the month's local days). The ticket ids by name."""
    with h.rt.db.begin() as conn:
        for department, levels in ((A, [5, 5]), (B, [5]), (C, [5])):
            for level in levels:
                rated(conn, department, level, shanghai(10, 5))
        b_october = rated(conn, B, 1, shanghai(10, 5))
        for department, levels in ((A, [5, 5, 4]), (B, [3]), (D, [5, 4, 5])):
            for level in levels:
                rated(conn, department, level, shanghai(11, 5))
        a_bad, b_bad, d_bad = (
            rated(conn, x, lv, shanghai(11, 5)) for x, lv in ((A, 2), (B, 1), (D, 1))
        )
        c_late = rated(conn, C, 2, shanghai(11, 30, 23))  # 15:00 UTC: still November here
        e_excluded = rated(conn, E, 1, shanghai(11, 9))
        e_flagged = rated(conn, E, 5, shanghai(11, 19))
        e_december = rated(conn, E, 5, shanghai(12, 1))
        conn.execute(
            sa.update(ratings)
            .where(ratings.c.id == e_excluded)
            .values(excluded_at=shanghai(11, 12), excluded_reason="appeal upheld: malicious")
        )
        conn.execute(
            sa.update(ratings).where(ratings.c.id.in_([e_flagged, e_december])).values(flagged=True)
        )
        made = {
            "on_time": ticket(
                conn,
                a_bad,
                A,
                state="closed",
                outcome="rectified",
                opened_at=shanghai(11, 5),
                due_at=due(11, 6),
                responded_at=shanghai(11, 6),
            ),
            "open": ticket(
                conn, b_bad, B, state="open", opened_at=shanghai(11, 5), due_at=due(11, 12)
            ),
            "late": ticket(
                conn,
                d_bad,
                D,
                state="responded",
                outcome="explained",
                opened_at=shanghai(11, 20),
                due_at=due(11, 27),
                responded_at=shanghai(12, 2),
            ),
            # 23:30 on the 30th in Shanghai: opened in November, due in December
            "last_night": ticket(
                conn,
                c_late,
                C,
                state="acknowledged",
                tier="immediate",
                opened_at=shanghai(11, 30, 23, 30),
                due_at=due(12, 1),
            ),
            # 23:30 on 31 October in Shanghai (15:30 UTC): October's, still open at November's end
            "october": ticket(
                conn,
                b_october,
                None,
                state="open",
                opened_at=shanghai(10, 31, 23, 30),
                due_at=due(11, 3),
            ),
            "upheld": ticket(
                conn,
                e_excluded,
                E,
                state="closed",
                outcome="appeal_upheld",
                opened_at=shanghai(11, 10),
                due_at=due(11, 11),
            ),
        }
        appeal(conn, made["upheld"], "malicious", "upheld", decided_at=shanghai(11, 12))
        appeal(conn, made["open"], "untrue", "rejected", decided_at=shanghai(11, 14))
        # 00:30 on 1 November in Shanghai is still 31 October in UTC: November's
        appeal(conn, made["october"], "not_ours", "rejected", decided_at=shanghai(11, 1, 0, 30))
        appeal(conn, made["last_night"], "untrue", "pending")  # not decided
        flag(conn, e_flagged, "top_burst", "pending", shanghai(11, 19))
        flag(conn, a_bad, "contact_ratings", "cleared", shanghai(11, 3))
        flag(conn, e_december, "staff_contact", "confirmed", shanghai(12, 1))
        flag(conn, b_october, "staff_contact", "cleared", shanghai(10, 31, 23))
    rollups.run_due(h.rt)
    return made


def november(h: Harness, by: Any = "department") -> MonthlyReport:
    with h.rt.db.connect() as conn:
        return monthly_report(
            conn,
            period=report.month("2026-11"),
            by=by,
            rules=results_rules(h.rt.settings.results_file),
            zone=h.rt.settings.timezone,
            now=shanghai(12, 3),
        )


async def test_the_months_ranking_and_who_is_called_in(harness: Harness) -> None:
    two_months(harness)
    made = november(harness)
    ranked = [(r["rank"], r["key"], r["score"], r["change"]) for r in made.ranking["ranked"]]
    # 好评率 weighs 60 and bad reviews answered on time 20: A 75 % and its one ticket on time
    # (81.25); D 75 % and its one ticket late (56.25); B 50 % and its one ticket unanswered
    assert ranked == [(1, A, 81.25, 0), (2, D, 56.25, None), (3, B, 37.5, -1)]
    # B was last in October too: two months in the bottom 1, called in
    assert [(r["key"], r["bottom_streak"]) for r in made.summoned] == [(B, 2)]
    assert [(r["key"], r["counted"]) for r in made.ranking["too_few_ratings"]] == [(C, 1)]


async def test_the_headline_figures_and_the_trend(harness: Harness) -> None:
    two_months(harness)
    months = november(harness).months
    assert [m.month for m in months] == [f"2026-{n:02d}" for n in range(6, 12)]
    assert all(m.counted == 0 and m.good_rate is None for m in months[:4])
    october, nov = months[-2], months[-1]
    assert (october.counted, october.good_rate, october.bad_rate, october.average) == (
        5,
        80.0,
        20.0,
        4.2,
    )
    assert october.on_time_rate is None  # no ticket fell due in October
    # A 5 5 4 2, B 3 1, D 5 4 5 1, C 2 (E's are excluded or flagged)
    assert (nov.counted, nov.good_rate, nov.bad_rate, nov.average) == (11, 63.64, 36.36, 3.364)
    # due in November, of counted reviews: A's on time, B's and D's not, and October's, still
    # in triage, not either (it counts in the whole, for no department)
    assert nov.on_time_rate == 25.0 and nov.rerated_good_rate is None


async def test_tickets_appeals_and_flags_of_the_month(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = two_months(harness)
    got = november(harness)
    assert got.tickets_opened == 5  # October's (23:30 on the 31st, local) is not November's
    assert got.tickets_by_state == {"closed": 2, "open": 1, "responded": 1, "acknowledged": 1}
    assert got.tickets_by_outcome == {
        "rectified": 1,
        "explained": 1,
        "appeal_upheld": 1,
        None: 2,
    }
    # past the deadline at the month's end: October's and B's still open, D's answered late
    assert [(t.id, t.department, t.state) for t in got.overdue] == [
        (made["october"], None, "open"),
        (made["open"], B, "open"),
        (made["late"], D, "responded"),
    ]
    assert got.overdue_total == 3 and got.overdue[0].due_at == due(11, 3)
    assert got.appeals == {
        ("malicious", "upheld"): 1,
        ("untrue", "rejected"): 1,
        ("not_ours", "rejected"): 1,
    }
    assert got.flags == {("top_burst", "pending"): 1, ("contact_ratings", "cleared"): 1}
    monkeypatch.setattr(report, "OVERDUE_ROWS", 2)
    capped = november(harness)
    assert len(capped.overdue) == 2 and capped.overdue_total == 3


def cells(workbook: Any, sheet: str) -> list[list[Any]]:
    return [[c.value for c in row] for row in workbook[sheet].iter_rows()]


async def test_the_report_as_html_and_xlsx(harness: Harness, tmp_path: Path) -> None:
    two_months(harness)
    made = november(harness)
    page = tmp_path / "report.html"
    report_files.write(made, page, "zh_Hans_CN")
    html = page.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;市人社局" in html
    assert "<script" not in html and "http" not in html  # no script, no external asset
    assert "@page { size: A4;" in html and "break-inside: avoid" in html
    assert "好差评月度报告（2026-11）" in html and "约谈名单" in html
    assert '<td class="percent">63.64%</td>' in html and "81.25" in html
    assert "待分派" in html and "申诉不成立" in html  # October's ticket awaits triage
    english = tmp_path / "report-en.html"
    report_files.write(made, english, "en")
    assert "Monthly rating report (2026-11)" in english.read_text(encoding="utf-8")

    sheet = tmp_path / "report.xlsx"
    report_files.write(made, sheet, "zh_Hant_TW")
    book = openpyxl.load_workbook(sheet)
    assert book.sheetnames == [
        "一、本月排名",
        "二、本月概況與趨勢",
        "三、差評整改",
        "四、月末逾期工單",
        "五、申訴複核",
        "六、異常評價預警",
    ]
    ranking = cells(book, "一、本月排名")
    header = ranking.index(
        ["名次", "名稱", "有效評價數", "好評率", "差評率", "綜合評分", "名次變化", "連續居後期數"]
    )
    assert ranking[header + 1 : header + 4] == [
        [1, A, 4, 0.75, 0.25, 81.25, 0, 0],
        [2, D, 4, 0.75, 0.25, 56.25, "—", 0],
        [3, B, 2, 0.5, 0.5, 37.5, -1, 2],
    ]
    worksheet = book["一、本月排名"]
    assert worksheet.cell(header + 1, 1).font.b  # headers bold (openpyxl counts from 1)
    assert worksheet.cell(header + 2, 4).number_format == "0.00%"
    overdue = cells(book, "四、月末逾期工單")
    assert "共 3 件，本表列出 3 件。" in [row[0] for row in overdue]
    assert [row[0] for row in overdue if isinstance(row[0], int)] == [
        made.overdue[0].id,
        made.overdue[1].id,
        made.overdue[2].id,
    ]


async def test_an_empty_month_still_reports(harness: Harness, tmp_path: Path) -> None:
    made = november(harness)
    assert made.ranking["ranked"] == [] and made.tickets_opened == 0 and made.overdue_total == 0
    page = tmp_path / "empty.html"
    report_files.write(made, page, "en")
    assert "None this month" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
async def test_ratebot_report_end_to_end(
    harness: Harness,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    two_months(harness)
    for name in list(os.environ):
        if name.startswith("RATEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RATEBOT_DATABASE_URL", harness.rt.settings.database_url)
    monkeypatch.setenv("RATEBOT_RESULTS_FILE", str(harness.rt.settings.results_file))
    out = tmp_path / "november.xlsx"
    main(["report", "--period", "2026-11", "--by", "department", "--lang", "en", "--out", str(out)])
    assert str(out) in capsys.readouterr().out
    book = openpyxl.load_workbook(out)
    ranking = cells(book, book.sheetnames[0])
    header = ranking.index(
        [
            "Rank",
            "Name",
            "Counted ratings",
            "Good rate",
            "Bad rate",
            "Score",
            "Rank change",
            "Periods in the bottom",
        ]
    )
    assert [row[:2] for row in ranking[header + 1 : header + 4]] == [[1, A], [2, D], [3, B]]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--period", "2026-13"], "no month 13"),
        (["--period", "2026Q4"], "one month"),
        (["--period", "2026-11", "--by", "colour"], "choose from department"),
        (["--period", "2026-11", "--lang", "fr"], "invalid choice"),
        (["--period", "2026-11", "--out", "report.pdf"], ".html or .xlsx"),
    ],
)
def test_bad_arguments_are_usage_errors(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", *args]
    if "--out" not in argv:
        argv += ["--out", "report.html"]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
