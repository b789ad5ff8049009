"""A parking voucher as channels show it: the sentence that tells it, and its QR code as the
gate's scanner reads it — a PNG for chat apps, inline SVG for the voucher page (segno, pure
Python: no image library needed)."""

from __future__ import annotations

import io

import segno

from dialogs.events import VoucherIssued
from locales import gettext, ids

EXPIRY_FORMAT = "%Y-%m-%d %H:%M"


def voucher_text(voucher: VoucherIssued, locale: str) -> str:
    """The voucher in one message: hall, free minutes, code, expiry (hall time), page link."""
    return gettext(
        locale,
        ids.VOUCHER_ISSUED,
        hall=voucher.hall,
        minutes=voucher.free_minutes,
        code=voucher.code,
        expires=voucher.expires_at.strftime(EXPIRY_FORMAT),
        url=voucher.url,
    )


def qr_png(data: str, *, scale: int = 8) -> bytes:
    """A PNG of ``data``'s QR code (error correction M, a quiet zone of 4 modules)."""
    buffer = io.BytesIO()
    segno.make(data, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def qr_svg(data: str, *, title: str) -> str:
    """``data``'s QR code as an ``<svg>`` element to inline in a page (no XML declaration)."""
    buffer = io.BytesIO()
    segno.make(data, error="m", micro=False).save(
        buffer,
        kind="svg",
        scale=6,
        border=4,
        xmldecl=False,
        svgns=True,
        title=title,
        svgclass="qr",
        omitsize=True,  # a viewBox, so the page can size it
        nl=False,
    )
    return buffer.getvalue().decode()
