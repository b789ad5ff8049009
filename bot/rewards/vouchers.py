"""Parking vouchers: the code, issuing one for a valid rating, finding one by its code.

A code is 10 random symbols and a check symbol from a 32-symbol alphabet with no look-alikes
(no 0/O, no 1/I): 50 bits from ``secrets``, never derived from the case or the citizen, short
enough to read aloud and to type at a gate (shown as ``ABCD-EFGH-JKM``). The check symbol (Luhn
mod 32) catches every single mistyped symbol and nearly every swap of two neighbours, so a typo
is refused before any lookup. Only a keyed hash of the code is stored (and an encrypted copy, so
a channel can say it again): a stolen table gives no codes, and lookup is by a unique index.

Issued in the transaction that closes the rating it rewards (``issue_voucher``, called by
``Conversations.apply``), at most once per case: the unique key on ``record_id`` makes a second
attempt — a re-delivered finishing message, two workers racing — insert nothing.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dialogs.events import VoucherIssued
from storage.models import UTCDateTime
from storage.privacy import Privacy
from storage.tables import flagged, halls, ratings, records, vouchers

# A hall's code, as the gate and the halls file name it.
HALL_CODE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols: no 0, 1, I, O
RANDOM_SYMBOLS = 10  # 50 bits
CODE_LENGTH = RANDOM_SYMBOLS + 1
_SEPARATORS = re.compile(r"[\s\-]")
_VALUES = {symbol: value for value, symbol in enumerate(ALPHABET)}


# --- codes ------------------------------------------------------------------------------------


def _luhn_sum(values: list[int], *, doubled_first: bool) -> int:
    """Luhn mod N over ``values`` from the right, every other one doubled (digits summed in
    base N)."""
    n, total, double = len(ALPHABET), 0, doubled_first
    for value in reversed(values):
        addend = value * 2 if double else value
        total += addend // n + addend % n
        double = not double
    return total % n


def check_symbol(payload: str) -> str:
    """The check symbol of a code's random part."""
    total = _luhn_sum([_VALUES[s] for s in payload], doubled_first=True)
    return ALPHABET[(len(ALPHABET) - total) % len(ALPHABET)]


def new_code() -> str:
    """A fresh code (compact form: 11 symbols)."""
    payload = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_SYMBOLS))
    return payload + check_symbol(payload)


def parse_code(text: str) -> str | None:
    """The compact code a person typed (any case, spaces or hyphens anywhere), or ``None`` when
    it is malformed or its check symbol is wrong — refused without looking anything up."""
    code = _SEPARATORS.sub("", text).upper()
    if len(code) != CODE_LENGTH or any(s not in _VALUES for s in code):
        return None
    if _luhn_sum([_VALUES[s] for s in code], doubled_first=False) != 0:
        return None
    return code


def display_code(code: str) -> str:
    """``ABCDEFGHJKM`` → ``ABCD-EFGH-JKM``: groups to read aloud and type."""
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


def code_hash(privacy: Privacy, code: str) -> str:
    """The keyed hash a voucher is stored and found under."""
    return privacy.contact_hash(f"voucher:{code}")


def voucher_url(public_url: str, code: str) -> str:
    """The citizen's page of the voucher (``GET /v/{code}``)."""
    return f"{public_url}/v/{code}"


# --- issuing ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reward:
    """What a rating earns: its case and the hall that offers the parking."""

    rating_id: int
    record_id: int
    hall_code: str
    hall_name: str
    zone: str
    free_minutes: int
    valid_hours: int


def reward_for(conn: sa.Connection, conversation_id: str) -> Reward | None:
    """The reward the rating of ``conversation_id`` earns, if it is valid: finished, the first
    rating of a real case, at a hall with parking enabled, by a citizen not flagged for fraud.
    The level plays no part — a reward that depended on the score would bias the results."""
    row = conn.execute(
        sa.select(
            ratings.c.id,
            ratings.c.record_id,
            halls.c.code,
            halls.c.name,
            halls.c.timezone,
            halls.c.free_minutes,
            halls.c.valid_hours,
        )
        .select_from(
            ratings.join(records, records.c.id == ratings.c.record_id).join(
                halls, sa.or_(halls.c.code == records.c.hall, halls.c.name == records.c.hall)
            )
        )
        .where(
            ratings.c.conversation_id == conversation_id,
            ratings.c.status == "complete",
            ratings.c.evaluation_count == 1,
            ratings.c.unsolicited.is_(False),
            ratings.c.flagged.is_(False),  # held back while a fraud flag is pending or confirmed
            halls.c.parking_enabled.is_(True),
            halls.c.free_minutes > 0,
            ~sa.exists().where(flagged.c.citizen_hash == ratings.c.citizen_hash),
        )
        .order_by((halls.c.code == records.c.hall).desc())  # a code outranks a same-named hall
        .limit(1)
    ).first()
    if row is None:
        return None
    return Reward(*row)


