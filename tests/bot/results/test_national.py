"""The national record layout (GB/T 39046-2020 table 9): the code tables in both directions, a
rating as its nine fields, and a start refused when a channel has no code."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.results import national
from bot.results.national import CodeTableError, check_codes, load_codes, national_record
from storage.tables import ratings
from tests.bot.conftest import FakeClock, Harness, make_settings, serving

NAMES = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}


@pytest.fixture
def codes_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the shipped code tables to spoil, read instead of them."""
    copy = tmp_path / "codes"
    shutil.copytree(national.CODES_DIR, copy)
    monkeypatch.setattr(national, "CODES_DIR", copy)
    load_codes.cache_clear()
    yield copy
    load_codes.cache_clear()


def test_the_standard_codes_1_for_very_satisfied_and_back() -> None:
    codes = load_codes("gbt39046")  # table A.8
    assert {level: codes.satisfaction_code(level) for level in NAMES} == {
        5: "1",
        4: "2",
        3: "3",
        2: "4",
        1: "5",
    }
    assert [codes.level_of(code) for code in "12345"] == [5, 4, 3, 2, 1]


def test_the_provincial_interfaces_code_5_for_very_satisfied_and_back() -> None:
    codes = load_codes("provincial")
    assert {level: codes.satisfaction_code(level) for level in NAMES} == {
        5: "5",
        4: "4",
        3: "3",
        2: "2",
        1: "1",
    }
    assert [codes.level_of(code) for code in "12345"] == [1, 2, 3, 4, 5]


def test_a_code_of_one_table_read_through_the_other_is_the_opposite_level() -> None:
    standard, provincial = load_codes("gbt39046"), load_codes("provincial")
    for level in NAMES:
        assert provincial.level_of(standard.satisfaction_code(level)) == 6 - level
    with pytest.raises(KeyError):
        standard.level_of("6")


def test_every_table_names_its_source() -> None:
    for target in ("provincial", "gbt39046"):
        sources = load_codes(target).sources
        assert set(sources) == {f"satisfaction_{target}.yaml", f"channels_{target}.yaml"}
        assert all(len(text) > 40 for text in sources.values())
    assert "A.8" in load_codes("gbt39046").sources["satisfaction_gbt39046.yaml"]
    # the provincial pf codes were not found in an official document: the file says so
    assert "NOT CONFIRMED" in load_codes("provincial").sources["channels_provincial.yaml"]


def test_every_channel_of_ratebot_has_a_code_in_both_targets() -> None:
    assert check_codes("gbt39046").channels == {
        "pc": "PC端",
        "mobile": "移动服务端",
        "qr_code": "二维码",
        "hall_terminal": "政务大厅其他终端",
        "phone": "电话",
        "sms": "短信",
    }
    assert set(check_codes("provincial").channels) == set(national.CHANNELS)


def test_a_channel_with_no_code_is_refused_naming_it(codes_dir: Path) -> None:
    path = codes_dir / "channels_provincial.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace('  sms: "7"\n', ""), "utf-8")
    with pytest.raises(CodeTableError, match="no 评价渠道 for sms"):
        check_codes("provincial")
    check_codes("gbt39046")  # the other target is whole


def test_a_table_turned_round_is_refused(codes_dir: Path) -> None:
    # Someone "fixes" the direction by renaming instead of recoding: level 5 is 非常满意 always.
    path = codes_dir / "satisfaction_gbt39046.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace('5: {code: "1", name: 非常满意}', '5: {code: "1", name: 非常不满意}')
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CodeTableError, match="level 5 is 非常满意"):
        load_codes("gbt39046")


def test_a_table_without_its_source_is_refused(codes_dir: Path) -> None:
    path = codes_dir / "channels_gbt39046.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith(("source:", "  "))]
    path.write_text("\n".join(kept) + "\nchannels: {sms: 短信}\n", encoding="utf-8")
    with pytest.raises(CodeTableError, match="source"):
        load_codes("gbt39046")


async def test_the_app_does_not_start_when_a_channel_has_no_code(
    codes_dir: Path, tmp_path: Path
) -> None:
    path = codes_dir / "channels_gbt39046.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("  phone: 电话\n", ""), "utf-8")
    url = f"sqlite:///{tmp_path}/ratebot.db"
    settings = make_settings(url, results_codes="gbt39046")
    with pytest.raises(CodeTableError, match="RATEBOT_RESULTS_CODES=gbt39046.*phone"):
        async with serving(settings, FakeClock()):
            pass


async def rate_by_sms(h: Harness, *answers: str, report: bool = True) -> int:
    if report:
        await h.report()
    for answer in answers:
        await h.reply_text(answer)
    with h.rt.db.connect() as conn:
        return int(conn.execute(ratings.select().with_only_columns(ratings.c.id)).scalar_one())


async def test_a_rating_as_table_9(harness: Harness) -> None:
    rating_id = await rate_by_sms(harness, "5 4 4 4", "窗口服务很耐心")
    with harness.rt.db.connect() as conn:
        provincial = national_record(
            conn, rating_id, zone="Asia/Shanghai", codes=load_codes("provincial")
        )
        standard = national_record(conn, rating_id, zone="UTC", codes=load_codes("gbt39046"))
    assert provincial == {
        "办件编号": "370200-2026-0001",
        "评价渠道": "7",
        "评价人": "+86 138****1234",
        "评价时间": "20261127T100000",  # 02:00 UTC is 10:00 in Shanghai
        "评价次数": "1",
        "满意度": "非常满意",
        "满意度代码": "5",
        "文字评价": "窗口服务很耐心",
        "行政区划": "370202",
    }
    assert list(provincial) == list(national.FIELDS)
    assert standard["评价渠道"] == "短信"
    assert standard["满意度代码"] == "1"
    assert standard["评价时间"] == "20261127T020000"
    with harness.rt.db.connect() as conn, pytest.raises(LookupError):
        national_record(conn, rating_id + 1, zone="UTC", codes=load_codes("provincial"))


async def test_a_case_with_no_phone_has_a_masked_nobody(harness: Harness) -> None:
    rating_id = await rate_by_sms(harness, "1 1 1 1", "1", "0", "2", report=False)
    with harness.rt.db.connect() as conn:
        record = national_record(conn, rating_id, zone="UTC", codes=load_codes("gbt39046"))
    assert record["评价人"] == "***"
    assert record["办件编号"] == "" and record["行政区划"] == ""
    assert record["满意度"] == "非常不满意" and record["满意度代码"] == "5"
