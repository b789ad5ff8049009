"""Opt-outs: contacts that asked for no more invitations (STOP/TD/退订) until they say START."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from storage.models import OptOut

opt_outs = OptOut.__table__  # type: ignore[attr-defined]


def opt_out(conn: sa.Connection, contact_hash: str, channel: str, now: datetime) -> bool:
    """Record an opt-out. False when the contact had opted out already."""
    if is_opted_out(conn, contact_hash):
        return False
    conn.execute(
        sa.insert(opt_outs).values(contact_hash=contact_hash, channel=channel, created_at=now)
    )
    return True


def opt_in(conn: sa.Connection, contact_hash: str) -> None:
    conn.execute(sa.delete(opt_outs).where(opt_outs.c.contact_hash == contact_hash))


def is_opted_out(conn: sa.Connection, contact_hash: str) -> bool:
    query = sa.select(opt_outs.c.id).where(opt_outs.c.contact_hash == contact_hash)
    return conn.execute(query).first() is not None
