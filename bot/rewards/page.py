"""The citizen's voucher page, ``GET /v/{code}``: a small mobile page with the hall, the free
minutes, the state and — while the voucher can be used — its QR code, code and expiry, in the
browser's language. No personal data. An address that keeps trying codes that do not exist is
slowed down like a gate's key."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from bot.rewards.guesses import TooManyGuesses, get_guesses
from bot.rewards.vouchers import current_state, display_code, parse_code, voucher_row
from bot.runtime import Runtime
from bot.web.deps import get_runtime
from bot.web.locale import HTML_LANG, page_locale
from channels.voucher import EXPIRY_FORMAT, qr_svg
from locales import gettext, ids
from storage.privacy import mask

router = APIRouter()

PAGE = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; padding: 1.5rem; background: #f4f6f8;
       color: #1d2733; text-align: center; }}
main {{ max-width: 24rem; margin: 0 auto; background: #fff; border-radius: 12px;
        padding: 1.5rem; box-shadow: 0 1px 4px rgba(0,0,0,.1); }}
h1 {{ font-size: 1.3rem; margin: 0 0 .5rem; }}
.hall {{ font-size: 1.1rem; margin: .25rem 0; }}
.minutes {{ font-size: 1.6rem; font-weight: bold; margin: .5rem 0; }}
.state {{ display: inline-block; padding: .2rem .8rem; border-radius: 1rem; background: #e8f5e9;
          color: #1b5e20; }}
.state.closed {{ background: #fdecea; color: #8a1c12; }}
.qr svg {{ width: 70%; height: auto; margin: 1rem auto; display: block; }}
.code {{ font-family: ui-monospace, monospace; font-size: 1.6rem; letter-spacing: .1em; }}
.hint {{ color: #5b6775; font-size: .9rem; }}
</style>
</head>
<body><main>{content}</main></body>
</html>
"""


def _page(locale: str, content: str, status_code: int = 200) -> HTMLResponse:
    title = html.escape(gettext(locale, ids.VOUCHER_PAGE_TITLE))
    body = PAGE.format(lang=HTML_LANG[locale], title=title, content=content)
    # No cache: the state changes when it is redeemed; no referrer: the URL holds the code.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(body, status_code=status_code, headers=headers)


def _unknown_page(locale: str, status_code: int = 404) -> HTMLResponse:
    title = html.escape(gettext(locale, ids.VOUCHER_PAGE_TITLE))
    unknown = html.escape(gettext(locale, ids.VOUCHER_PAGE_UNKNOWN))
    return _page(locale, f"<h1>{title}</h1><p>{unknown}</p>", status_code)


@router.get("/v/{code}", response_class=HTMLResponse)
async def voucher_page(code: str, request: Request) -> HTMLResponse:
    """The citizen's voucher: hall, minutes, state, expiry, the code and its QR code. No
    personal data. Linked from the message that gave the voucher."""
    rt = get_runtime(request)
    locale = page_locale(request)
    who = f"ip:{request.client.host if request.client else '?'}"
    try:
        async with get_guesses(request).turn(who) as guess:
            compact = parse_code(code)
            row = None
            if compact is not None:
                row = await run_in_threadpool(_find_for_page, rt, compact)
            if compact is None or row is None:
                await guess.missed(f"address {mask(who[3:])}", code)
                return _unknown_page(locale)
    except TooManyGuesses:  # no look-up: to the guesser, as unknown as a code that is not
        return _unknown_page(locale, status_code=429)
    zone = ZoneInfo(row.timezone)
    now = rt.clock()
    state = current_state(row.state, row.expires_at, now)

    def local(at: datetime) -> str:
        return at.astimezone(zone).strftime(EXPIRY_FORMAT)

    state_text = {
        "issued": gettext(locale, ids.VOUCHER_STATE_ISSUED),
        "redeemed": gettext(
            locale,
            ids.VOUCHER_STATE_REDEEMED,
            time=local(row.redeemed_at) if row.redeemed_at else "",
        ),
        "expired": gettext(locale, ids.VOUCHER_STATE_EXPIRED),
        "revoked": gettext(locale, ids.VOUCHER_STATE_REVOKED),
    }[state]
    e = html.escape
    shown = display_code(compact)
    content = (
        f"<h1>{e(gettext(locale, ids.VOUCHER_PAGE_TITLE))}</h1>"
        f'<p class="hall">{e(row.hall_name)}</p>'
        f'<p class="minutes">'
        f"{e(gettext(locale, ids.VOUCHER_PAGE_MINUTES, minutes=row.free_minutes))}</p>"
        f'<p class="state{"" if state == "issued" else " closed"}" data-state="{state}">'
        f"{e(state_text)}</p>"
    )
    if state == "issued":
        content += (
            f'<div class="qr">{qr_svg(compact, title=shown)}</div>'
            f"<p>{e(gettext(locale, ids.VOUCHER_PAGE_CODE))}</p>"
            f'<p class="code">{e(shown)}</p>'
            f"<p>{e(gettext(locale, ids.VOUCHER_PAGE_EXPIRES, expires=local(row.expires_at)))}</p>"
            f'<p class="hint">{e(gettext(locale, ids.VOUCHER_PAGE_HINT))}</p>'
        )
    return _page(locale, content)


def _find_for_page(rt: Runtime, code: str) -> Any:
    with rt.db.connect() as conn:
        return voucher_row(conn, rt.privacy, code)
