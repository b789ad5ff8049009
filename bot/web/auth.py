"""API keys: Bearer tokens with a role, stored only as their hash."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request, status

from bot.runtime import Runtime
from bot.web.audit import Actor
from bot.web.deps import RuntimeDep
from bot.web.keys import hash_key
from storage.models import ApiKey
from storage.tables import api_keys, key_departments

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
