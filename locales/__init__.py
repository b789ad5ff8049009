"""Message catalogs (Babel/gettext). Every user-facing sentence is a message id looked up here.

Message ids are symbolic (``survey.overall.prompt``), so a missing translation shows up as the id
itself and the catalog tests catch it. Placeholders use ``str.format`` names: ``{hall}``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from babel.support import NullTranslations, Translations

CATALOG_DIR = Path(__file__).resolve().parent
DOMAIN = "messages"
LOCALES = ("zh_Hans_CN", "zh_Hant_TW", "en")
DEFAULT_LOCALE = "zh_Hans_CN"


@cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalog of ``locale`` (an unknown locale gets the default one; a missing
    ``.mo`` gets an empty ``NullTranslations``)."""
    if locale not in LOCALES:
        locale = DEFAULT_LOCALE
    return Translations.load(str(CATALOG_DIR), [locale], DOMAIN)


def N_(message_id: str) -> str:  # noqa: N802 - gettext's conventional name, found by pybabel extract
    """Mark ``message_id`` as a catalog id for extraction; returns it unchanged."""
    return message_id


def has_message(locale: str, message_id: str) -> bool:
    """Whether ``locale``'s catalog translates ``message_id`` (to a non-empty text)."""
    # A missing .mo gives NullTranslations, which has no catalog at all: that is "no", not a crash.
    catalog = getattr(translations(locale), "_catalog", {})
    return bool(catalog.get(message_id))


def gettext(locale: str, message_id: str, **params: Any) -> str:
    """The sentence for ``message_id`` in ``locale``, with ``params`` filled in."""
    text = translations(locale).gettext(message_id)
    return text.format(**params) if params else text


def normalize_locale(value: str | None, default: str = DEFAULT_LOCALE) -> str:
    """Map what a client sends (``zh-CN``, ``zh_TW``, ``en-US``…) to a shipped locale, else
    ``default``."""
    if not value:
        return default
    v = value.replace("-", "_").lower()
    if v in {"zh_hant_tw", "zh_tw", "zh_hk", "zh_hant", "zh_mo", "zh_hant_hk"}:
        return "zh_Hant_TW"
    if v.startswith("zh"):
        return "zh_Hans_CN"
    if v.startswith("en"):
        return "en"
    return default
