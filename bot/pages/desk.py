"""The department desk (``/desk``): the tickets of my departments (a supervisor's: all, with the
triage queue), one ticket with its case, rating, recordings and timeline, and the forms that act
on it. Every act calls the same function as the JSON API (``bot.tickets``) as the signed-in
account, so the guard, the state rules and the audit row are the API's.

An act that worked answers 303 back to the ticket (so a reload does not repeat it); an act the
rules refuse answers the ticket page again with the reason and the refusal's status (403, 409,
422). The citizen's number for the callback is shown once, on the answer to its own POST, never
cached and never kept in the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session as DbSession
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from bot.pages.desk_forms import (
    NOT_FOUND,
    choice_of,
    department_of,
    known_departments,
    labels,
    refusal_message,
    words_of,
)
from bot.pages.web import PageError, csrf_form, page_locale, page_user, render
from bot.runtime import Runtime
from bot.tickets import acts, guard, publishing, queues
from bot.tickets.refusals import REFUSALS, status_of
from bot.tickets.rules import rules_for
from bot.tickets.states import ALLOWED, Act, State
from bot.tickets.views import shown_ticket, ticket_summary
from bot.web.audit import Actor
from bot.web.deps import get_runtime, in_transaction
from locales import N_
from storage.tables import ratings, recordings, records, tickets

router = APIRouter()

PAGE_SIZE = 25
TRIAGE_SHOWN = 10  # the triage queue's first tickets, above a supervisor's desk
RECORDING_BYTES = 20 * 2**20  # a spoken answer of a few minutes is well under this
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
DeskUser = Annotated[Actor, page_user("department", "supervisor")]
# A reviewer reads a ticket (to decide its appeal) but acts on none.
TicketReader = Annotated[Actor, page_user("department", "supervisor", "reviewer")]
DeskForm = Annotated[FormData, Depends(csrf_form)]

# What an act that worked says on the ticket it leads back to (``?done=``).
DONE = {
    "acknowledge": N_("page.ticket.done.acknowledge"),
    "respond": N_("page.ticket.done.respond"),
    "appeal": N_("page.ticket.done.appeal"),
    "assign": N_("page.ticket.done.assign"),
    "tier": N_("page.ticket.done.tier"),
    "publish": N_("page.ticket.done.publish"),
}
OTHER_DEPARTMENT = N_("page.ticket.other_department")
RECORDING_UNAVAILABLE = N_("page.ticket.recording_unavailable")


# --- the list -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeskQuery:
    """The desk's filters as the address carries them (so a filtered page can be linked)."""

    state: str | None = None
    department: str | None = None
    overdue: bool = False
    due_today: bool = False
    triage: bool = False
    page: int = 1

    def filter(self, now: datetime, zone: ZoneInfo) -> queues.TicketFilter:
        return queues.TicketFilter(
            state=self.state,
            department=self.department,
            overdue=True if self.overdue else None,
            due_by=queues.end_of_today(now, zone) if self.due_today else None,
            unassigned=self.triage,
        )

    def url(self, **changes: Any) -> str:
        """This list's address with ``changes`` (the page goes back to 1 unless given)."""
        values: dict[str, Any] = {
            "state": self.state,
            "department": self.department,
            "overdue": self.overdue,
            "due_today": self.due_today,
            "triage": self.triage,
            "page": 1,
            **changes,
        }
        query = {
            key: ("1" if value is True else str(value))
            for key, value in values.items()
            if value not in (None, False, "") and not (key == "page" and value == 1)
        }
        return "/desk" + (f"?{urlencode(query)}" if query else "")


@dataclass(frozen=True, slots=True)
class DeskPage:
    total: int
    items: list[dict[str, Any]]
    counts: dict[str, int]
    departments: list[str]
    triage: tuple[int, list[dict[str, Any]]] | None  # a supervisor's: how many, the first
    pages: int


def _cases_of(conn: sa.Connection, rows: list[Any]) -> dict[int, Any]:
    """The item, hall and window of each ticket's case, and its rating's level, by ticket."""
    ids = [row.id for row in rows]
    if not ids:
        return {}
    query = (
        sa.select(
            tickets.c.id,
            records.c.item_name,
            records.c.hall,
            records.c.window,
            ratings.c.level,
        )
        .select_from(tickets)
        .join(ratings, ratings.c.id == tickets.c.rating_id)
        .outerjoin(records, records.c.id == tickets.c.record_id)
        .where(tickets.c.id.in_(ids))
    )
    return {row.id: row for row in conn.execute(query)}


