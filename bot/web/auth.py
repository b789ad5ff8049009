"""API keys: Bearer tokens with a role, stored only as their hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request, status
from sqlmodel import Session as DbSession

from bot.runtime import Runtime
from bot.web.audit import Actor
from bot.web.deps import RuntimeDep
from storage.models import ApiKey, ApiKeyDepartment, ApiKeyHall
from storage.tables import api_keys, key_departments

# platform: the service platform reporting cases; parking: one hall's (or a few halls') gate
# system; department, supervisor, reviewer: the people of the closed loop (bot.tickets.guard).
ROLES = ("platform", "admin", "parking", "department", "supervisor", "reviewer")


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
) -> str:
    """A new API key (shown once); only its hash is stored. A ``parking`` key is good only for
    the vouchers of ``halls`` (hall codes; at least one); a ``department`` key acts only on the
    tickets of ``departments`` (at least one)."""
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
    db.add_all(ApiKeyHall(api_key_id=record.id, hall_code=code) for code in dict.fromkeys(halls))
    db.add_all(
        ApiKeyDepartment(api_key_id=record.id, department=department)
        for department in dict.fromkeys(departments)
    )
    db.commit()
    return key


KEY_BY_HASH = sa.select(api_keys).where(
    api_keys.c.key_hash == sa.bindparam("digest"), api_keys.c.revoked_at.is_(None)
)


def authenticate(request: Request, rt: Runtime, roles: Sequence[str]) -> ApiKey:
    """The valid Bearer key of ``request`` whose role is one of ``roles`` (admin: any), or the
    401/403 that says what is wrong."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = hash_key(key.strip())
    # Every API call pays for this check: one prepared query, no ORM session, on a connection
    # given back at once (before the handler opens its own).
    with rt.db.connect() as conn:
        row = conn.execute(KEY_BY_HASH, {"digest": digest}).mappings().first()
    found = ApiKey.model_validate(dict(row)) if row is not None else None
    if found is None or not hmac.compare_digest(found.key_hash, digest):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if found.role != "admin" and found.role not in roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"this key's role ({found.role}) may not do this"
        )
    return found


def require_role(*roles: str):  # type: ignore[no-untyped-def]
    """A dependency that admits a valid Bearer key whose role is one of ``roles`` (admin: any)."""

    def check(request: Request, rt: RuntimeDep) -> ApiKey:
        return authenticate(request, rt, roles)

    return Depends(check)


def require_actor(*roles: str):  # type: ignore[no-untyped-def]
    """Like :func:`require_role`, giving who acts (with a department key's departments), for
    the acts that are audited."""

    def check(request: Request, rt: RuntimeDep) -> Actor:
        key = authenticate(request, rt, roles)
        departments: frozenset[str] = frozenset()
        if key.role == "department":
            with rt.db.connect() as conn:
                departments = frozenset(
                    conn.execute(
                        sa.select(key_departments.c.department).where(
                            key_departments.c.api_key_id == key.id
                        )
                    ).scalars()
                )
        return Actor(kind="key", id=key.id, name=key.name, role=key.role, departments=departments)

    return Depends(check)
