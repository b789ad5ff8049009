"""API keys as records: create one (shown once, stored as its hash), list them, revoke one.

Every change is an audit row in the change's own transaction. Kept apart from
:mod:`bot.web.auth` (which checks keys on requests and needs the runtime): ``ratebot apikey``
imports only this, so it starts without loading the web stack or the providers' libraries.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session as DbSession

from bot.web import audit
from bot.web.audit import SYSTEM, Actor
from storage.models import ApiKey, ApiKeyDepartment, ApiKeyHall
from storage.tables import api_keys, key_departments, key_halls

# platform: the service platform reporting cases; parking: one hall's (or a few halls') gate
# system; department, supervisor, reviewer: the people of the closed loop (bot.tickets.guard).
ROLES = ("platform", "admin", "parking", "department", "supervisor", "reviewer")


class ApiKeyError(ValueError):
    """A key cannot be found or changed as asked (the reason is the message)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    db: DbSession,
    *,
    role: str,
    name: str,
    now: datetime,
    halls: Sequence[str] = (),
    departments: Sequence[str] = (),
    actor: Actor = SYSTEM,
) -> str:
    """A new API key (shown once); only its hash is stored. A ``parking`` key is good only for
    the vouchers of ``halls`` (hall codes; at least one); a ``department`` key acts only on the
    tickets of ``departments`` (at least one). Committed with its audit row."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if (role == "parking") != bool(halls):
        raise ValueError("a parking key needs --hall (and only a parking key takes one)")
    departments = [d.strip() for d in departments if d.strip()]
    if (role == "department") != bool(departments):
        raise ValueError(
            "a department key needs --department (and only a department key takes one)"
        )
    if any(len(d) > 100 for d in departments):
        raise ValueError("a department name is at most 100 characters")
    key = "rbk_" + secrets.token_urlsafe(32)
    record = ApiKey(name=name, role=role, key_hash=hash_key(key), created_at=now)
    db.add(record)
    db.flush()
    assert record.id is not None
    halls, departments = list(dict.fromkeys(halls)), list(dict.fromkeys(departments))
    db.add_all(ApiKeyHall(api_key_id=record.id, hall_code=code) for code in halls)
    db.add_all(
        ApiKeyDepartment(api_key_id=record.id, department=department) for department in departments
    )
    db.flush()
    after = {"name": name, "role": role, "halls": halls, "departments": departments}
    audit.write(db.connection(), actor, "create", "api_key", record.id, now, after=after)
    db.commit()
    return key


@dataclass(frozen=True)
class KeyListing:
    """A key as ``ratebot apikey list`` shows it: never the key, nor its hash."""

    id: int
    name: str
    role: str
    halls: tuple[str, ...]
    departments: tuple[str, ...]
    created_at: datetime | None
    revoked_at: datetime | None


def list_api_keys(conn: sa.Connection) -> list[KeyListing]:
    """Every key, oldest first, with the halls or departments it is limited to."""
    halls: dict[int, list[str]] = {}
    for key_id, code in conn.execute(
        sa.select(key_halls.c.api_key_id, key_halls.c.hall_code).order_by(key_halls.c.hall_code)
    ):
        halls.setdefault(key_id, []).append(code)
    departments: dict[int, list[str]] = {}
    for key_id, department in conn.execute(
        sa.select(key_departments.c.api_key_id, key_departments.c.department).order_by(
            key_departments.c.department
        )
    ):
        departments.setdefault(key_id, []).append(department)
    rows = conn.execute(
        sa.select(
            api_keys.c.id,
            api_keys.c.name,
            api_keys.c.role,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
        ).order_by(api_keys.c.id)
    )
    return [
        KeyListing(
            id=row.id,
            name=row.name,
            role=row.role,
            halls=tuple(halls.get(row.id, ())),
            departments=tuple(departments.get(row.id, ())),
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )
        for row in rows
    ]


def revoke_api_key(
    conn: sa.Connection, which: str, *, now: datetime, actor: Actor = SYSTEM
) -> KeyListing:
    """Revoke the key ``which`` names: its id (all digits), else its name, which must then be
    the name of exactly one key not yet revoked. The key stops working at once (every request
    looks it up); the audit row is written in ``conn``'s transaction."""
    listed = list_api_keys(conn)
    if which.isdigit():
        found = [k for k in listed if k.id == int(which)]
        if not found:
            raise ApiKeyError(f"no API key with id {which}")
    else:
        named = [k for k in listed if k.name == which]
        found = [k for k in named if k.revoked_at is None]
        if not named:
            raise ApiKeyError(f"no API key named {which!r}")
        if len(found) > 1:
            ids = ", ".join(str(k.id) for k in found)
            raise ApiKeyError(f"{len(found)} keys are named {which!r} (ids {ids}): give the id")
        if not found:
            found = named[-1:]  # only revoked ones: say when the last was
    [key] = found
    if key.revoked_at is not None:
        raise ApiKeyError(f"the API key {key.name!r} (id {key.id}) was revoked already")
    conn.execute(sa.update(api_keys).where(api_keys.c.id == key.id).values(revoked_at=now))
    audit.write(
        conn,
        actor,
        "revoke",
        "api_key",
        key.id,
        now,
        before={"revoked_at": None},
        after={"name": key.name, "role": key.role, "revoked_at": now.isoformat()},
    )
    return replace(key, revoked_at=now)
