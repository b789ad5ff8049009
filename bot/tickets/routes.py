"""The closed loop over HTTP: tickets, appeals, fraud flags, staff contacts and the audit log.

Every act answers the ticket as it now is. Refusals: another department's ticket 403, unknown id
404, an act the ticket's state does not allow 409 naming the state, a bad field 422.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlmodel import Session as DbSession
from starlette.concurrency import run_in_threadpool

from bot.results.counting import local_day
from bot.results.stats import BadPeriod
from bot.runtime import Runtime
from bot.tickets import acts, appeals, figures, flags, publishing, queues
from bot.tickets.refusals import REFUSALS, status_of
from bot.tickets.rules import Rules, rules_for
from bot.tickets.views import appeal_view, shown_ticket, ticket_summary
from bot.web import audit
from bot.web.audit import Actor
from bot.web.auth import require_actor
from bot.web.deps import RuntimeDep, in_transaction
from bot.web.limits import Moment
from bot.web.problems import API_ERRORS, errors
from storage.privacy import InvalidPhone, normalize_phone
from storage.tables import appeals as appeals_table
from storage.tables import flags as flags_table
from storage.tables import staff_contacts

router = APIRouter(prefix="/api/v1", responses=API_ERRORS)

# A row id in a path: larger numbers are no row (and would overflow PostgreSQL's integer).
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]

Words = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=acts.MAX_TEXT)
]
Department = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]

Staff = Annotated[Actor, require_actor("department", "supervisor", "reviewer")]
Supervisor = Annotated[Actor, require_actor("supervisor")]
Reviewer = Annotated[Actor, require_actor("reviewer")]
Auditor = Annotated[Actor, require_actor("supervisor", "reviewer")]
Admin = Annotated[Actor, require_actor()]

T = TypeVar("T")


def _refusal(exc: Exception) -> HTTPException:
    """An act's refusal as the HTTP answer that says it."""
    return HTTPException(status_of(exc), str(exc))


async def _in_transaction(rt: Runtime, act: Callable[[sa.Connection, datetime], T]) -> T:
    """Run ``act`` in one transaction off the event loop; its refusals as HTTP answers."""
    try:
        return await in_transaction(rt, act)
    except REFUSALS as exc:
        raise _refusal(exc) from exc


def _shown(rt: Runtime, actor: Actor, ticket_id: int) -> dict[str, Any]:
    with DbSession(rt.db) as db:
        return shown_ticket(db, actor, ticket_id, rt.clock())


async def _show(rt: Runtime, actor: Actor, ticket_id: int) -> dict[str, Any]:
    try:
        return await run_in_threadpool(_shown, rt, actor, ticket_id)
    except REFUSALS as exc:
        raise _refusal(exc) from exc


# --- tickets --------------------------------------------------------------------------------


@router.get("/tickets")
def list_tickets(
    rt: RuntimeDep,
    actor: Staff,
    state: Literal["open", "acknowledged", "responded", "appealed", "closed"] | None = None,
    department: Annotated[str | None, Query(max_length=100)] = None,
    tier: Annotated[str | None, Query(max_length=32)] = None,
    overdue: bool | None = None,
    since: Annotated[Moment | None, Query(alias="from")] = None,
    until: Annotated[Moment | None, Query(alias="to")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Tickets by deadline, filtered; a department sees its own departments' only. ``from`` and
    ``to`` bound when the ticket opened."""
    now = rt.clock()
    wanted = queues.TicketFilter(
        state=state, department=department, tier=tier, overdue=overdue, since=since, until=until
    )
    with rt.db.connect() as conn:
        found = queues.ticket_page(conn, actor, wanted, now, page=page, page_size=page_size)
    return {
        "total": found.total,
        "page": page,
        "page_size": page_size,
        "items": [ticket_summary(row, now) for row in found.rows],
    }


@router.get("/tickets/{ticket_id}", responses=errors(404))
async def get_ticket(ticket_id: RowId, rt: RuntimeDep, actor: Staff) -> dict[str, Any]:
    """The ticket, its rating, its case and its timeline."""
    return await _show(rt, actor, ticket_id)


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Words


@router.post("/tickets/{ticket_id}/acknowledge", responses=errors(404, 409))
async def acknowledge(
    ticket_id: RowId, body: AcknowledgeIn, rt: RuntimeDep, actor: Staff
) -> dict[str, Any]:
    """The department verified the review with the citizen (核实)."""
    await _in_transaction(
        rt, lambda conn, now: acts.acknowledge(conn, actor, ticket_id, body.note, now)
    )
    return await _show(rt, actor, ticket_id)


class RespondIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["rectified", "explained"]
    text: Words


@router.post("/tickets/{ticket_id}/respond", responses=errors(404, 409))
async def respond(
    ticket_id: RowId, body: RespondIn, rt: RuntimeDep, actor: Staff
) -> dict[str, Any]:
    """Rectified (立行立改 / 限期整改, with the measures) or explained (解释说明): the citizen is
    told and asked to rate the case again."""
    rules = _rules(rt)
    await _in_transaction(
        rt,
        lambda conn, now: acts.respond(conn, actor, rules, ticket_id, body.outcome, body.text, now),
    )
    return await _show(rt, actor, ticket_id)


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ground: Literal["malicious", "untrue", "not_ours"]
    statement: Words


@router.post("/tickets/{ticket_id}/appeal", responses=errors(404, 409))
async def appeal(ticket_id: RowId, body: AppealIn, rt: RuntimeDep, actor: Staff) -> dict[str, Any]:
    """The department appeals the review (申诉复核); the deadline pauses."""
    await _in_transaction(
        rt,
        lambda conn, now: acts.appeal(conn, actor, ticket_id, body.ground, body.statement, now),
    )
    return await _show(rt, actor, ticket_id)


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    department: Department | None


@router.post("/tickets/{ticket_id}/assign", responses=errors(404, 409))
async def assign(
    ticket_id: RowId, body: AssignIn, rt: RuntimeDep, actor: Supervisor
) -> dict[str, Any]:
    """Give the ticket to a department (``null``: back to triage)."""
    await _in_transaction(
        rt, lambda conn, now: acts.assign(conn, actor, ticket_id, body.department, now)
    )
    return await _show(rt, actor, ticket_id)


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: Annotated[str, StringConstraints(min_length=1, max_length=32)]


@router.post("/tickets/{ticket_id}/tier", responses=errors(404, 409))
async def change_tier(
    ticket_id: RowId, body: TierIn, rt: RuntimeDep, actor: Supervisor
) -> dict[str, Any]:
    """Change the tier; the deadline is computed again from the opening."""
    rules = _rules(rt)
    await _in_transaction(
        rt, lambda conn, now: acts.change_tier(conn, actor, rules, ticket_id, body.tier, now)
    )
    return await _show(rt, actor, ticket_id)


@router.post("/tickets/{ticket_id}/contact", responses=errors(404, 409))
async def reveal_contact(
    ticket_id: RowId, rt: RuntimeDep, actor: Staff, response: Response
) -> dict[str, str]:
    """The citizen's phone number for the callback (回访), in clear, once: audited, not cached."""
    response.headers["Cache-Control"] = "no-store"
    phone = await _in_transaction(
        rt, lambda conn, now: acts.reveal_contact(conn, actor, rt.privacy, ticket_id, now)
    )
    return {"phone": phone}


class PublishCaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Words


@router.post("/tickets/{ticket_id}/publish", status_code=201, responses=errors(404, 409))
async def publish_case(
    ticket_id: RowId, body: PublishCaseIn, rt: RuntimeDep, actor: Supervisor
) -> dict[str, Any]:
    """Publish a rectified case on the public results page with the text the public reads (no
    phone, id-card or case numbers: a 422 says what it found). Once per ticket."""

    def publish(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        publishing.publish_case(conn, actor, ticket_id, body.text, now)
        return _publication(conn, ticket_id)

    return await _in_transaction(rt, publish)


@router.post("/tickets/{ticket_id}/unpublish", responses=errors(404, 409))
async def withdraw_case(ticket_id: RowId, rt: RuntimeDep, actor: Supervisor) -> dict[str, Any]:
    """Take a published case off the public page; the publication is kept, marked withdrawn."""

    def withdraw(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        publishing.withdraw_case(conn, actor, ticket_id, now)
        return _publication(conn, ticket_id)

    return await _in_transaction(rt, withdraw)


def _publication(conn: sa.Connection, ticket_id: int) -> dict[str, Any]:
    return {"ticket_id": ticket_id, **(publishing.publication(conn, ticket_id) or {})}


def _rules(rt: Runtime) -> Rules:
    return rules_for(rt.settings.tickets_file, rt.settings.timezone)


# --- appeals and flags ------------------------------------------------------------------------


@router.get("/appeals")
def list_appeals(
    rt: RuntimeDep,
    actor: Reviewer,
    state: Literal["pending", "upheld", "rejected"] | None = "pending",
) -> dict[str, Any]:
    """Appeals, oldest first (by default the pending ones, for the reviewers' queue)."""
    with rt.db.connect() as conn:
        return {"items": [appeal_view(row) for row in queues.appeal_rows(conn, state)]}


class DecideAppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upheld: bool
    note: Words
    department: Department | None = None  # not_ours upheld: the department it goes to


@router.post("/appeals/{appeal_id}/decide", responses=errors(404, 409))
async def decide_appeal(
    appeal_id: RowId, body: DecideAppealIn, rt: RuntimeDep, actor: Reviewer
) -> dict[str, Any]:
    rules = _rules(rt)
    await _in_transaction(
        rt,
        lambda conn, now: appeals.decide(
            conn,
            actor,
            rules,
            appeal_id,
            upheld=body.upheld,
            note=body.note,
            now=now,
            reassign_to=body.department,
        ),
    )
    with rt.db.connect() as conn:
        row = conn.execute(sa.select(appeals_table).where(appeals_table.c.id == appeal_id)).one()
    return appeal_view(row)


@router.get("/flags")
def list_flags(
    rt: RuntimeDep,
    actor: Reviewer,
    state: Literal["pending", "confirmed", "cleared"] | None = "pending",
) -> dict[str, Any]:
    """Fraud flags with the rule that fired, oldest first."""
    with rt.db.connect() as conn:
        return {"items": queues.flag_rows(conn, state)}


class DecideFlagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirmed: bool
    note: Words


@router.post("/flags/{flag_id}/decide", responses=errors(404, 409))
async def decide_flag(
    flag_id: RowId, body: DecideFlagIn, rt: RuntimeDep, actor: Reviewer
) -> dict[str, Any]:
    """Confirmed: the rating stays out. Cleared: it counts again, and earns its voucher."""
    await _in_transaction(
        rt,
        lambda conn, now: flags.decide(
            conn, actor, flag_id, confirmed=body.confirmed, note=body.note, now=now
        ),
    )
    with rt.db.connect() as conn:
        row = conn.execute(sa.select(flags_table).where(flags_table.c.id == flag_id)).mappings()
        return dict(row.one())


class StaffContactsIn(BaseModel):
    """The whole list of staff contacts (it replaces the one before). Kept only as keyed
    hashes: the numbers themselves are not stored."""

    model_config = ConfigDict(extra="forbid")
    phones: list[Annotated[str, StringConstraints(max_length=32)]] = Field(
        default=[], max_length=10_000
    )
    wechat_openids: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        default=[], max_length=10_000
    )
    telegram_chat_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=32)]] = Field(
        default=[], max_length=10_000
    )


