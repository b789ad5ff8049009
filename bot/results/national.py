"""The national record layout: GB/T 39046-2020 政务服务平台基础数据规范, table 9 (政务服务绩效评价
基础数据集), one rating as its nine fields.

The codes are data, each table with its source beside it (``bot/results/codes/*.yaml``), and
``RATEBOT_RESULTS_CODES`` chooses the target: ``provincial`` (the provincial interfaces: 满意度代码
5 = 非常满意, 评价渠道 as their ``pf`` number) or ``gbt39046`` (the standard itself: table A.8,
1 = 非常满意, 评价渠道 as the name table 9 lists). The two satisfaction tables run in opposite
directions, so a code is only ever read through its table. A channel with no entry in the target
table stops the start (:func:`check_codes`): a record is never sent with a guessed code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import yaml

from storage.tables import ratings, records

Target = Literal["provincial", "gbt39046"]
CODES_DIR = Path(__file__).resolve().parent / "codes"
# ratings.channel: ratebot's national channel list (storage.models.Rating).
CHANNELS = ("sms", "phone", "mobile", "qr_code", "hall_terminal", "pc")
# 满意度: the level's name, whichever table codes it.
LEVEL_NAMES = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
NO_CONTACT = "***"  # 评价人 of a case with no phone: the mask of nobody in particular
# Table 9's fields, in its order.
FIELDS = (
    "办件编号",
    "评价渠道",
    "评价人",
    "评价时间",
    "评价次数",
    "满意度",
    "满意度代码",
    "文字评价",
    "行政区划",
)
TIME_FORMAT = "%Y%m%dT%H%M%S"  # 日期时间型 YYYYMMDDThhmmss


class CodeTableError(ValueError):
    """A code table that cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Codes:
    """One target's code tables: 满意度代码 by level, 评价渠道 by ratings.channel."""

    target: Target
    satisfaction: Mapping[int, str]  # level (5 best) → 满意度代码
    channels: Mapping[str, str]  # ratings.channel → 评价渠道
    sources: Mapping[str, str]  # file name → where its codes come from

    def satisfaction_code(self, level: int) -> str:
        return self.satisfaction[level]

    def level_of(self, code: str) -> int:
        """The level a 满意度代码 of this table stands for (the way back)."""
        for level, known in self.satisfaction.items():
            if known == code:
                return level
        raise KeyError(f"no level has 满意度代码 {code!r} in the {self.target} table")

    def channel_code(self, channel: str) -> str:
        try:
            return self.channels[channel]
        except KeyError:
            raise CodeTableError(
                f"channel {channel!r} has no 评价渠道 in channels_{self.target}.yaml"
            ) from None


def _read(name: str, key: str) -> tuple[dict[Any, Any], str]:
    path = CODES_DIR / name
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not str(data.get("source") or "").strip():
        raise CodeTableError(f"{path}: a code table needs a source: line naming where it is from")
    table = data.get(key)
    if not isinstance(table, dict) or not table:
        raise CodeTableError(f"{path}: no {key}: table")
    return table, " ".join(str(data["source"]).split())


@cache
def load_codes(target: Target) -> Codes:
    """The code tables of ``target``, read once and checked: every level 1–5 has a distinct code
    under its own name."""
    name = f"satisfaction_{target}.yaml"
    levels, satisfaction_source = _read(name, "levels")
    if sorted(levels) != sorted(LEVEL_NAMES):
        raise CodeTableError(f"{name}: needs exactly the levels 1-5, has {sorted(levels)}")
    satisfaction = {}
    for level, entry in levels.items():
        if entry.get("name") != LEVEL_NAMES[level]:
            raise CodeTableError(
                f"{name}: level {level} is {LEVEL_NAMES[level]}, not {entry.get('name')!r}"
            )
        satisfaction[level] = str(entry["code"])
    if len(set(satisfaction.values())) != len(satisfaction):
        raise CodeTableError(f"{name}: two levels share a code")
    channels_name = f"channels_{target}.yaml"
    channels, channels_source = _read(channels_name, "channels")
    return Codes(
        target=target,
        satisfaction=satisfaction,
        channels={str(k): str(v) for k, v in channels.items()},
        sources={name: satisfaction_source, channels_name: channels_source},
    )


def check_codes(target: Target) -> Codes:
    """The code tables of ``target``, or :class:`CodeTableError` naming each channel of ratebot's
    list that has no 评价渠道 there. Called when the app starts."""
    codes = load_codes(target)
    missing = [c for c in CHANNELS if c not in codes.channels]
    if missing:
        raise CodeTableError(
            f"channels_{target}.yaml (RATEBOT_RESULTS_CODES={target}) has no 评价渠道 for "
            f"{', '.join(missing)}; add them with their source, never a guess"
        )
    return codes


# --- a rating as table 9 -------------------------------------------------------------------


def columns() -> list[sa.ColumnElement[Any]]:
    """What a table-9 row is read from, on ``ratings`` outer-joined to ``service_records``."""
    return [
        records.c.record_no,
        ratings.c.channel,
        records.c.phone_mask,
        ratings.c.submitted_at,
        ratings.c.evaluation_count,
        ratings.c.level,
        ratings.c.comment,
        records.c.district,
    ]


def national_row(row: Mapping[Any, Any], *, zone: ZoneInfo, codes: Codes) -> dict[str, str]:
    """Table 9's fields (keys in Chinese, in the table's order) of a row of :func:`columns`.
    评价人 is the case's phone mask, never a number in clear; 评价时间 the local time it was
    submitted."""
    submitted: datetime | None = row["submitted_at"]
    level = int(row["level"])
    return {
        "办件编号": row["record_no"] or "",
        "评价渠道": codes.channel_code(row["channel"]),
        "评价人": row["phone_mask"] or NO_CONTACT,
        "评价时间": submitted.astimezone(zone).strftime(TIME_FORMAT) if submitted else "",
        "评价次数": str(row["evaluation_count"]),
        "满意度": LEVEL_NAMES[level],
        "满意度代码": codes.satisfaction_code(level),
        "文字评价": row["comment"] or "",
        "行政区划": row["district"] or "",
    }


def national_record(
    conn: sa.Connection, rating_id: int, *, zone: str, codes: Codes
) -> dict[str, str]:
    """Table 9's fields of one rating (``zone``: ``Settings.timezone``; ``codes``:
    ``load_codes(Settings.results_codes)``). :class:`LookupError` when there is no such
    rating."""
    row = (
        conn.execute(
            sa.select(*columns())
            .select_from(ratings.outerjoin(records, records.c.id == ratings.c.record_id))
            .where(ratings.c.id == rating_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise LookupError(f"no rating {rating_id}")
    return national_row(row, zone=ZoneInfo(zone), codes=codes)
