"""Reading citizens' answers, whatever the channel: pure functions from text to values.

Every function reads the *whole* message (after trimming spaces and punctuation), never a
substring: "不满意" must not count as "满意", and "55" is not a level. Anything unclear is
``None`` so the engine asks again rather than guess — a rating is never invented.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Literal

Command = Literal["stop", "start", "help", "restart"]

# NFKC already folds full-width forms (５ → 5, ？ → ?, ， → ,); these are what it leaves.
# "-" is not trimmed: "-1" is not 1.
_PUNCTUATION = " \t\r\n.,;:!?'\"()[]{}<>~*。、；：！…·“”‘’（）【】《》〈〉「」『』"
_SEPARATORS = re.compile(r"[\s,;、/|+]+")
_STARS = {"★", "⭐", "🌟"}

_NUMERALS = {
    "1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6, "7": 7, "8": 8, "9": 9,
    "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5,
    "六": 6, "七": 7, "八": 8, "九": 9,
    # financial numerals (大写), Simplified and Traditional
    "壹": 1, "贰": 2, "貳": 2, "叁": 3, "參": 3, "叄": 3, "肆": 4, "伍": 5,
}  # fmt: skip

_LEVEL_WORDS = {
    "非常满意": 5, "非常滿意": 5, "很满意": 5, "很滿意": 5,
    "满意": 4, "滿意": 4,
    "基本满意": 3, "基本滿意": 3, "一般": 3, "普通": 3,
    "不满意": 2, "不滿意": 2,
    "非常不满意": 1, "非常不滿意": 1, "很不满意": 1, "很不滿意": 1,
    "very satisfied": 5, "satisfied": 4, "neutral": 3,
    "dissatisfied": 2, "unsatisfied": 2, "very dissatisfied": 1, "very unsatisfied": 1,
    "five": 5, "four": 4, "three": 3, "two": 2, "one": 1,
}  # fmt: skip

# "5", "五", "5星", "五星", "5分", "5颗星", "5 stars"
_LEVEL_WITH_UNIT = re.compile(r"^(\S)\s*(?:星|颗星|顆星|星级|星級|分|stars?)?$")

_YES_NO = {
    "1": True, "是": True, "是的": True, "对": True, "對": True, "需要": True, "要": True,
    "好": True, "好的": True, "yes": True, "y": True,
    "2": False, "否": False, "不是": False, "不": False, "不需要": False, "不要": False,
    "不用": False, "no": False, "n": False,
}  # fmt: skip

_SKIP = {"0", "零", "〇", "跳过", "跳過", "skip"}

_COMMANDS: dict[str, Command] = {
    "stop": "stop", "td": "stop", "t": "stop", "unsubscribe": "stop",
    "退订": "stop", "退訂": "stop", "取消订阅": "stop", "取消訂閱": "stop",
    "start": "start", "订阅": "start", "訂閱": "start",
    "help": "help", "帮助": "help", "幫助": "help", "?": "help",
    "restart": "restart", "重新评价": "restart", "重新評價": "restart",
    "重来": "restart", "重來": "restart",
}  # fmt: skip


def normalize(text: str) -> str:
    """Fold full-width forms, drop emoji variation selectors, lower-case, collapse spaces,
    and trim surrounding spaces and punctuation."""
    text = unicodedata.normalize("NFKC", text).replace("\ufe0f", "").lower()
    return " ".join(text.split()).strip(_PUNCTUATION)


def parse_level(text: str) -> int | None:
    """The level 1–5 (5 best) that ``text`` gives, or ``None`` when it gives none or is unclear."""
    s = normalize(text)
    if s in _LEVEL_WORDS:
        return _LEVEL_WORDS[s]
    compact = s.replace(" ", "")
    if compact and set(compact) <= _STARS:
        return len(compact) if len(compact) <= 5 else None
    match = _LEVEL_WITH_UNIT.match(s)
    if match:
        level = _NUMERALS.get(match.group(1))
        if level is not None and 1 <= level <= 5:
            return level
    return None


def parse_levels(text: str, n: int) -> list[int] | None:
    """``n`` levels at once (the shortcut "5 4 5 5", "5455", "5,4,5,5"), or ``None``.

    Stars are never the shortcut: "★★★★" is one answer of four stars, not four answers of one
    star, however many questions are left (reading it as 1,1,1,1 stored an invented bad review).
    """
    s = normalize(text)
    if any(char in _STARS for char in s):
        return None
    tokens = [t for t in _SEPARATORS.split(s) if t]
    if len(tokens) == 1:
        # No separators: one character per level ("5455", "五四五五").
        tokens = list(tokens[0])
    if len(tokens) != n:
        return None
    levels = [parse_level(token) for token in tokens]
    return None if None in levels else levels  # type: ignore[return-value]


def parse_choices(text: str, options: Sequence[str], multiple: bool) -> list[str] | None:
    """The option values chosen by number (1-based; "13", "1 3", "1,3"), in option order.

    With more than nine options, numbers must be separated ("1 12"). A single choice must be
    exactly one number.
    """
    s = normalize(text)
    tokens = [t for t in _SEPARATORS.split(s) if t]
    if len(tokens) == 1 and len(options) <= 9:
        tokens = list(tokens[0])
    chosen: set[int] = set()
    for token in tokens:
        number = int(token) if token.isdigit() else _NUMERALS.get(token)
        if number is None or not 1 <= number <= len(options):
            return None
        chosen.add(number)
    if not chosen or (not multiple and len(chosen) != 1):
        return None
    return [options[number - 1] for number in sorted(chosen)]


def parse_yes_no(text: str) -> bool | None:
    """``True`` for 1 / 是 / yes / y, ``False`` for 2 / 否 / no / n, else ``None``."""
    return _YES_NO.get(normalize(text))


def is_skip(text: str) -> bool:
    """Whether ``text`` asks to skip an optional question (0, ０, 零, 跳过, skip)."""
    return normalize(text) in _SKIP


def parse_command(text: str) -> Command | None:
    """The global command that the whole of ``text`` is (STOP/TD/退订, START/订阅, HELP/帮助/?,
    RESTART/重新评价), or ``None``."""
    s = unicodedata.normalize("NFKC", text).strip().lower()
    if s == "?":  # normalize() would trim it away as punctuation
        return "help"
    return _COMMANDS.get(normalize(s))