@router.put("/staff-contacts")
async def put_staff_contacts(body: StaffContactsIn, rt: RuntimeDep, actor: Admin) -> dict[str, int]:
    try:
        phones = [normalize_phone(phone) for phone in body.phones]
    except InvalidPhone as exc:
        raise HTTPException(422, str(exc)) from exc
    hashes = sorted(
        {
            rt.privacy.contact_hash(contact)
            for contact in (*phones, *body.wechat_openids, *body.telegram_chat_ids)
        }
    )

    def replace(conn: sa.Connection, now: datetime) -> int:
        before = conn.execute(sa.select(sa.func.count()).select_from(staff_contacts)).scalar()
        conn.execute(sa.delete(staff_contacts))
        if hashes:
            conn.execute(
                sa.insert(staff_contacts), [{"contact_hash": h, "created_at": now} for h in hashes]
            )
        audit.write(
            conn,
            actor,
            "replaced",
            "staff_contacts",
            0,
            now,
            before={"count": before},
            after={"count": len(hashes)},
        )
        return len(hashes)

    return {"contacts": await _in_transaction(rt, replace)}


# --- the audit log --------------------------------------------------------------------------


@router.get("/audit")
def audit_log(
    rt: RuntimeDep,
    actor: Auditor,
    entity: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    since: Annotated[Moment | None, Query(alias="from")] = None,
    until: Annotated[Moment | None, Query(alias="to")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Audit entries, oldest first."""
    with rt.db.connect() as conn:
        items = audit.entries(
            conn,
            entity=entity,
            entity_id=entity_id,
            since=since,
            until=until,
            limit=page_size,
            offset=(page - 1) * page_size,
        )
    return {"page": page, "page_size": page_size, "items": items}


# --- the closed loop in figures ---------------------------------------------------------------


@router.get("/stats/tickets")
def ticket_stats(
    rt: RuntimeDep,
    actor: Staff,
    since: Annotated[date | None, Query(alias="from")] = None,
    until: Annotated[date | None, Query(alias="to")] = None,
    department: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    district: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> dict[str, Any]:
    """The tickets opened in local days ``from``..``to`` (default: this month so far) by state,
    those overdue now by department, the appeals decided in the range by verdict."""
    seen = actor.departments_seen
    if seen is not None and department is not None and department not in seen:
        raise HTTPException(403, f"not a department of this key: {department}")
    now = rt.clock()
    today = local_day(now, rt.settings.timezone)
    first, last = since or today.replace(day=1), until or today
    where = figures.Where(actor, department=department, district=district)
    try:
        with rt.db.connect() as conn:
            found = figures.ticket_figures(
                conn, where, first, last, zone=rt.settings.timezone, now=now
            )
    except BadPeriod as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"from": first.isoformat(), "to": last.isoformat(), **found.as_json()}