# ON CONFLICT DO NOTHING (on any unique key: the case's one voucher, or a colliding code) is
# written the same on SQLite and PostgreSQL; SQLAlchemy's insert() has it only per dialect.
INSERT_VOUCHER = sa.text(
    """
    INSERT INTO vouchers (code_hash, code_enc, record_id, rating_id, hall_code, free_minutes,
                          state, issued_at, expires_at)
    VALUES (:code_hash, :code_enc, :record_id, :rating_id, :hall_code, :free_minutes,
            'issued', :now, :expires_at)
    ON CONFLICT DO NOTHING
    RETURNING id
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime), sa.bindparam("expires_at", type_=UTCDateTime))


def issue_voucher(
    conn: sa.Connection, privacy: Privacy, public_url: str, conversation_id: str, now: datetime
) -> VoucherIssued | None:
    """Issue the voucher the rating of ``conversation_id`` earns, inside the caller's transaction.
    ``None`` when it earns none, or its case has one already (only one per case, ever)."""
    reward = reward_for(conn, conversation_id)
    if reward is None:
        return None
    expires_at = now + timedelta(hours=reward.valid_hours)
    for _ in range(3):  # a new code only if a code collided: 2^-50 per voucher
        code = new_code()
        inserted = conn.execute(
            INSERT_VOUCHER,
            {
                "code_hash": code_hash(privacy, code),
                "code_enc": privacy.encrypt(code),
                "record_id": reward.record_id,
                "rating_id": reward.rating_id,
                "hall_code": reward.hall_code,
                "free_minutes": reward.free_minutes,
                "now": now,
                "expires_at": expires_at,
            },
        ).scalar()
        if inserted is not None:
            return VoucherIssued(
                code=display_code(code),
                hall=reward.hall_name,
                free_minutes=reward.free_minutes,
                expires_at=expires_at.astimezone(ZoneInfo(reward.zone)),
                url=voucher_url(public_url, code),
            )
        taken = conn.execute(
            sa.select(vouchers.c.rating_id).where(vouchers.c.record_id == reward.record_id)
        ).first()
        if taken is not None:
            # This rating's own voucher: the turn that issued it is run again, because its
            # reply was lost (a worker killed after the commit, the state store down before it
            # remembered the reply). The retry tells the same code; any other rating gets none.
            if taken.rating_id == reward.rating_id:
                return _voucher(conn, privacy, public_url, vouchers.c.record_id == reward.record_id)
            return None
    raise RuntimeError("three voucher codes collided in a row: is secrets broken?")


# --- reading ----------------------------------------------------------------------------------


def current_state(state: str, expires_at: datetime | None, now: datetime) -> str:
    """The state as of ``now``: an issued voucher past its time is expired, even before the
    worker marks it so."""
    if state == "issued" and expires_at is not None and expires_at <= now:
        return "expired"
    return state


def expire_due(conn: sa.Connection, now: datetime) -> int:
    """Mark issued vouchers past their time ``expired`` (as of their expiry); how many."""
    done = conn.execute(
        sa.update(vouchers)
        .where(vouchers.c.state == "issued", vouchers.c.expires_at <= now)
        .values(state="expired", closed_at=vouchers.c.expires_at)
    )
    return int(done.rowcount)


def voucher_for_case(
    conn: sa.Connection, privacy: Privacy, public_url: str, record_no: str
) -> VoucherIssued | None:
    """The voucher case ``record_no`` earned, as a channel tells it (its code decrypted), or
    ``None`` when it earned none. For a channel that says it again later (the phone's SMS)."""
    return _voucher(conn, privacy, public_url, records.c.record_no == record_no)


def _voucher(
    conn: sa.Connection, privacy: Privacy, public_url: str, where: sa.ColumnElement[bool]
) -> VoucherIssued | None:
    """The voucher ``where`` picks, as a channel tells it."""
    row = conn.execute(
        sa.select(
            vouchers.c.code_enc,
            vouchers.c.free_minutes,
            vouchers.c.expires_at,
            halls.c.name,
            halls.c.timezone,
        )
        .select_from(
            vouchers.join(records, records.c.id == vouchers.c.record_id).join(
                halls, halls.c.code == vouchers.c.hall_code
            )
        )
        .where(where)
    ).first()
    if row is None:
        return None
    code = privacy.decrypt(row.code_enc)
    return VoucherIssued(
        code=display_code(code),
        hall=row.name,
        free_minutes=row.free_minutes,
        expires_at=row.expires_at.astimezone(ZoneInfo(row.timezone)),
        url=voucher_url(public_url, code),
    )


def voucher_row(conn: sa.Connection, privacy: Privacy, code: str) -> Any:
    """The voucher of ``code`` with its hall's name and time zone, or ``None``."""
    return conn.execute(
        sa.select(vouchers, halls.c.name.label("hall_name"), halls.c.timezone)
        .join(halls, halls.c.code == vouchers.c.hall_code)
        .where(vouchers.c.code_hash == code_hash(privacy, code))
    ).first()
