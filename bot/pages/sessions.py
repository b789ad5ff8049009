"""Signed-in browsers. The cookie holds a random token signed with ``RATEBOT_SECRET_KEY``; the
database keeps only the token's SHA-256, so a copy of the table signs nobody in. A session ends
when its account signs out or is disabled, or after ``RATEBOT_SESSION_HOURS`` without a
request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from bot.pages.accounts import actor_of, departments_of
from bot.web.audit import Actor
from storage.privacy import Privacy
from storage.tables import staff_sessions, users

SEEN_EVERY = timedelta(minutes=1)  # last_seen_at moves at most this often: few writes


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A live session: who it is and the CSRF token its forms carry."""

    session_id: int
    actor: Actor
    csrf_token: str


def _signature(privacy: Privacy, purpose: str, value: str) -> str:
    return privacy.contact_hash(f"{purpose}:{value}")


def sign(privacy: Privacy, purpose: str, value: str) -> str:
    """``value`` with a keyed signature for ``purpose`` (a cookie's name), as ``value.sig``."""
    return f"{value}.{_signature(privacy, purpose, value)}"


def unsign(privacy: Privacy, purpose: str, signed: str | None) -> str | None:
    """The value of a ``sign``-ed text, or ``None`` if it is missing or forged."""
    value, _, signature = (signed or "").rpartition(".")
    if not value or not hmac.compare_digest(signature, _signature(privacy, purpose, value)):
        return None
    return value


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(conn: sa.Connection, user_id: int, now: datetime) -> str:
    """A new session for the account; returns its token (for the cookie, never stored)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        sa.insert(staff_sessions).values(
            token_hash=token_hash(token),
            user_id=user_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
        )
    )
    return token


LIVE_SESSION = (
    sa.select(
        staff_sessions.c.id.label("session_id"),
        staff_sessions.c.csrf_token,
        staff_sessions.c.last_seen_at,
        users,
    )
    .join(users, users.c.id == staff_sessions.c.user_id)
    .where(
        staff_sessions.c.token_hash == sa.bindparam("digest"),
        staff_sessions.c.ended_at.is_(None),
        users.c.disabled_at.is_(None),
    )
)


def current_session(
    conn: sa.Connection, token: str, now: datetime, idle: timedelta
) -> SignedIn | None:
    """The live session of ``token``, its last request moved to ``now`` (at most once a
    minute); ``None`` if it has ended or been idle longer than ``idle`` (it is ended then)."""
    row = conn.execute(LIVE_SESSION, {"digest": token_hash(token)}).mappings().first()
    if row is None:
        return None
    if now - row["last_seen_at"] > idle:
        end_session(conn, row["session_id"], now)
        return None
    if now - row["last_seen_at"] >= SEEN_EVERY:
        conn.execute(
            sa.update(staff_sessions)
            .where(staff_sessions.c.id == row["session_id"])
            .values(last_seen_at=now)
        )
    return SignedIn(
        session_id=row["session_id"],
        actor=actor_of(row, departments_of(conn, row["id"])),
        csrf_token=row["csrf_token"],
    )


def end_session(conn: sa.Connection, session_id: int, now: datetime) -> None:
    conn.execute(
        sa.update(staff_sessions)
        .where(staff_sessions.c.id == session_id, staff_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )
