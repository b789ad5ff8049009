"""Which language a page is shown in: the visitor's choice, else the browser's, else the
deployment's. Used by every HTML page (the staff pages, the public results, the voucher page)."""

from __future__ import annotations

from fastapi import Request

from bot.web.deps import get_runtime
from locales import LOCALES, normalize_locale

LANG_COOKIE = "ratebot_lang"  # the language a visitor chose with ?lang=, remembered
# A shipped locale as an HTML lang attribute (BCP 47).
HTML_LANG = {"zh_Hans_CN": "zh-Hans", "zh_Hant_TW": "zh-Hant", "en": "en"}


def chosen_locale(request: Request) -> str | None:
    """The shipped locale ``?lang=`` asks for (``zh-TW``, ``en`` …), if it names one."""
    return _shipped(request.query_params.get("lang"))


def page_locale(request: Request) -> str:
    """``?lang=``, else the ``ratebot_lang`` cookie, else the first language of
    ``Accept-Language`` that ratebot ships, else ``RATEBOT_DEFAULT_LOCALE``."""
    found = chosen_locale(request) or _shipped(request.cookies.get(LANG_COOKIE))
    return found or _accepted(request) or get_runtime(request).settings.default_locale


def _shipped(value: str | None) -> str | None:
    locale = normalize_locale(value, default="")
    return locale if locale in LOCALES else None


def _accepted(request: Request) -> str | None:
    """The browser's preferred shipped locale, by its q-values (``zh-TW,zh;q=0.9,en;q=0.8``)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, _, params = part.strip().partition(";")
        try:
            quality = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            continue
        if quality > 0:
            ranked.append((-quality, position, tag.strip()))
    for _, _, tag in sorted(ranked):
        if (locale := _shipped(tag)) is not None:
            return locale
    return None
