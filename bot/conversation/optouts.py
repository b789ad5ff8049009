"""Opt-outs: contacts that asked for no more invitations (STOP/TD/退订) until they say START."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from storage.models import UTCDateTime
from storage.tables import opt_outs

OPT_OUT = sa.text(
    """
    INSERT INTO opt_outs (contact_hash, channel, created_at) VALUES (:contact_hash, :channel, :now)
    ON CONFLICT (contact_hash) DO NOTHING
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime))


def opt_out(conn: sa.Connection, contact_hash: str, channel: str, now: datetime) -> bool:
    """Record an opt-out. False when the contact had opted out already (even a moment ago, from
    another channel: the insert then does nothing rather than fail)."""
    inserted = conn.execute(OPT_OUT, {"contact_hash": contact_hash, "channel": channel, "now": now})
    return bool(inserted.rowcount == 1)


def opt_in(conn: sa.Connection, contact_hash: str) -> None:
    conn.execute(sa.delete(opt_outs).where(opt_outs.c.contact_hash == contact_hash))


def is_opted_out(conn: sa.Connection, contact_hash: str) -> bool:
    query = sa.select(opt_outs.c.id).where(opt_outs.c.contact_hash == contact_hash)
    return conn.execute(query).first() is not None
