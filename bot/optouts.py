"""Opt-outs: contacts that asked for no more invitations (STOP/TD/退订) until they say START."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session as DbSession
from sqlmodel import select

from storage.models import OptOut


def opt_out(db: DbSession, contact_hash: str, channel: str, now: datetime) -> bool:
    """Record an opt-out. False when the contact had opted out already."""
    if is_opted_out(db, contact_hash):
        return False
    db.add(OptOut(contact_hash=contact_hash, channel=channel, created_at=now))
    return True


def opt_in(db: DbSession, contact_hash: str) -> None:
    for row in db.exec(select(OptOut).where(OptOut.contact_hash == contact_hash)):
        db.delete(row)


def is_opted_out(db: DbSession, contact_hash: str) -> bool:
    return db.exec(select(OptOut.id).where(OptOut.contact_hash == contact_hash)).first() is not None
