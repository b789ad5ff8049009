"""The answer parser, as tables: input text → what it reads as."""

from __future__ import annotations

import pytest

from dialogs.parser import (
    is_skip,
    parse_choices,
    parse_command,
    parse_level,
    parse_levels,
    parse_yes_no,
)

LEVELS = [
    ("5", 5), ("1", 1), ("3", 3), ("５", 5), ("１", 1), (" 4 ", 4), ("4。", 4), ("4!", 4),
    ("（5）", 5), ("五", 5), ("一", 1), ("两", 2), ("伍", 5), ("壹", 1), ("贰", 2), ("叁", 3),
    ("肆", 4), ("5星", 5), ("五星", 5), ("5 星", 5), ("三颗星", 3), ("5分", 5), ("二分", 2),
    ("★★★★★", 5), ("★", 1), ("★★★", 3), ("⭐⭐⭐⭐⭐", 5), ("⭐️⭐️⭐️", 3), ("★ ★ ★ ★", 4),
    ("非常满意", 5), ("满意", 4), ("基本满意", 3), ("不满意", 2), ("非常不满意", 1),
    ("非常滿意", 5), ("滿意", 4), ("基本滿意", 3), ("不滿意", 2), ("非常不滿意", 1),
    ("满意！", 4), ("普通", 3), ("一般", 3),
    ("very satisfied", 5), ("Satisfied", 4), ("NEUTRAL", 3), ("dissatisfied", 2),
    ("very dissatisfied", 1), ("Very  Dissatisfied.", 1),
    ("five", 5), ("four", 4), ("three", 3), ("two", 2), ("One", 1), ("5 stars", 5),
    # rejected: out of range, more than one level, stars with blanks, chatter, empty
    ("0", None), ("6", None), ("55", None), ("15", None), ("-1", None), ("5.5", None),
    ("★★★★★★", None), ("★★★☆☆", None), ("☆☆☆☆☆", None), ("六星", None), ("零", None),
    ("还行", None), ("满意吧", None), ("不太满意", None), ("5 4", None), ("", None),
    ("   ", None), ("six", None), ("满意不满意", None),
]  # fmt: skip


@pytest.mark.parametrize(("text", "level"), LEVELS)
def test_parse_level(text: str, level: int | None) -> None:
    assert parse_level(text) == level


@pytest.mark.parametrize(
    ("text", "n", "levels"),
    [
        ("5 4 5 5", 4, [5, 4, 5, 5]),
        ("5455", 4, [5, 4, 5, 5]),
        ("5,4,5,5", 4, [5, 4, 5, 5]),
        ("5，4，5，5", 4, [5, 4, 5, 5]),
        ("5、4、5、5", 4, [5, 4, 5, 5]),
        ("５４５５", 4, [5, 4, 5, 5]),
        ("五四五五", 4, [5, 4, 5, 5]),
        (" 1 2 3 4 5 1 ", 6, [1, 2, 3, 4, 5, 1]),
        ("545", 4, None),
        ("54555", 4, None),
        ("5406", 4, None),
        ("5 4 5 6", 4, None),
        ("5", 4, None),
        ("", 4, None),
        # stars are one level, never the shortcut: four stars with four questions left is 4
        ("★★★★", 4, None),
        ("⭐⭐⭐", 3, None),
        ("⭐️⭐️", 2, None),
        ("🌟🌟🌟🌟", 4, None),
        ("★ ★ ★ ★", 4, None),
        ("★,★,★", 3, None),
    ],
)
def test_parse_levels(text: str, n: int, levels: list[int] | None) -> None:
    assert parse_levels(text, n) == levels


OPTIONS = ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize(
    ("text", "multiple", "chosen"),
    [
        ("13", True, ["a", "c"]),
        ("1 3", True, ["a", "c"]),
        ("1,3", True, ["a", "c"]),
        ("3，1", True, ["a", "c"]),
        ("1、3、3", True, ["a", "c"]),
        ("１３", True, ["a", "c"]),
        ("6", True, ["f"]),
        ("2", False, ["b"]),
        ("二", False, ["b"]),
        ("12", False, None),
        ("7", True, None),
        ("0", True, None),
        ("17", True, None),
        ("a", True, None),
        ("", True, None),
    ],
)
def test_parse_choices(text: str, multiple: bool, chosen: list[str] | None) -> None:
    assert parse_choices(text, OPTIONS, multiple) == chosen


def test_parse_choices_needs_separators_beyond_nine_options() -> None:
    options = [str(n) for n in range(1, 13)]
    assert parse_choices("1 12", options, True) == ["1", "12"]
    assert parse_choices("12", options, True) == ["12"]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("1", True), ("是", True), ("是的", True), ("需要", True), ("yes", True), ("Y", True),
        ("１", True), ("2", False), ("否", False), ("不需要", False), ("不用", False),
        ("no", False), ("n", False), ("3", None), ("也许", None), ("", None),
    ],
)  # fmt: skip
def test_parse_yes_no(text: str, answer: bool | None) -> None:
    assert parse_yes_no(text) is answer


@pytest.mark.parametrize(
    ("text", "skip"),
    [("0", True), ("０", True), ("零", True), ("跳过", True), ("SKIP", True), (" 0 ", True),
     ("00", False), ("1", False), ("不跳过", False)],
)  # fmt: skip
def test_is_skip(text: str, skip: bool) -> None:
    assert is_skip(text) is skip


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("STOP", "stop"), ("stop", "stop"), (" Stop ", "stop"), ("TD", "stop"), ("td", "stop"),
        ("T", "stop"), ("退订", "stop"), ("退订。", "stop"), ("UNSUBSCRIBE", "stop"),
        ("取消订阅", "stop"), ("退訂", "stop"),
        ("START", "start"), ("订阅", "start"),
        ("HELP", "help"), ("帮助", "help"), ("?", "help"), ("？", "help"),
        ("重新评价", "restart"), ("RESTART", "restart"), ("重来", "restart"),
        # whole message only
        ("stop please", None), ("请帮助我", None), ("我要退订", None), ("5", None), ("", None),
        ("tt", None),
    ],
)  # fmt: skip
def test_parse_command(text: str, command: str | None) -> None:
    assert parse_command(text) == command
