"""What the desk's and the review queue's forms share: reading a person's text and choices from
a form, saying in the page's language why an act was refused, and the names and times the
templates show."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import Request
from starlette.datastructures import FormData

from bot.pages.web import page_locale
from bot.results.exports import Words
from bot.runtime import Runtime
from bot.tickets import acts, appeals, guard, publishing
from bot.tickets.states import State, WrongState
from bot.web.audit import Actor
from locales import N_, gettext
from storage.tables import records, tickets

TIME_FORMAT = "%Y-%m-%d %H:%M"

STATE_NAMES = {
    State.OPEN: N_("page.desk.state.open"),
    State.ACKNOWLEDGED: N_("page.desk.state.acknowledged"),
    State.RESPONDED: N_("page.desk.state.responded"),
    State.APPEALED: N_("page.desk.state.appealed"),
    State.CLOSED: N_("page.desk.state.closed"),
}
OUTCOME_NAMES = {
    "rectified": N_("page.ticket.outcome.rectified"),
    "explained": N_("page.ticket.outcome.explained"),
    "appeal_upheld": N_("page.ticket.outcome.appeal_upheld"),
}
GROUND_NAMES = {
    "malicious": N_("page.ticket.ground.malicious"),
    "untrue": N_("page.ticket.ground.untrue"),
    "not_ours": N_("page.ticket.ground.not_ours"),
}
APPEAL_STATE_NAMES = {
    "pending": N_("page.ticket.appeal.pending"),
    "upheld": N_("page.ticket.appeal.upheld"),
    "rejected": N_("page.ticket.appeal.rejected"),
}
# The timeline's entries (audit actions on a ticket); an action not named here shows as it is.
ACTION_NAMES = {
    "opened": N_("page.ticket.action.opened"),
    "acknowledge": N_("page.ticket.action.acknowledge"),
    "respond": N_("page.ticket.action.respond"),
    "appeal": N_("page.ticket.action.appeal"),
    "appeal_upheld": N_("page.ticket.action.appeal_upheld"),
    "appeal_rejected": N_("page.ticket.action.appeal_rejected"),
    "assign": N_("page.ticket.action.assign"),
    "tier": N_("page.ticket.action.tier"),
    "escalated": N_("page.ticket.action.escalated"),
    "rerated": N_("page.ticket.action.rerated"),
    "window_closed": N_("page.ticket.action.window_closed"),
    "published": N_("page.ticket.action.published"),
    "withdrawn": N_("page.ticket.action.withdrawn"),
}
REFUSED_STATE = N_("page.ticket.refused.state")  # {state}
REFUSED_TEXT = N_("page.ticket.refused.text")  # {max}
REFUSED_CHOICE = N_("page.ticket.refused.choice")
REFUSED_NOT_ALLOWED = N_("page.ticket.refused.not_allowed")
REFUSED_APPEALED_BEFORE = N_("page.ticket.refused.appealed_before")
REFUSED_NO_CONTACT = N_("page.ticket.refused.no_contact")
REFUSED_DECIDED = N_("page.ticket.refused.decided")
REFUSED_NOT_RECTIFIED = N_("page.ticket.refused.not_rectified")
REFUSED_PUBLISHED_BEFORE = N_("page.ticket.refused.published_before")
NOT_FOUND = N_("page.error.not_found")


class FormRefused(ValueError):
    """A form field the act cannot take (422): a catalog id saying why."""

    def __init__(self, message_id: str, **params: Any) -> None:
        super().__init__(message_id)
        self.message_id = message_id
        self.params = params


def refusal_message(locale: str, refusal: Exception) -> str:
    """Why an act was refused, in the page's language (the API says it in English)."""
    if isinstance(refusal, FormRefused):
        return gettext(locale, refusal.message_id, **refusal.params)
    if isinstance(refusal, WrongState):
        return gettext(locale, REFUSED_STATE, state=gettext(locale, STATE_NAMES[refusal.state]))
    if isinstance(refusal, publishing.NotPublic):
        return gettext(locale, refusal.reason)
    message_id = {
        guard.Refused: REFUSED_NOT_ALLOWED,
        appeals.NotADecider: REFUSED_NOT_ALLOWED,
        acts.AppealedBefore: REFUSED_APPEALED_BEFORE,
        acts.NoContact: REFUSED_NO_CONTACT,
        appeals.NotPending: REFUSED_DECIDED,
        publishing.NotPublishable: REFUSED_NOT_RECTIFIED,
        publishing.PublishedBefore: REFUSED_PUBLISHED_BEFORE,
    }.get(type(refusal), REFUSED_CHOICE)
    return gettext(locale, message_id)


def words_of(form: FormData, name: str) -> str:
    """A person's text from the form: 1 to ``acts.MAX_TEXT`` characters once stripped."""
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > acts.MAX_TEXT:
        raise FormRefused(REFUSED_TEXT, max=acts.MAX_TEXT)
    return text


def choice_of(form: FormData, name: str, choices: tuple[str, ...] | list[str]) -> str:
    value = form.get(name)
    if not isinstance(value, str) or value not in choices:
        raise FormRefused(REFUSED_CHOICE)
    return value


def department_of(form: FormData, name: str = "department") -> str | None:
    """A department named in a form (empty: none, back to triage), at most 100 characters."""
    value = form.get(name)
    department = value.strip() if isinstance(value, str) else ""
    if len(department) > 100:
        raise FormRefused(REFUSED_CHOICE)
    return department or None


# --- how times read on a page -----------------------------------------------------------------


def local_time(zone: ZoneInfo) -> Any:
    def local(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime(TIME_FORMAT) if moment else ""

    return local


def deadline_time(zone: ZoneInfo) -> Any:
    """A deadline is the end of a working day, stored as the next day's 00:00: shown as that
    day's 24:00 (as notices write 24时), so nobody reads it as a day later."""

    def deadline(moment: datetime | None) -> str:
        if moment is None:
            return ""
        at = moment.astimezone(zone)
        if (at.hour, at.minute, at.second) == (0, 0, 0):
            return f"{(at - timedelta(days=1)).strftime('%Y-%m-%d')} 24:00"
        return at.strftime(TIME_FORMAT)

    return deadline


def labels(request: Request, rt: Runtime) -> dict[str, Any]:
    """What every desk template uses to name states, outcomes, grounds, levels, dimensions and
    problems, and to show times in the deployment's zone."""
    zone = rt.settings.zone
    return {
        "state_names": STATE_NAMES,
        "outcome_names": OUTCOME_NAMES,
        "ground_names": GROUND_NAMES,
        "appeal_state_names": APPEAL_STATE_NAMES,
        "action_names": ACTION_NAMES,
        "words": Words(page_locale(request), rt.survey),
        "local": local_time(zone),
        "deadline": deadline_time(zone),
    }


def known_departments(conn: sa.Connection, actor: Actor) -> list[str]:
    """The departments ``actor`` may pick in a filter or a form: its own, or every department
    a case or ticket names."""
    seen = actor.departments_seen
    if seen is not None:
        return sorted(seen)
    named = sa.union(
        sa.select(records.c.department.label("name")),
        sa.select(tickets.c.department.label("name")).where(tickets.c.department.is_not(None)),
    ).subquery()
    return sorted(conn.execute(sa.select(named.c.name)).scalars())
