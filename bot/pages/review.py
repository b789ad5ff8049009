"""The reviewers' queue (``/review``): the pending appeals (申诉复核) and fraud flags (刷好评,
恶意差评), each with its rating, the department's statement or the rule that fired, and the forms
that decide them with a note. A decision calls the API's function (``bot.tickets.appeals``,
``bot.tickets.flags``) as the signed-in reviewer, so it changes the figures exactly as the API's
does. Supervisors may look; only a reviewer (or admin) decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session as DbSession
from sqlmodel import col, select
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
from bot.results.views import rating_views
from bot.runtime import Runtime
from bot.tickets import appeals, flags, queues
from bot.tickets.refusals import REFUSALS, status_of
from bot.tickets.rules import rules_for
from bot.tickets.views import appeal_view, ticket_summary
from bot.web.audit import Actor
from bot.web.deps import get_runtime, in_transaction
from locales import N_
from storage.models import Rating, ServiceRecord
from storage.tables import tickets

router = APIRouter()

RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
ReviewUser = Annotated[Actor, page_user("reviewer", "supervisor")]
ReviewForm = Annotated[FormData, Depends(csrf_form)]

RULE_NAMES = {
    "contact_ratings": N_("page.review.rule.contact_ratings"),
    "staff_contact": N_("page.review.rule.staff_contact"),
    "top_burst": N_("page.review.rule.top_burst"),
}
DONE = {
    "appeal_upheld": N_("page.review.done.appeal_upheld"),
    "appeal_rejected": N_("page.review.done.appeal_rejected"),
    "flag_confirmed": N_("page.review.done.flag_confirmed"),
    "flag_cleared": N_("page.review.done.flag_cleared"),
}
APPEAL_VERDICTS = ("uphold", "reject")
FLAG_VERDICTS = ("confirm", "clear")


@dataclass(frozen=True, slots=True)
class ReviewPage:
    appeals: list[dict[str, Any]]
    flags: list[dict[str, Any]]
    departments: list[str]


def _ratings_by_id(db: DbSession, rating_ids: set[int]) -> dict[int, dict[str, Any]]:
    """The ratings as the API shows them (no contact in clear), by id."""
    if not rating_ids:
        return {}
    found = list(db.exec(select(Rating).where(col(Rating.id).in_(sorted(rating_ids)))))
    record_ids = sorted({r.record_id for r in found if r.record_id is not None})
    records = {
        record.id: record
        for record in db.exec(select(ServiceRecord).where(col(ServiceRecord.id).in_(record_ids)))
        if record.id is not None
    }
    return {view["id"]: view for view in rating_views(db, found, records)}


def review_page(rt: Runtime, actor: Actor) -> ReviewPage:
    """The pending appeals with their tickets and ratings, the pending flags with their ratings,
    oldest first; and the departments a ``not_ours`` appeal may be sent on to."""
    now = rt.clock()
    with DbSession(rt.db) as db:
        conn = db.connection()
        pending_appeals = queues.appeal_rows(conn, "pending")
        pending_flags = queues.flag_rows(conn, "pending")
        appealed = {
            row.id: row
            for row in conn.execute(
                sa.select(tickets).where(
                    tickets.c.id.in_(sorted({a.ticket_id for a in pending_appeals}))
                )
            )
        }
        rating_ids = {row.rating_id for row in appealed.values()}
        rating_ids |= {flag["rating_id"] for flag in pending_flags}
        ratings = _ratings_by_id(db, rating_ids)
        departments = known_departments(conn, actor)
    return ReviewPage(
        appeals=[
            {
                "appeal": appeal_view(row),
                "ticket": ticket_summary(appealed[row.ticket_id], now),
                "rating": ratings.get(appealed[row.ticket_id].rating_id),
            }
            for row in pending_appeals
        ],
        flags=[{"flag": flag, "rating": ratings.get(flag["rating_id"])} for flag in pending_flags],
        departments=departments,
    )


async def review_response(
    request: Request,
    actor: Actor,
    *,
    status_code: int = 200,
    refusal: str | None = None,
    refused: str | None = None,
    typed: dict[str, str] | None = None,
) -> Response:
    rt = get_runtime(request)
    found = await run_in_threadpool(review_page, rt, actor)
    context = {
        "review": found,
        "decides": actor.role in appeals.DECIDERS,
        "rule_names": RULE_NAMES,
        "done": DONE.get(request.query_params.get("done") or ""),
        "refusal": refusal,
        "refused": refused,  # which form the refusal is about: "appeal-3", "flag-7"
        "typed": typed or {},
        **labels(request, rt),
    }
    return render(request, "review.html", context, status_code=status_code)


@router.get("/review")
async def review(request: Request, actor: ReviewUser) -> Response:
    """The pending appeals and fraud flags, oldest first, with the forms that decide them."""
    return await review_response(request, actor)


async def _decide(
    request: Request, actor: Actor, form: FormData, refused: str, act: Any, done: Any
) -> Response:
    """Carry out the decision ``act``; back to the queue saying what was decided, or the queue
    again with the reason the decision was refused."""
    try:
        verdict = await in_transaction(get_runtime(request), act)
    except REFUSALS as exc:
        if isinstance(exc, LookupError):
            raise PageError(404, NOT_FOUND) from exc
        typed = {key: value for key, value in form.items() if isinstance(value, str)}
        typed.pop("csrf_token", None)
        return await review_response(
            request,
            actor,
            status_code=status_of(exc),
            refusal=refusal_message(page_locale(request), exc),
            refused=refused,
            typed=typed,
        )
    return RedirectResponse(f"/review?done={done(verdict)}", status_code=303)


@router.post("/review/appeals/{appeal_id}/decide")
async def decide_appeal(
    request: Request, appeal_id: RowId, actor: ReviewUser, form: ReviewForm
) -> Response:
    """Uphold (the rating leaves the figures, or a ``not_ours`` ticket goes on to the
    department named) or reject (the ticket goes back where it was), with a note."""
    settings = get_runtime(request).settings
    rules = rules_for(settings.tickets_file, settings.timezone)

    def act(conn: sa.Connection, now: datetime) -> bool:
        upheld = choice_of(form, "verdict", APPEAL_VERDICTS) == "uphold"
        appeals.decide(
            conn,
            actor,
            rules,
            appeal_id,
            upheld=upheld,
            note=words_of(form, "note"),
            now=now,
            reassign_to=department_of(form),
        )
        return upheld

    def done(upheld: bool) -> str:
        return "appeal_upheld" if upheld else "appeal_rejected"

    return await _decide(request, actor, form, f"appeal-{appeal_id}", act, done)


@router.post("/review/flags/{flag_id}/decide")
async def decide_flag(
    request: Request, flag_id: RowId, actor: ReviewUser, form: ReviewForm
) -> Response:
    """Confirm (the rating stays out of the figures) or clear (it counts again and earns its
    withheld voucher), with a note."""

    def act(conn: sa.Connection, now: datetime) -> bool:
        confirmed = choice_of(form, "verdict", FLAG_VERDICTS) == "confirm"
        flags.decide(
            conn, actor, flag_id, confirmed=confirmed, note=words_of(form, "note"), now=now
        )
        return confirmed

    def done(confirmed: bool) -> str:
        return "flag_confirmed" if confirmed else "flag_cleared"

    return await _decide(request, actor, form, f"flag-{flag_id}", act, done)