def _listed(rows: list[Any], conn: sa.Connection, now: datetime, zone: ZoneInfo) -> list[Any]:
    cases = _cases_of(conn, rows)
    return [
        {
            **ticket_summary(row, now),
            "due_today": queues.due_today(row.state, row.due_at, now, zone),
            "case": cases.get(row.id),
        }
        for row in rows
    ]


def desk_page(rt: Runtime, actor: Actor, wanted: DeskQuery) -> DeskPage:
    """The desk's data: one page of the tickets, the counts by state, the departments to filter
    by, and for a supervisor the triage queue (its first tickets)."""
    now, zone = rt.clock(), rt.settings.zone
    chosen = wanted.filter(now, zone)
    with rt.db.connect() as conn:
        found = queues.ticket_page(
            conn, actor, chosen, now, page=wanted.page, page_size=PAGE_SIZE, work_first=True
        )
        triage = None
        if actor.departments_seen is None and not wanted.triage:
            untriaged = queues.ticket_page(
                conn,
                actor,
                queues.TicketFilter(unassigned=True),
                now,
                page=1,
                page_size=TRIAGE_SHOWN,
                work_first=True,
            )
            triage = (untriaged.total, _listed(untriaged.rows, conn, now, zone))
        return DeskPage(
            total=found.total,
            items=_listed(found.rows, conn, now, zone),
            counts=queues.counts_by_state(conn, actor, chosen, now),
            departments=known_departments(conn, actor),
            triage=triage,
            pages=max(1, -(-found.total // PAGE_SIZE)),
        )


@router.get("/desk")
async def desk(
    request: Request,
    actor: DeskUser,
    state: Literal["open", "acknowledged", "responded", "appealed", "closed"] | None = None,
    department: Annotated[str | None, Query(max_length=100)] = None,
    overdue: bool = False,
    due_today: bool = False,
    triage: bool = False,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """My departments' tickets: the ones waiting for us first, by deadline; badges for overdue
    and due today; counts by state; filters and pages."""
    rt = get_runtime(request)
    wanted = DeskQuery(
        state=state,
        department=department or None,
        overdue=overdue,
        due_today=due_today,
        triage=triage and actor.departments_seen is None,
        page=page,
    )
    found = await run_in_threadpool(desk_page, rt, actor, wanted)
    return render(
        request,
        "desk.html",
        {"desk": found, "wanted": wanted, "states": list(State), **labels(request, rt)},
    )


# --- one ticket -----------------------------------------------------------------------------


def possible_acts(actor: Actor, ticket: dict[str, Any]) -> set[str]:
    """The acts whose forms the ticket page shows ``actor``: those the guard allows and the
    ticket's state permits (the act itself checks both again)."""
    state = State(ticket["state"])
    possible = set()
    for act in Act:
        try:
            guard.check(actor, act, ticket["department"])
        except guard.Refused:
            continue
        if state in ALLOWED[act]:
            possible.add(str(act))
    if ticket["appeal"] is not None:
        possible.discard(Act.APPEAL)  # one appeal per ticket
    if actor.role in publishing.PUBLISHERS and ticket["outcome"] == publishing.PUBLISHABLE_OUTCOME:
        possible.add("publish")
    return possible


def ticket_page_data(rt: Runtime, actor: Actor, ticket_id: int) -> dict[str, Any]:
    """What the ticket page shows: the ticket as the API shows it, the acts possible, the tiers
    and departments its forms offer, and its publication."""
    with DbSession(rt.db) as db:
        try:
            ticket = shown_ticket(db, actor, ticket_id, rt.clock())
        except acts.TicketNotFound as exc:
            raise PageError(404, NOT_FOUND) from exc
        except guard.Refused as exc:
            raise PageError(403, OTHER_DEPARTMENT) from exc
        conn = db.connection()
        publication = publishing.publication(conn, ticket_id)
        may = possible_acts(actor, ticket)
        if publication is not None:
            may.discard("publish")
        starting = publishing.starting_text(conn, ticket_id) if "publish" in may else ""
        departments = known_departments(conn, actor) if "assign" in may else []
    rules = rules_for(rt.settings.tickets_file, rt.settings.timezone)
    return {
        "ticket": ticket,
        "may": may,
        "tiers": list(rules.rules.tiers),
        "departments": departments,
        "publication": publication,
        "starting_text": starting,
        "due_today": queues.due_today(
            ticket["state"], ticket["due_at"], rt.clock(), rt.settings.zone
        ),
    }


async def ticket_response(
    request: Request,
    actor: Actor,
    ticket_id: int,
    *,
    status_code: int = 200,
    refusal: str | None = None,
    typed: dict[str, str] | None = None,
    phone: str | None = None,
) -> Response:
    rt = get_runtime(request)
    data = await run_in_threadpool(ticket_page_data, rt, actor, ticket_id)
    done = request.query_params.get("done")
    context = {
        **data,
        **labels(request, rt),
        "refusal": refusal,
        "typed": typed or {},
        "phone": phone,
        "done": DONE.get(done or ""),
    }
    # The page with the number in clear is not kept anywhere: no-store (render's default for a
    # signed-in page, said here so a change there cannot undo it).
    headers = {"Cache-Control": "no-store"} if phone is not None else None
    return render(request, "ticket.html", context, status_code=status_code, headers=headers)


@router.get("/desk/tickets/{ticket_id}")
async def ticket(request: Request, ticket_id: RowId, actor: TicketReader) -> Response:
    """The case, the rating (stars, dimensions, comment, complaint, recordings), the timeline,
    the deadline, and the forms for what the signed-in account may do now."""
    return await ticket_response(request, actor, ticket_id)


async def _act(
    request: Request,
    actor: Actor,
    ticket_id: int,
    form: FormData,
    what: str,
    act: Any,
) -> Response:
    """Carry out ``act`` (given the connection and now) for the form ``what``: back to the
    ticket on success, or the ticket page again with the reason it was refused."""
    rt = get_runtime(request)
    try:
        await in_transaction(rt, act)
    except REFUSALS as exc:
        if isinstance(exc, LookupError) and not isinstance(exc, acts.NoContact):
            raise PageError(404, NOT_FOUND) from exc
        typed = {key: value for key, value in form.items() if isinstance(value, str)}
        typed.pop("csrf_token", None)
        return await ticket_response(
            request,
            actor,
            ticket_id,
            status_code=status_of(exc),
            refusal=refusal_message(page_locale(request), exc),
            typed=typed,
        )
    return RedirectResponse(f"/desk/tickets/{ticket_id}?done={what}", status_code=303)


def _rules(request: Request) -> Any:
    settings = get_runtime(request).settings
    return rules_for(settings.tickets_file, settings.timezone)


@router.post("/desk/tickets/{ticket_id}/acknowledge")
async def acknowledge(
    request: Request, ticket_id: RowId, actor: DeskUser, form: DeskForm
) -> Response:
    """The department verified the review with the citizen (核实), with a note."""

    def act(conn: sa.Connection, now: datetime) -> None:
        acts.acknowledge(conn, actor, ticket_id, words_of(form, "note"), now)

    return await _act(request, actor, ticket_id, form, "acknowledge", act)


@router.post("/desk/tickets/{ticket_id}/respond")
async def respond(request: Request, ticket_id: RowId, actor: DeskUser, form: DeskForm) -> Response:
    """Rectified (with the measures) or explained: the citizen is told and asked to rate again."""
    rules = _rules(request)

    def act(conn: sa.Connection, now: datetime) -> None:
        outcome = choice_of(form, "outcome", acts.OUTCOMES)
        acts.respond(conn, actor, rules, ticket_id, outcome, words_of(form, "text"), now)

    return await _act(request, actor, ticket_id, form, "respond", act)


@router.post("/desk/tickets/{ticket_id}/appeal")
async def appeal(request: Request, ticket_id: RowId, actor: DeskUser, form: DeskForm) -> Response:
    """The department appeals the review (申诉) with its statement; the deadline pauses."""

    def act(conn: sa.Connection, now: datetime) -> None:
        ground = choice_of(form, "ground", acts.GROUNDS)
        acts.appeal(conn, actor, ticket_id, ground, words_of(form, "statement"), now)

    return await _act(request, actor, ticket_id, form, "appeal", act)


@router.post("/desk/tickets/{ticket_id}/assign")
async def assign(request: Request, ticket_id: RowId, actor: DeskUser, form: DeskForm) -> Response:
    """A supervisor gives the ticket to a department (empty: back to triage)."""

    def act(conn: sa.Connection, now: datetime) -> None:
        acts.assign(conn, actor, ticket_id, department_of(form), now)

    return await _act(request, actor, ticket_id, form, "assign", act)


@router.post("/desk/tickets/{ticket_id}/tier")
async def change_tier(
    request: Request, ticket_id: RowId, actor: DeskUser, form: DeskForm
) -> Response:
    """A supervisor changes the tier; the deadline is computed again from the opening."""
    rules = _rules(request)

    def act(conn: sa.Connection, now: datetime) -> None:
        tier = choice_of(form, "tier", list(rules.rules.tiers))
        acts.change_tier(conn, actor, rules, ticket_id, tier, now)

    return await _act(request, actor, ticket_id, form, "tier", act)


@router.post("/desk/tickets/{ticket_id}/publish")
async def publish(request: Request, ticket_id: RowId, actor: DeskUser, form: DeskForm) -> Response:
    """A supervisor publishes the rectified case on the public results page, with the text the
    public reads."""

    def act(conn: sa.Connection, now: datetime) -> None:
        text = form.get("text")
        publishing.publish_case(conn, actor, ticket_id, text if isinstance(text, str) else "", now)

    return await _act(request, actor, ticket_id, form, "publish", act)


@router.post("/desk/tickets/{ticket_id}/contact")
async def reveal_contact(
    request: Request, ticket_id: RowId, actor: DeskUser, form: DeskForm
) -> Response:
    """The citizen's phone number for the callback (回访): audited, shown on this answer only."""
    rt = get_runtime(request)

    def act(conn: sa.Connection, now: datetime) -> str:
        return acts.reveal_contact(conn, actor, rt.privacy, ticket_id, now)

    try:
        phone = await in_transaction(rt, act)
    except REFUSALS as exc:
        if isinstance(exc, LookupError) and not isinstance(exc, acts.NoContact):
            raise PageError(404, NOT_FOUND) from exc
        return await ticket_response(
            request,
            actor,
            ticket_id,
            status_code=status_of(exc),
            refusal=refusal_message(page_locale(request), exc),
        )
    return await ticket_response(request, actor, ticket_id, phone=phone)


# --- the phone recordings -------------------------------------------------------------------


def _recording_url(rt: Runtime, actor: Actor, ticket_id: int, answer: str) -> str:
    """The Twilio URL of the ticket's rating's recorded ``answer``, if ``actor`` may read the
    ticket."""
    with rt.db.connect() as conn:
        try:
            row = acts.load(conn, ticket_id)
            guard.check(actor, guard.READ, row.department)
        except acts.TicketNotFound as exc:
            raise PageError(404, NOT_FOUND) from exc
        except guard.Refused as exc:
            raise PageError(403, OTHER_DEPARTMENT) from exc
        url = conn.execute(
            sa.select(recordings.c.url).where(
                recordings.c.rating_id == row.rating_id, recordings.c.field == answer
            )
        ).scalar()
    if url is None:
        raise PageError(404, NOT_FOUND)
    return str(url)


def twilio_media(rt: Runtime, url: str) -> str | None:
    """The address to fetch a recording's MP3 from, if it is one of the Twilio account's (on
    api.twilio.com, or the Twilio-compatible API ratebot is pointed at): ratebot fetches nothing
    else on a page's behalf."""
    settings = rt.settings
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        return None
    hosts = {"api.twilio.com"}
    if settings.twilio_api_url:
        hosts.add(urlsplit(settings.twilio_api_url).netloc)
    parts = urlsplit(url)
    if parts.netloc not in hosts or f"/Accounts/{settings.twilio_account_sid}/" not in parts.path:
        return None
    return url if url.endswith((".mp3", ".wav")) else f"{url}.mp3"


@router.get("/desk/tickets/{ticket_id}/recordings/{answer}")
async def recording(
    request: Request,
    ticket_id: RowId,
    answer: Annotated[str, Path(max_length=32, pattern=r"^[a-z_]+$")],
    actor: TicketReader,
) -> Response:
    """A spoken answer of the ticket's rating, played in the page: fetched from the Twilio
    account that recorded it (Twilio keeps the audio; ratebot keeps its address), to whoever may
    read the ticket, and not cached."""
    rt = get_runtime(request)
    url = await run_in_threadpool(_recording_url, rt, actor, ticket_id, answer)
    media = twilio_media(rt, url)
    if media is None:
        raise PageError(404, RECORDING_UNAVAILABLE)
    settings = rt.settings
    auth = (settings.twilio_account_sid or "", settings.twilio_auth_token or "")
    async with httpx.AsyncClient(timeout=15, follow_redirects=True) as client:
        try:
            fetched = await client.get(media, auth=auth)
        except httpx.HTTPError as exc:
            raise PageError(502, RECORDING_UNAVAILABLE) from exc
    if fetched.status_code != 200 or len(fetched.content) > RECORDING_BYTES:
        raise PageError(502, RECORDING_UNAVAILABLE)
    return Response(
        fetched.content,
        media_type=fetched.headers.get("content-type", "audio/mpeg").split(";")[0],
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )
