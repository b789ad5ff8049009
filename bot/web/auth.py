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

from bot.web.deps import RuntimeDep
from storage.models import ApiKey, ApiKeyHall
from storage.tables import api_keys

ROLES = ("platform", "admin", "parking")  # parking: one hall's (or a few halls') gate system


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    db: DbSession, *, role: str, name: str, now: datetime, halls: Sequence[str] = ()
) -> str:
    """A new API key (shown once); only its hash is stored. A ``parking`` key is good only for
    the vouchers of ``halls`` (hall codes; at least one)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if (role == "parking") != bool(halls):
        raise ValueError("a parking key needs --hall (and only a parking key takes one)")
    key = "rbk_" + secrets.token_urlsafe(32)
    record = ApiKey(name=name, role=role, key_hash=hash_key(key), created_at=now)
    db.add(record)
    db.flush()
    assert record.id is not None
    db.add_all(ApiKeyHall(api_key_id=record.id, hall_code=code) for code in dict.fromkeys(halls))
    db.commit()
    return key


KEY_BY_HASH = sa.select(api_keys).where(
    api_keys.c.key_hash == sa.bindparam("digest"), api_keys.c.revoked_at.is_(None)
)


def require_role(*roles: str):  # type: ignore[no-untyped-def]
    """A dependency that admits a valid Bearer key whose role is one of ``roles`` (admin: any)."""

    def check(request: Request, rt: RuntimeDep) -> ApiKey:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = hash_key(key.strip())
        # One prepared query on a connection given back at once (before the handler opens its
        # own): every API call pays for this check, and the ORM session cost twice the query.
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

    return Depends(check)
