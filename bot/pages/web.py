"""What every page shares: the templates, ``render``, the page's language, who is signed in
(``page_user``), the CSRF check of forms (``csrf_form``), the security headers, the error pages
and the static files.

A page module has its own ``router = APIRouter()``; its handlers take ``page_user(...)`` (or
``Visitor`` for a page anyone may see) and return ``render(request, "x.html", {...})``. A POST
form route also takes ``CsrfForm`` (``Depends(csrf_form)``), and its template carries
``<input type="hidden" name="csrf_token" value="{{ csrf_token }}">``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot.pages.accounts import HOMES
from bot.pages.sessions import SignedIn, current_session, sign, unsign
from bot.web.audit import Actor
from bot.web.deps import get_runtime
from bot.web.invalid import invalid_request
from bot.web.locale import HTML_LANG, LANG_COOKIE, chosen_locale, page_locale
from locales import LOCALES, N_, gettext

__all__ = [
    "PAGES",
    "CsrfForm",
    "PageError",
    "Visitor",
    "csrf_form",
    "install",
    "page_locale",
    "page_user",
    "render",
    "security_headers",
    "signed_in",
    "templates",
]

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "ratebot_session"
CSRF_COOKIE = "ratebot_csrf"  # before sign-in: the login form's double-submit token
LANG_COOKIE_SECONDS = 365 * 24 * 3600
# Who may open which staff page (admin: every one); the nav shows a person only theirs.
PAGES = {
    "/desk": ("department", "supervisor"),
    "/review": ("reviewer", "supervisor"),  # a supervisor looks; only a reviewer decides
    "/dashboard": ("supervisor",),
}

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class PageError(Exception):
    """Answer a page request with the error page: ``status_code`` and a catalog id saying why
    (``page.error.*``)."""

    def __init__(self, status_code: int, message_id: str, **params: Any) -> None:
        super().__init__(message_id)
        self.status_code = status_code
        self.message_id = message_id
        self.params = params


class SignInRequired(Exception):
    """Not signed in (or the session ended): off to ``/login``, and back afterwards."""


NOT_FOUND = N_("page.error.not_found")
FORBIDDEN = N_("page.error.forbidden")
ROLE_FORBIDDEN = N_("page.error.role")
CSRF_FAILED = N_("page.error.csrf")
INVALID = N_("page.error.invalid")
CONFLICT = N_("page.error.conflict")
UNEXPECTED = N_("page.error.other")
STATUS_MESSAGES = {404: NOT_FOUND, 403: FORBIDDEN, 409: CONFLICT, 422: INVALID}


# --- the security headers -------------------------------------------------------------------


def security_headers(style_nonce: str | None = None) -> dict[str, str]:
    """The headers of every page: a strict CSP (no script at all, styles from /static and, for
    inline SVG charts, ``<style nonce="{{ csp_nonce }}">``), no framing, no referrer abroad."""
    styles = "'self'" + (f" 'nonce-{style_nonce}'" if style_nonce else "")
    policy = (
        f"default-src 'none'; style-src {styles}; img-src 'self' data:; media-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
    }


class PageStatic(StaticFiles):
    """``/static``: the pages' stylesheet (and whatever a page serves beside it)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(security_headers())
        return response


# --- who is signed in -----------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return get_runtime(request).settings.public_url.startswith("https://")


def signed_in(request: Request) -> SignedIn | None:
    """The live session of the request's cookie, if any (looked up once per request). A
    dependency: a page anyone may see takes ``Depends(signed_in)`` to show the nav."""
    if hasattr(request.state, "signed_in"):
        found: SignedIn | None = request.state.signed_in
        return found
    rt = get_runtime(request)
    token = unsign(rt.privacy, SESSION_COOKIE, request.cookies.get(SESSION_COOKIE))
    found = None
    if token is not None:
        idle = timedelta(hours=rt.settings.session_hours)
        with rt.db.begin() as conn:
            found = current_session(conn, token, rt.clock(), idle)
    request.state.signed_in = found
    return found


def page_user(*roles: str) -> Any:
    """A dependency giving the signed-in account (an ``Actor`` of kind ``user``) whose role is
    one of ``roles`` (admin: any). Not signed in: 303 to ``/login?next=<this page>``; another
    role: the 403 page."""

    def check(request: Request) -> Actor:
        session = signed_in(request)
        if session is None:
            raise SignInRequired
        if session.actor.role != "admin" and session.actor.role not in roles:
            raise PageError(403, ROLE_FORBIDDEN)
        return session.actor

    return Depends(check)


def home_of(actor: Actor) -> str:
    """Where ``actor`` lands after signing in."""
    return HOMES.get(actor.role, "/account")


def may_open(actor: Actor | None, path: str) -> bool:
    """Whether the nav shows ``actor`` the staff page at ``path``."""
    if actor is None:
        return False
    return actor.role == "admin" or actor.role in PAGES.get(path, ())


# --- CSRF -----------------------------------------------------------------------------------


