"""Staff accounts: people who sign in to the pages, with the API keys' roles and department
scoping. Passwords are kept only as Argon2 hashes (argon2-cffi). Every change is an audit row
in the change's own transaction; disabling an account or resetting its password ends its
sessions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.web import audit
from bot.web.audit import SYSTEM, Actor
from storage.tables import staff_sessions, user_departments, users

# The API keys' people roles (bot.web.keys.ROLES without the machines: platform, parking).
ROLES = ("department", "supervisor", "reviewer", "admin")
# Where each role lands after signing in.
HOMES = {
    "department": "/desk",
    "reviewer": "/review",
    "supervisor": "/dashboard",
    "admin": "/dashboard",
}
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # hashing a megabyte on every sign-in attempt would be a cheap attack
MAX_NAME = 100


class AccountError(ValueError):
    """A request about an account that cannot be carried out; the message says why."""


@cache
def hasher() -> PasswordHasher:
    """argon2-cffi's recommended parameters (RFC 9106 low-memory profile)."""
    return PasswordHasher()


@cache
def _decoy_hash() -> str:
    # An unknown name is checked against this, so it costs the same time as a known one.
    return hasher().hash("not anybody's password")


def check_password(password: str) -> None:
    """Refuse a password too short (or absurdly long) to be kept, with a readable reason."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise AccountError(f"a name is 1-{MAX_NAME} printable characters")
    return name


def find_user(conn: sa.Connection, name: str) -> sa.RowMapping | None:
    """The account called ``name`` (disabled or not)."""
    return conn.execute(sa.select(users).where(users.c.name == name)).mappings().first()


def _existing(conn: sa.Connection, name: str) -> sa.RowMapping:
    row = find_user(conn, name)
    if row is None:
        raise AccountError(f"no account called {name!r}")
    return row


def departments_of(conn: sa.Connection, user_id: int) -> frozenset[str]:
    return frozenset(
        conn.execute(
            sa.select(user_departments.c.department).where(user_departments.c.user_id == user_id)
        ).scalars()
    )


def actor_of(user: sa.RowMapping, departments: Iterable[str]) -> Actor:
    """The account as who acts, for the audit log and the guards."""
    return Actor(
        kind="user",
        id=user["id"],
        name=user["name"],
        role=user["role"],
        departments=frozenset(departments),
    )


def create_user(
    conn: sa.Connection,
    *,
    name: str,
    role: str,
    password: str,
    now: datetime,
    departments: Iterable[str] = (),
    actor: Actor = SYSTEM,
) -> int:
    """A new account; a ``department`` account acts for ``departments`` (at least one), the
    other roles take none. Returns its id."""
    name = _clean_name(name)
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    chosen = list(dict.fromkeys(d.strip() for d in departments if d.strip()))
    if (role == "department") != bool(chosen):
        raise AccountError(
            "a department account needs --department (and only a department account takes one)"
        )
    if any(len(d) > 100 for d in chosen):
        raise AccountError("a department name is at most 100 characters")
    check_password(password)
    if find_user(conn, name) is not None:
        raise AccountError(f"there is already an account called {name!r}")
    user_id = conn.execute(
        sa.insert(users)
        .values(
            name=name,
            role=role,
            password_hash=hasher().hash(password),
            created_at=now,
            password_changed_at=now,
        )
        .returning(users.c.id)
    ).scalar_one()
    if chosen:
        conn.execute(
            sa.insert(user_departments), [{"user_id": user_id, "department": d} for d in chosen]
        )
    after = {"name": name, "role": role, "departments": chosen}
    audit.write(conn, actor, "create", "user", user_id, now, after=after)
    return int(user_id)


def disable_user(conn: sa.Connection, *, name: str, now: datetime, actor: Actor = SYSTEM) -> int:
    """Disable the account: it can no longer sign in and its open sessions end."""
    user = _existing(conn, name)
    if user["disabled_at"] is not None:
        raise AccountError(f"the account {name!r} is already disabled")
    conn.execute(sa.update(users).where(users.c.id == user["id"]).values(disabled_at=now))
    ended = end_sessions_of(conn, user["id"], now)
    audit.write(conn, actor, "disable", "user", user["id"], now, after={"sessions_ended": ended})
    return int(user["id"])


def reset_password(
    conn: sa.Connection, *, name: str, password: str, now: datetime, actor: Actor = SYSTEM
) -> int:
    """Give the account a new password; its open sessions end (whoever knew the old one is
    signed out)."""
    check_password(password)
    user = _existing(conn, name)
    conn.execute(
        sa.update(users)
        .where(users.c.id == user["id"])
        .values(password_hash=hasher().hash(password), password_changed_at=now)
    )
    ended = end_sessions_of(conn, user["id"], now)
    audit.write(
        conn, actor, "reset_password", "user", user["id"], now, after={"sessions_ended": ended}
    )
    return int(user["id"])


def end_sessions_of(conn: sa.Connection, user_id: int, now: datetime) -> int:
    """End every open session of the account; how many there were."""
    result = conn.execute(
        sa.update(staff_sessions)
        .where(staff_sessions.c.user_id == user_id, staff_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )
    return int(result.rowcount)


def password_matches(conn: sa.Connection, user: sa.RowMapping | None, password: str) -> bool:
    """Whether ``password`` is ``user``'s (``None``: an unknown name, checked against a decoy
    so that it takes as long). A hash made with weaker parameters than today's is made again."""
    if user is None or len(password) > MAX_PASSWORD:
        _verify(_decoy_hash(), password[:MAX_PASSWORD])
        return False
    if not _verify(user["password_hash"], password):
        return False
    if hasher().check_needs_rehash(user["password_hash"]):
        conn.execute(
            sa.update(users)
            .where(users.c.id == user["id"])
            .values(password_hash=hasher().hash(password))
        )
    return True


def _verify(password_hash: str, password: str) -> bool:
    try:
        return hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
