"""Signing in and out, and the account page.

``POST /login`` checks the password (Argon2) and opens a session; five wrong passwords for one
name within 15 minutes lock that name for 15 minutes, counted in the state store so that every
worker sees every attempt. A name's attempts take turns (the voucher guessers' turns,
:meth:`Guesses.turn`, under the state store's lock: across workers with Redis), each reading the
lock after the failures of the ones before it, so parallel attempts, to one worker or many, get
no more passwords checked than attempts in a row; a locked name's password is not checked at
all. Unknown names are counted and answered exactly like wrong passwords (no one learns which
names exist). Every attempt is an audit row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.pages.accounts import (
    MAX_NAME,
    ROLES,
    actor_of,
    departments_of,
    find_user,
    password_matches,
)
from bot.pages.sessions import SignedIn, end_session, open_session, sign
from bot.pages.web import (
    SESSION_COOKIE,
    CsrfForm,
    Visitor,
    home_of,
    page_locale,
    page_user,
    render,
    signed_in,
)
from bot.rewards.guesses import TooManyGuesses, get_guesses
from bot.runtime import Runtime
from bot.web import audit
from bot.web.audit import Actor
from bot.web.deps import get_runtime
from locales import N_, gettext

router = APIRouter()
AnyStaff = Annotated[Actor, page_user(*ROLES)]

LOCK_AFTER = 5  # wrong passwords for one name …
LOCK_WINDOW = 15 * 60  # … within this many seconds lock it for as long
LOCKED = N_("page.login.locked")  # {minutes}
WRONG = N_("page.login.wrong")
DISABLED = N_("page.login.disabled")
MISSING = N_("page.login.missing")
# Who tried a name nobody has: not the name itself (it may be a password typed in the wrong
# box), only its keyed hash in the audit row.
NOBODY = Actor(kind="user", id=None, name="unknown", role="none")


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a sign-in attempt came to: ``signed_in`` (with the cookie's token) or the reason it
    failed (wrong_password | unknown | disabled | locked)."""

    outcome: str
    actor: Actor | None = None
    token: str | None = None


def _keys(rt: Runtime, name: str) -> tuple[str, str]:
    """The state-store keys counting ``name``'s failures and marking it locked."""
    digest = rt.privacy.contact_hash(f"signin:{name.casefold()}")
    return f"signin:fail:{digest}", f"signin:lock:{digest}"


def _name_hash(rt: Runtime, name: str) -> str:
    return rt.privacy.contact_hash(f"user:{name}")


def _local_path(value: str | None) -> str | None:
    """``value`` if it is a path on this site (never another host: no open redirect)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    parts = urlsplit(value)
    return None if parts.scheme or parts.netloc else value


def _login_page(
    request: Request,
    *,
    problem: str | None = None,
    name: str = "",
    next_path: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "login.html",
        {"problem": problem, "name": name, "next_path": next_path},
        status_code=status_code,
    )


@router.get("/login")
def login_form(request: Request, session: Visitor) -> Response:
    """The sign-in form (already signed in: straight on to where ``next`` or the role leads)."""
    next_path = _local_path(request.query_params.get("next")) or ""
    if session is not None:
        return RedirectResponse(next_path or home_of(session.actor), status_code=303)
    return _login_page(request, next_path=next_path)


@router.post("/login")
async def login(request: Request, form: CsrfForm) -> Response:
    """Check the name and password; on success a session cookie and 303 onwards."""
    rt = get_runtime(request)
    name = str(form.get("name") or "").strip()[:MAX_NAME]
    password = str(form.get("password") or "")
    next_path = _local_path(str(form.get("next") or "")) or ""
    locale = page_locale(request)
    if not name or not password:
        return _login_page(
            request,
            problem=gettext(locale, MISSING),
            name=name,
            next_path=next_path,
            status_code=422,
        )
    failures, lock = _keys(rt, name)
    try:
        async with get_guesses(request).turn(f"signin:{name.casefold()}"):
            locked = await rt.store.count_events(lock, LOCK_WINDOW) > 0
            attempt = await run_in_threadpool(_attempt, rt, name, password, locked)
            counted = attempt.outcome in ("wrong_password", "unknown")
            if counted and await rt.store.record_event(failures, LOCK_WINDOW) >= LOCK_AFTER:
                await rt.store.record_event(lock, LOCK_WINDOW)
                locked = True
    except TooManyGuesses:  # the name's earlier attempts still hold its turn: refused unchecked
        locked = True
        attempt = await run_in_threadpool(_attempt, rt, name, password, locked)
    if attempt.outcome == "signed_in":
        assert attempt.actor is not None and attempt.token is not None
        response = RedirectResponse(next_path or home_of(attempt.actor), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sign(rt.privacy, SESSION_COOKIE, attempt.token),
            httponly=True,
            samesite="lax",
            secure=rt.settings.public_url.startswith("https://"),
        )
        return response
    if locked:
        problem, status_code = gettext(locale, LOCKED, minutes=LOCK_WINDOW // 60), 429
    elif attempt.outcome == "disabled":
        problem, status_code = gettext(locale, DISABLED), 403
    else:
        problem, status_code = gettext(locale, WRONG), 401
    return _login_page(
        request, problem=problem, name=name, next_path=next_path, status_code=status_code
    )


def _attempt(rt: Runtime, name: str, password: str, locked: bool) -> Attempt:
    """Check ``password`` for ``name`` and write the audit row (and, on success, the session) in
    one transaction. A locked name is refused even with the right password, which is not
    checked: a guesser learns nothing from it, and costs no Argon2 hash."""
    now = rt.clock()
    with rt.db.begin() as conn:
        user = find_user(conn, name)
        matches = not locked and password_matches(conn, user, password)
        if user is None:
            audit.write(
                conn,
                NOBODY,
                "sign_in_failed",
                "user",
                0,
                now,
                after={"name_hash": _name_hash(rt, name)},
                reason="locked" if locked else "unknown",
            )
            return Attempt("locked" if locked else "unknown")
        actor = actor_of(user, departments_of(conn, user["id"]))
        outcome = _refusal(user, matches, locked)
        if outcome is not None:
            audit.write(conn, actor, "sign_in_failed", "user", actor.id or 0, now, reason=outcome)
            return Attempt(outcome, actor)
        token = open_session(conn, user["id"], now)
        audit.write(conn, actor, "sign_in", "user", user["id"], now)
    return Attempt("signed_in", actor, token)


def _refusal(user: sa.RowMapping, matches: bool, locked: bool) -> str | None:
    """Why a known account is refused, if it is: locked, wrong password, disabled."""
    if locked:
        return "locked"
    if not matches:
        return "wrong_password"
    if user["disabled_at"] is not None:
        return "disabled"
    return None


@router.post("/logout")
async def logout(request: Request, form: CsrfForm) -> Response:
    """End the session on the server, forget the cookie, back to the sign-in form."""
    session = await run_in_threadpool(signed_in, request)
    if session is not None:
        await run_in_threadpool(_sign_out, get_runtime(request), session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _sign_out(rt: Runtime, session: SignedIn) -> None:
    now = rt.clock()
    with rt.db.begin() as conn:
        end_session(conn, session.session_id, now)
        audit.write(conn, session.actor, "sign_out", "user", session.actor.id or 0, now)


@router.get("/account")
def account(request: Request, user: AnyStaff) -> Response:
    """Who is signed in: name, role, departments, the language, and signing out."""
    return render(request, "account.html")