def _pre_session_token(request: Request) -> str | None:
    return unsign(get_runtime(request).privacy, CSRF_COOKIE, request.cookies.get(CSRF_COOKIE))


def expected_csrf(request: Request) -> str | None:
    """The token a form of this request must carry: the session's, or before sign-in the one
    of the signed ``ratebot_csrf`` cookie (double submit)."""
    session = signed_in(request)
    return session.csrf_token if session is not None else _pre_session_token(request)


async def csrf_form(request: Request) -> FormData:
    """A dependency of every POST form route: the form, if its ``csrf_token`` field is the
    session's (before sign-in: the ``ratebot_csrf`` cookie's); else the 403 page."""
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    sent = form.get("csrf_token")
    expected = await run_in_threadpool(expected_csrf, request)
    if not isinstance(sent, str) or expected is None or not secrets.compare_digest(sent, expected):
        raise PageError(403, CSRF_FAILED)
    return form


CsrfForm = Annotated[FormData, Depends(csrf_form)]  # a POST form route's checked form
Visitor = Annotated[SignedIn | None, Depends(signed_in)]  # who is signed in, if anyone


# --- rendering ------------------------------------------------------------------------------


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The page ``bot/pages/templates/<name>`` with ``context`` and what every page has:
    ``_`` (the catalog in the page's language: ``_("page.x.y", n=3)``), ``lang``,
    ``html_lang``, ``user`` (the signed-in Actor, when the route took ``page_user`` or
    ``signed_in``, else None), ``csrf_token``, ``csp_nonce``, ``path``, ``now``, and the nav's
    helpers. Sends the security headers; remembers a ``?lang=`` choice in a cookie."""
    rt = get_runtime(request)
    locale = page_locale(request)
    session: SignedIn | None = getattr(request.state, "signed_in", None)
    new_csrf = None
    csrf_token = session.csrf_token if session is not None else _pre_session_token(request)
    if csrf_token is None:
        csrf_token = new_csrf = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(16)
    user = session.actor if session is not None else None

    def _(message_id: str, **params: Any) -> str:
        return gettext(locale, message_id, **params)

    def lang_url(code: str) -> str:
        query = {k: v for k, v in request.query_params.items() if k != "lang"}
        return f"{request.url.path}?{urlencode({**query, 'lang': code})}"

    body = templates.get_template(name).render(
        {
            "_": _,
            "lang": locale,
            "html_lang": HTML_LANG[locale],
            "html_langs": HTML_LANG,
            "locales": LOCALES,
            "lang_url": lang_url,
            "user": user,
            "home": home_of(user) if user is not None else "/results",
            "may_open": lambda path: may_open(user, path),
            "csrf_token": csrf_token,
            "csp_nonce": nonce,
            "path": request.url.path,
            "now": rt.clock(),
            **(context or {}),
        }
    )
    response = HTMLResponse(body, status_code=status_code)
    response.headers.update(security_headers(nonce))
    response.headers.setdefault("Cache-Control", "no-store" if user is not None else "no-cache")
    if headers:
        response.headers.update(headers)
    secure = _secure(request)
    if new_csrf is not None:
        response.set_cookie(
            CSRF_COOKIE,
            sign(rt.privacy, CSRF_COOKIE, new_csrf),
            httponly=True,
            samesite="lax",
            secure=secure,
        )
    if (chosen := chosen_locale(request)) is not None:
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            max_age=LANG_COOKIE_SECONDS,
            httponly=True,
            samesite="lax",
            secure=secure,
        )
    return response


def error_page(request: Request, status_code: int, message_id: str, **params: Any) -> Response:
    return render(
        request,
        "error.html",
        {
            "status_code": status_code,
            "message": gettext(page_locale(request), message_id, **params),
        },
        status_code=status_code,
    )


# --- wiring ---------------------------------------------------------------------------------


def _is_page_request(request: Request) -> bool:
    """A request to a page route, or to no route at all from a browser (not the JSON API)."""
    endpoint = request.scope.get("endpoint")
    if endpoint is not None:
        return str(getattr(endpoint, "__module__", "")).startswith("bot.pages.")
    path = request.url.path
    html = "text/html" in request.headers.get("accept", "")
    return html and not path.startswith(("/api/", "/channels/"))


def _sign_in_path(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(here, safe='')}"


def install(app: FastAPI) -> None:
    """Serve ``/static`` and answer the pages' errors as pages (the JSON API's stay JSON)."""
    app.mount("/static", PageStatic(directory=HERE / "static"), name="static")

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return error_page(request, exc.status_code, exc.message_id, **exc.params)

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        return RedirectResponse(_sign_in_path(request), status_code=303)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not _is_page_request(request):
            return await http_exception_handler(request, exc)
        message = STATUS_MESSAGES.get(exc.status_code, UNEXPECTED)
        return error_page(request, exc.status_code, message)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if not _is_page_request(request):
            return await invalid_request(request, exc)  # one readable detail, as the API's
        return error_page(request, 422, INVALID)

    app.add_exception_handler(PageError, on_page_error)
    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
