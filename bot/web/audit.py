"""The audit log: every act of a person (or of ratebot's own worker) on a ticket, an appeal, a
flag, a rating's exclusion, a contact or a voucher is one row, written by the act itself in its
own transaction. Rows are only ever added (on PostgreSQL a trigger refuses UPDATE and DELETE), so
a ticket's timeline is a query."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage.tables import audit_log

ALL_DEPARTMENTS = frozenset({"admin", "supervisor", "reviewer"})  # the roles that see every one


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an API key or a staff account with its role and (for a department role) the
    departments it acts for; or ratebot itself (``system``)."""

    kind: str  # key | user | system
    id: int | None
    name: str
    role: str
    departments: frozenset[str] = frozenset()

    @property
    def departments_seen(self) -> frozenset[str] | None:
        """The departments whose tickets and results this actor sees (``None``: all)."""
        return None if self.role in ALL_DEPARTMENTS else self.departments


SYSTEM = Actor(kind="system", id=None, name="ratebot", role="system")


def write(
    conn: sa.Connection,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: int,
    now: datetime,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    """One audit row, in ``conn``'s transaction: committed with the act, or not at all."""
    conn.execute(
        sa.insert(audit_log).values(
            at=now,
            actor_kind=actor.kind,
            actor_id=actor.id,
            actor_name=actor.name,
            actor_role=actor.role,
            action=action,
            entity=entity,
            entity_id=entity_id,
            before=_as_json(before),
            after=_as_json(after),
            reason=reason,
        )
    )


def _as_json(values: Mapping[str, Any] | None) -> Any:
    """``values`` as the JSON column keeps them: plain JSON as it is, anything else (times,
    enums, sets) through FastAPI's encoder. Loaded only then, so that the commands writing plain
    audit rows (``ratebot apikey``, ``ratebot user``) start without FastAPI."""
    if values is None:
        return None
    try:
        return json.loads(json.dumps(values))
    except TypeError:
        from fastapi.encoders import jsonable_encoder

        return jsonable_encoder(values)


def entries(
    conn: sa.Connection,
    *,
    entity: str | None = None,
    entity_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Audit rows, oldest first, as the API shows them."""
    query = sa.select(audit_log).order_by(audit_log.c.id)
    if entity is not None:
        query = query.where(audit_log.c.entity == entity)
    if entity_id is not None:
        query = query.where(audit_log.c.entity_id == entity_id)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if until is not None:
        query = query.where(audit_log.c.at < until)
    rows = conn.execute(query.offset(offset).limit(limit)).mappings()
    return [
        {
            "id": row["id"],
            "at": row["at"],
            "who": {
                "kind": row["actor_kind"],
                "id": row["actor_id"],
                "name": row["actor_name"],
                "role": row["actor_role"],
            },
            "action": row["action"],
            "entity": row["entity"],
            "entity_id": row["entity_id"],
            "before": row["before"],
            "after": row["after"],
            "reason": row["reason"],
        }
        for row in rows
    ]
