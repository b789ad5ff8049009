"""Fraud flags (刷好评, 恶意差评). A rating a rule catches is kept, marked with the rule, held out
of the statistics and of parking vouchers until a reviewer decides: cleared, it counts again and
earns its withheld voucher; confirmed, it stays out.

Two rules run in the rating's own transaction, as it finishes: a contact that rates more than N
times within D days, and a contact on the staff list. The third — a burst of top ratings for one
clerk or window — looks across many citizens, so the worker runs it over the last minutes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bot import metrics
from bot.results import rollups, upstream
from bot.tickets.appeals import NotPending, require_decider
from bot.tickets.rules import FraudRules
from bot.web import audit
from bot.web.audit import Actor
from storage.tables import flags, ratings, records, vouchers

TOP = 5

INSERT_FLAG = sa.text(
    """
    INSERT INTO flags (rating_id, rule, detail, state, created_at)
    VALUES (:rating_id, :rule, :detail, 'pending', :now)
    ON CONFLICT (rating_id, rule) DO NOTHING
    RETURNING id
    """
)


def _flag(conn: sa.Connection, rating_id: int, rule: str, detail: str, now: datetime) -> int | None:
    flag_id: int | None = conn.execute(
        INSERT_FLAG.bindparams(sa.bindparam("now", type_=ratings.c.created_at.type)),
        {"rating_id": rating_id, "rule": rule, "detail": detail, "now": now},
    ).scalar()
    if flag_id is None:
        return None
    conn.execute(sa.update(ratings).where(ratings.c.id == rating_id).values(flagged=True))
    rollups.mark_case(conn, rating_id)
    upstream.enqueue(conn, rating_id, "counts", now)
    audit.write(
        conn, audit.SYSTEM, "flagged", "flag", flag_id, now, after={"rule": rule}, reason=detail
    )
    metrics.FLAGS.labels(rule).inc()
    return flag_id


def check_rating(
    conn: sa.Connection,
    rules: FraudRules,
    rating_id: int,
    *,
    from_staff: bool,
    recent_ratings: int,
    now: datetime,
) -> list[str]:
    """Run the per-rating rules on a rating that just finished, given what the rating's own
    query found (``bot.tickets.opening``): whether its contact is on the staff list, and how
    many finished ratings that contact gave within the rule's days (this one included). The
    rules that flagged it."""
    caught: list[str] = []
    staff_rule = rules.staff_contacts and from_staff
    if staff_rule and _flag(conn, rating_id, "staff_contact", "rated by a staff contact", now):
        caught.append("staff_contact")
    limit = rules.contact_ratings
    if limit is not None and recent_ratings > limit.ratings:
        detail = f"{recent_ratings} ratings from one contact within {limit.days} days"
        if _flag(conn, rating_id, "contact_ratings", detail, now):
            caught.append("contact_ratings")
    return caught


def check_bursts(conn: sa.Connection, rules: FraudRules, now: datetime) -> int:
    """Flag the top ratings of every clerk, and every window, that had more than N of them
    within the last M minutes. The number of ratings flagged."""
    burst = rules.top_burst
    if burst is None:
        return 0
    since = now - timedelta(minutes=burst.minutes)
    flagged = 0
    for column, what in ((records.c.clerk, "clerk"), (records.c.window, "window")):
        recent_top = (
            sa.select(ratings.c.id, records.c.hall, column.label("unit"))
            .join(records, records.c.id == ratings.c.record_id)
            .where(
                ratings.c.level == TOP,
                ratings.c.status != "in_progress",
                ratings.c.created_at > since,  # indexed; a burst is ratings begun close together
                column.is_not(None),
            )
            .subquery()
        )
        crowded = (
            sa.select(recent_top.c.hall, recent_top.c.unit)
            .group_by(recent_top.c.hall, recent_top.c.unit)
            .having(sa.func.count() > burst.ratings)
            .subquery()
        )
        rows = conn.execute(
            sa.select(recent_top.c.id, recent_top.c.hall, recent_top.c.unit).join(
                crowded,
                sa.and_(crowded.c.hall == recent_top.c.hall, crowded.c.unit == recent_top.c.unit),
            )
        ).all()
        for rating_id, hall, unit in rows:
            detail = (
                f"more than {burst.ratings} top ratings for {what} {unit} at {hall} "
                f"within {burst.minutes} minutes"
            )
            if _flag(conn, rating_id, "top_burst", detail, now):
                flagged += 1
                _withhold_voucher(conn, rating_id, detail, now)
    return flagged


def _withhold_voucher(conn: sa.Connection, rating_id: int, reason: str, now: datetime) -> None:
    """A voucher issued before its rating was flagged, and not yet used, is revoked."""
    revoked = conn.execute(
        sa.update(vouchers)
        .where(vouchers.c.rating_id == rating_id, vouchers.c.state == "issued")
        .values(state="revoked", revoked_at=now, revoke_reason=f"flagged: {reason}"[:255])
        .returning(vouchers.c.id)
    ).scalars()
    for voucher_id in revoked:
        audit.write(
            conn,
            audit.SYSTEM,
            "revoked",
            "voucher",
            int(voucher_id),
            now,
            before={"state": "issued"},
            after={"state": "revoked"},
            reason=reason,
        )


def decide(
    conn: sa.Connection, actor: Actor, flag_id: int, *, confirmed: bool, note: str, now: datetime
) -> Any:
    """A reviewer confirms (the rating stays out) or clears (it counts again) a flag. The
    flag's row as it was."""
    require_decider(actor)
    flag = conn.execute(sa.select(flags).where(flags.c.id == flag_id)).first()
    if flag is None:
        raise LookupError(f"no flag {flag_id}")
    verdict = "confirmed" if confirmed else "cleared"
    done = conn.execute(
        sa.update(flags)
        .where(flags.c.id == flag_id, flags.c.state == "pending")
        .values(state=verdict, decided_by=actor.name, decided_at=now, note=note)
    )
    if done.rowcount != 1:
        raise NotPending(f"the flag was {flag.state} already")
    if not confirmed:
        still = conn.execute(
            sa.select(flags.c.id).where(
                flags.c.rating_id == flag.rating_id, flags.c.state != "cleared"
            )
        ).first()
        if still is None:  # every flag of the rating cleared: it counts again
            conn.execute(
                sa.update(ratings).where(ratings.c.id == flag.rating_id).values(flagged=False)
            )
            rollups.mark_case(conn, flag.rating_id)
            upstream.enqueue(conn, flag.rating_id, "counts", now)
    audit.write(
        conn,
        actor,
        verdict,
        "flag",
        flag_id,
        now,
        before={"state": "pending"},
        after={"state": verdict},
        reason=note,
    )
    return flag
