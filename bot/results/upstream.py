"""The push upward (上报): every counted rating, every re-rating and every change of whether a
rating counts goes to the provincial platform at ``RATEBOT_UPSTREAM_URL``.

- :func:`enqueue` writes one outbox row (``upstream_outbox``) in the transaction of the change
  it reports — the rating's own, or the act that changed whether it counts — so a push exists
  exactly when its change was committed. The row is a snapshot: the body as it will be sent.
  Each push of a rating is a new version (1, 2, …): the rating's row is locked first, so two
  changes of one rating at once get two versions, never one twice.
- :func:`deliver_due`, run by the worker, claims due rows (a conditional UPDATE, ``FOR UPDATE
  SKIP LOCKED`` on PostgreSQL) for a lease, POSTs each body signed with HMAC-SHA256, and settles
  it: ``sent``, or tried again later with back-off, or ``dead`` after the last attempt (shown by
  ``GET /api/v1/upstream?state=dead``, revived by ``POST /api/v1/upstream/{id}/retry``). A worker
  that died mid-send leaves its rows ``sending``; another worker sends them again, with the same
  ``Idempotency-Key``, once the lease is over. A rating's versions are sent in order: one waits
  until every earlier version of its rating was sent.

A rating nobody gave is never pushed: an in-progress rating, or one with no case (no 办件编号),
is never enqueued, and a rating that never counted is not told to the platform at all. With no
URL configured nothing is written and nothing is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from bot import metrics
from bot.results.counting import FINISHED
from bot.results.national import TIME_FORMAT, Target, load_codes, national_record
from bot.runtime import UPSTREAM, Runtime
from bot.settings import Settings
from bot.web import audit
from bot.web.audit import Actor
from storage.tables import ratings, upstream_outbox

Reason = Literal["rating", "rerating", "counts"]
SIGNATURE_HEADER = "X-Ratebot-Signature"
BATCH = 20  # rows claimed, and sent at once, per round
ROUNDS = 5  # rounds per worker pass
LEASE_MARGIN = timedelta(seconds=60)  # beyond the request timeout, before a claim lapses
LONGEST_WAIT = timedelta(hours=6)  # the back-off stops doubling here

# Which code tables each profile writes (bot/results/codes/): the national standard's table A.8
# codes 1 = 非常满意, the provincial interfaces 5 = 非常满意.
CODES: dict[str, Target] = {"national": "gbt39046", "provincial": "provincial"}
# The provincial interfaces' field for each table-9 field they carry, as a public client of a
# provincial 好差评 interface writes them (Epoint's "addEvaluateRecord" push: projectno, pf,
# satisfaction, assessTime as yyyy-MM-dd HH:mm:ss, assessNumber, writingEvaluation, areacode).
# NOT CONFIRMED from the interface specification: check with the province's document. The
# level's name and the masked 评价人 have no field there and are left out.
PROVINCIAL_FIELDS = {
    "办件编号": "projectno",
    "评价渠道": "pf",
    "评价时间": "assessTime",
    "评价次数": "assessNumber",
    "满意度代码": "satisfaction",
    "文字评价": "writingEvaluation",
    "行政区划": "areacode",
}
PROVINCIAL_TIME = "%Y-%m-%d %H:%M:%S"


def enqueue(conn: sa.Connection, rating_id: int, reason: Reason, now: datetime) -> int | None:
    """Write the push of ``rating_id`` as it now is, in ``conn``'s transaction: ``rating`` (a
    first rating finished), ``rerating`` (a case's second rating finished) or ``counts``
    (whether it counts changed: an appeal upheld, a fraud flag raised or cleared). The new
    row's id, or ``None`` when there is nothing to tell: no URL configured (returns before any
    query), the rating is in progress or has no case, it never counted and was never told, or
    the platform already has this very snapshot."""
    settings: Settings | None = conn.get_execution_options().get(UPSTREAM)
    if settings is None:
        return None
    rating = conn.execute(
        sa.select(ratings.c.status, ratings.c.record_id, ratings.c.excluded_at, ratings.c.flagged)
        .where(ratings.c.id == rating_id)
        .with_for_update()  # one version at a time per rating (SQLite has one writer anyway)
    ).first()
    if rating is None or rating.status not in FINISHED or rating.record_id is None:
        return None
    not_counted = "excluded" if rating.excluded_at else "flagged" if rating.flagged else None
    latest = conn.execute(
        sa.select(upstream_outbox.c.version, upstream_outbox.c.body)
        .where(upstream_outbox.c.rating_id == rating_id)
        .order_by(upstream_outbox.c.version.desc())
        .limit(1)
    ).first()
    if latest is None and not_counted:
        return None  # the platform never heard of it: nothing to take back
    fields = profile_fields(
        national_record(
            conn,
            rating_id,
            zone=settings.timezone,
            codes=load_codes(CODES[settings.upstream_profile]),
        ),
        settings.upstream_profile,
    )
    counting = {"counts": not_counted is None, "not_counted": not_counted}
    if latest is not None and _told(latest.body) == (fields, counting):
        return None
    version = latest.version + 1 if latest is not None else 1
    meta = {"rating_id": rating_id, "version": version, "reason": reason, **counting}
    body = {**fields, "ratebot": meta}
    item_id: int = conn.execute(
        sa.insert(upstream_outbox)
        .values(
            rating_id=rating_id,
            version=version,
            reason=reason,
            body=body,
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .returning(upstream_outbox.c.id)
    ).scalar_one()
    return item_id


def profile_fields(record: dict[str, str], profile: str) -> dict[str, str]:
    """A table-9 record (``bot.results.national``) under the profile's field names."""
    if profile == "national":
        return record
    fields = {name: record[field] for field, name in PROVINCIAL_FIELDS.items()}
    submitted = fields["assessTime"]
    if submitted:
        fields["assessTime"] = datetime.strptime(submitted, TIME_FORMAT).strftime(PROVINCIAL_TIME)
    return fields


def _told(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a body told the platform, its version aside: the fields, and whether it counted."""
    fields = {key: value for key, value in body.items() if key != "ratebot"}
    meta = body["ratebot"]
    return fields, {"counts": meta["counts"], "not_counted": meta["not_counted"]}


# --- delivery ------------------------------------------------------------------------------------


def body_bytes(body: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact UTF-8 JSON."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signature(secret: str, content: bytes) -> str:
    """The ``X-Ratebot-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    digest = hmac.new(secret.encode("utf-8"), content, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def backoff(settings: Settings, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: the first back-off, doubled each time,
    at most six hours."""
    wait = timedelta(seconds=settings.upstream_backoff_seconds * 2 ** (attempts - 1))
    return min(wait, LONGEST_WAIT)


@dataclass(frozen=True)
class Claimed:
    id: int
    rating_id: int
    version: int
    body: dict[str, Any]
    attempts: int  # counting this one: also the claim's fencing token

    @property
    def idempotency_key(self) -> str:
        return f"{self.rating_id}-{self.version}"


async def deliver_due(rt: Runtime) -> int:
    """Send what is due, in rounds of up to ``BATCH`` rows at once; the number of pushes tried.
    Each round claims its rows at the time it starts (``rt.clock()``), so a long worker pass
    never claims with a stale lease."""
    settings = rt.settings
    if not settings.upstream_url:
        return 0
    tried = 0
    client: httpx.AsyncClient | None = None
    try:
        for _ in range(ROUNDS):
            items = await run_in_threadpool(_claim, rt, rt.clock())
            if not items:
                break
            client = client or httpx.AsyncClient(timeout=settings.upstream_timeout_seconds)
            errors = await asyncio.gather(*(_post(client, settings, item) for item in items))
            await run_in_threadpool(_settle, rt, list(zip(items, errors, strict=True)), rt.clock())
            tried += len(items)
            if len(items) < BATCH:
                break
    finally:
        if client is not None:
            await client.aclose()
    await run_in_threadpool(_count_dead, rt)
    return tried


def _claim(rt: Runtime, now: datetime) -> list[Claimed]:
    """Take up to ``BATCH`` due rows — pending ones whose time came, and ``sending`` ones whose
    lease lapsed (their worker died) — for the request timeout and a margin."""
    due = sa.and_(
        upstream_outbox.c.state.in_(("pending", "sending")),
        upstream_outbox.c.next_attempt_at <= now,
    )
    earlier = upstream_outbox.alias("earlier")
    # A rating's versions go in order: a later one waits while an earlier one is not sent (the
    # platform must never get "excluded" before the rating it excludes).
    in_order = ~sa.exists().where(
        earlier.c.rating_id == upstream_outbox.c.rating_id,
        earlier.c.version < upstream_outbox.c.version,
        earlier.c.state != "sent",
    )
    oldest = (
        sa.select(upstream_outbox.c.id)
        .where(due, in_order)
        .order_by(upstream_outbox.c.next_attempt_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
        # A CTE, run once: as ``id IN (subquery)`` PostgreSQL may run the subquery again and
        # claim past the limit (one worker took 60 rows of a batch of 20 in the tests).
        .cte("oldest")
    )
    lease = timedelta(seconds=rt.settings.upstream_timeout_seconds) + LEASE_MARGIN
    with rt.db.begin() as conn:
        rows = conn.execute(
            sa.update(upstream_outbox)
            .where(upstream_outbox.c.id == oldest.c.id, due)
            .values(
                state="sending",
                attempts=upstream_outbox.c.attempts + 1,
                next_attempt_at=now + lease,
            )
            .returning(
                upstream_outbox.c.id,
                upstream_outbox.c.rating_id,
                upstream_outbox.c.version,
                upstream_outbox.c.body,
                upstream_outbox.c.attempts,
            )
        ).all()
    return [Claimed(*row) for row in rows]


async def _post(client: httpx.AsyncClient, settings: Settings, item: Claimed) -> str | None:
    """POST one body; ``None`` when the platform took it (2xx), else what went wrong."""
    assert settings.upstream_url and settings.upstream_secret
    content = body_bytes(item.body)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        SIGNATURE_HEADER: signature(settings.upstream_secret, content),
        "Idempotency-Key": item.idempotency_key,
    }
    try:
        # The whole request, not each phase: a platform that trickles its answer still ends
        # inside the lease.
        async with asyncio.timeout(settings.upstream_timeout_seconds):
            response = await client.post(settings.upstream_url, content=content, headers=headers)
    except (TimeoutError, httpx.TimeoutException):
        return f"timed out after {settings.upstream_timeout_seconds:g} s"
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return f"{type(exc).__name__}: {exc}"[:255]
    if response.is_success:
        return None
    return f"HTTP {response.status_code}: {response.text[:200]}"[:255]


def _settle(rt: Runtime, outcomes: list[tuple[Claimed, str | None]], now: datetime) -> None:
    """Record each attempt, on the row only while this worker's claim holds it."""
    settings = rt.settings
    with rt.db.begin() as conn:
        for item, error in outcomes:
            changes: dict[str, Any]
            if error is None:
                changes = {"state": "sent", "sent_at": now, "next_attempt_at": None}
            elif item.attempts >= settings.upstream_attempts:
                changes = {"state": "dead", "next_attempt_at": None}
            else:
                changes = {
                    "state": "pending",
                    "next_attempt_at": now + backoff(settings, item.attempts),
                }
            settled = conn.execute(
                sa.update(upstream_outbox)
                .where(
                    upstream_outbox.c.id == item.id,
                    upstream_outbox.c.state == "sending",
                    upstream_outbox.c.attempts == item.attempts,
                )
                .values(last_error=error, **changes)
            )
            if settled.rowcount != 1:
                continue  # the lease lapsed and another worker has it now
            if error is None:
                metrics.UPSTREAM_SENT.inc()
            else:
                metrics.UPSTREAM_FAILURES.inc()


def _count_dead(rt: Runtime) -> None:
    with rt.db.connect() as conn:
        dead = conn.execute(
            sa.select(sa.func.count())
            .select_from(upstream_outbox)
            .where(upstream_outbox.c.state == "dead")
        ).scalar_one()
    metrics.UPSTREAM_DEAD.set(dead)


def retry(conn: sa.Connection, actor: Actor, item_id: int, now: datetime) -> None:
    """A dead item tried again from its first attempt, now, with an audit entry in the same
    transaction. ``LookupError`` for no such item, :class:`NotDead` for one that is not dead."""
    item = conn.execute(
        sa.select(upstream_outbox).where(upstream_outbox.c.id == item_id).with_for_update()
    ).first()
    if item is None:
        raise LookupError(f"no upstream item {item_id}")
    revived = conn.execute(
        sa.update(upstream_outbox)
        .where(upstream_outbox.c.id == item_id, upstream_outbox.c.state == "dead")
        .values(state="pending", attempts=0, next_attempt_at=now)
    )
    if revived.rowcount != 1:
        raise NotDead(f"the item is {item.state}: only a dead item is retried")
    audit.write(
        conn,
        actor,
        "retry",
        "upstream",
        item_id,
        now,
        before={"state": "dead", "attempts": item.attempts, "last_error": item.last_error},
        after={"state": "pending", "attempts": 0},
    )


class NotDead(Exception):
    """Only a dead item is retried (409)."""
