"""Signing in and out over HTTP: the cookie, idle expiry, sign-out on the server, the lockout
(across workers sharing Redis), the audit rows, CSRF, the security headers, the role homes and
the 403 page, and the login page in every locale."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response

from bot.pages import accounts
from bot.pages.accounts import disable_user
from bot.pages.web import page_user, render
from bot.web.audit import Actor, entries
from locales import LOCALES, gettext
from storage.tables import staff_sessions
from tests.bot.conftest import PUBLIC_URL, FakeClock, Harness, make_settings, serving
from tests.bot.pages.support import PASSWORD, create_user, csrf_token, post_login, sign_in

HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}
CSP = (
    "default-src 'none'; style-src 'self'{}; img-src 'self' data:; media-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in HEADERS.items():
        assert response.headers[name] == value, name
    policy = response.headers["content-security-policy"]
    nonce = re.fullmatch(CSP.format("(?: 'nonce-[A-Za-z0-9_-]+')?"), policy)
    assert nonce is not None, policy


def set_cookie(response: httpx.Response, name: str) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return header


def user_audit(h: Harness) -> list[dict[str, Any]]:
    with h.rt.db.connect() as conn:
        return entries(conn, entity="user")


def new_client(h: Harness) -> httpx.AsyncClient:
    """Another browser on the same app."""
    assert h.app is not None
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app), base_url=PUBLIC_URL)


# --- signing in -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "departments", "home"),
    [
        ("department", ["市税务局"], "/desk"),
        ("reviewer", [], "/review"),
        ("supervisor", [], "/dashboard"),
        ("admin", [], "/dashboard"),
    ],
)
async def test_each_role_lands_on_its_home_with_a_strict_cookie(
    harness: Harness, role: str, departments: list[str], home: str
) -> None:
    user_id = create_user(harness, "li.na", role, departments)
    response = await post_login(harness.client, "li.na", PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == home
    cookie = set_cookie(response, "ratebot_session")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    token = cookie.split(";")[0].split("=", 1)[1].rsplit(".", 1)[0]
    with harness.rt.db.connect() as conn:
        stored = conn.execute(sa.select(staff_sessions)).mappings().one()
    assert stored["user_id"] == user_id and stored["ended_at"] is None
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()  # never the token

    account = await harness.client.get("/account")
    assert account.status_code == 200
    assert 'data-field="name">li.na<' in account.text
    assert account.headers["cache-control"] == "no-store"
    assert_security_headers(account)
    [entry] = [e for e in user_audit(harness) if e["action"] == "sign_in"]
    assert entry["entity_id"] == user_id
    assert entry["who"] == {"kind": "user", "id": user_id, "name": "li.na", "role": role}


async def test_next_leads_back_but_never_to_another_site(harness: Harness) -> None:
    create_user(harness, "li.na", "supervisor")
    redirect = await harness.client.get("/account")
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/login?next=%2Faccount"
    back = await post_login(harness.client, "li.na", PASSWORD, next="/account")
    assert back.headers["location"] == "/account"
    # signed in already, the form goes straight on
    again = await harness.client.get("/login?next=/account")
    assert again.status_code == 303 and again.headers["location"] == "/account"

    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        async with new_client(harness) as other:
            response = await post_login(other, "li.na", PASSWORD, next=evil)
        assert response.headers["location"] == "/dashboard", evil


async def test_no_secure_flag_on_a_plain_http_deployment(database_url: str) -> None:
    settings = make_settings(database_url, public_url="http://127.0.0.1:8000")
    async with serving(settings, FakeClock()) as h:
        create_user(h, "li.na", "admin")
        form = await h.client.get("/login")
        assert "Secure" not in set_cookie(form, "ratebot_csrf")
        response = await post_login(h.client, "li.na", PASSWORD)
        cookie = set_cookie(response, "ratebot_session")
    assert "HttpOnly" in cookie and "Secure" not in cookie


async def test_a_forged_session_cookie_signs_nobody_in(harness: Harness) -> None:
    create_user(harness, "li.na", "admin")
    await sign_in(harness.client, "li.na")
    real = harness.client.cookies["ratebot_session"]
    token, _, signature = real.rpartition(".")
    harness.client.cookies.set("ratebot_session", f"{token}.{'0' * len(signature)}")
    assert (await harness.client.get("/account")).status_code == 303


# --- idle expiry and signing out --------------------------------------------------------------


async def test_a_session_ends_after_the_idle_hours_not_while_in_use(
    harness: Harness, clock: FakeClock
) -> None:
    create_user(harness, "li.na", "admin")
    await sign_in(harness.client, "li.na")
    for _ in range(3):  # 21 hours in use, never 8 idle
        clock.advance(hours=7)
        assert (await harness.client.get("/account")).status_code == 200
    clock.advance(hours=8, minutes=1)
    expired = await harness.client.get("/account")
    assert expired.status_code == 303 and expired.headers["location"].startswith("/login")
    with harness.rt.db.connect() as conn:
        ended = conn.execute(sa.select(staff_sessions.c.ended_at)).scalar_one()
    assert ended == clock()


async def test_last_seen_moves_at_most_once_a_minute(harness: Harness, clock: FakeClock) -> None:
    create_user(harness, "li.na", "admin")
    await sign_in(harness.client, "li.na")
    signed_in_at = clock()

    def last_seen() -> Any:
        with harness.rt.db.connect() as conn:
            return conn.execute(sa.select(staff_sessions.c.last_seen_at)).scalar_one()

    clock.advance(seconds=30)
    await harness.client.get("/account")
    assert last_seen() == signed_in_at
    clock.advance(seconds=31)
    await harness.client.get("/account")
    assert last_seen() == clock()


async def test_sign_out_ends_the_session_on_the_server(harness: Harness) -> None:
    user_id = create_user(harness, "li.na", "reviewer")
    token = await sign_in(harness.client, "li.na")
    old_cookie = harness.client.cookies["ratebot_session"]
    response = await harness.client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert 'ratebot_session=""' in set_cookie(response, "ratebot_session")

    harness.client.cookies.set("ratebot_session", old_cookie)  # a copy kept by an attacker
    assert (await harness.client.get("/account")).status_code == 303
    with harness.rt.db.connect() as conn:
        assert conn.execute(sa.select(staff_sessions.c.ended_at)).scalar_one() is not None
    assert [e["action"] for e in user_audit(harness)][-1] == "sign_out"
    assert user_audit(harness)[-1]["entity_id"] == user_id


async def test_disabling_an_account_signs_it_out(harness: Harness) -> None:
    create_user(harness, "li.na", "admin")
    await sign_in(harness.client, "li.na")
    with harness.rt.db.begin() as conn:
        disable_user(conn, name="li.na", now=harness.clock())
    assert (await harness.client.get("/account")).status_code == 303
    async with new_client(harness) as other:
        refused = await post_login(other, "li.na", PASSWORD)
    assert refused.status_code == 403
    assert gettext("zh_Hans_CN", "page.login.disabled") in refused.text
    assert user_audit(harness)[-1]["reason"] == "disabled"


# --- wrong passwords and the lockout ------------------------------------------------------------


def problem(response: httpx.Response) -> str:
    found = re.search(r'<p class="problem" role="alert">([^<]*)</p>', response.text)
    assert found is not None, response.text
    return found.group(1)


async def test_five_wrong_passwords_lock_the_name_even_for_the_right_one(harness: Harness) -> None:
    user_id = create_user(harness, "li.na", "admin")
    wrong = [await post_login(harness.client, "li.na", f"wrong password {n}") for n in range(5)]
    assert [r.status_code for r in wrong] == [401, 401, 401, 401, 429]
    assert problem(wrong[0]) == gettext("zh_Hans_CN", "page.login.wrong")
    locked = gettext("zh_Hans_CN", "page.login.locked", minutes=15)
    assert problem(wrong[4]) == locked

    right = await post_login(harness.client, "li.na", PASSWORD)
    assert right.status_code == 429 and problem(right) == locked
    assert "ratebot_session" not in harness.client.cookies
    await harness.client.get("/login?lang=en")  # the message in the visitor's language
    english = await post_login(harness.client, "li.na", PASSWORD)
    assert english.status_code == 429
    assert problem(english) == gettext("en", "page.login.locked", minutes=15)
    assert "15 minutes at most" in problem(english)

    failures = [e for e in user_audit(harness) if e["action"] == "sign_in_failed"]
    assert [e["reason"] for e in failures] == ["wrong_password"] * 5 + ["locked"] * 2
    assert {e["entity_id"] for e in failures} == {user_id}
    assert all(e["action"] != "sign_in" for e in user_audit(harness))


async def test_an_unknown_name_is_answered_and_counted_like_a_wrong_password(
    harness: Harness,
) -> None:
    create_user(harness, "li.na", "admin")
    known = await post_login(harness.client, "li.na", "wrong password")
    unknown = [await post_login(harness.client, "zhang.wei", f"guess {n}") for n in range(5)]
    assert unknown[0].status_code == known.status_code == 401
    assert problem(unknown[0]) == problem(known)
    assert unknown[4].status_code == 429
    [*_, entry] = user_audit(harness)
    assert entry["entity_id"] == 0 and entry["reason"] == "unknown"
    assert entry["who"]["name"] == "unknown" and "zhang.wei" not in str(entry)
    assert entry["after"] == {"name_hash": harness.rt.privacy.contact_hash("user:zhang.wei")}


@pytest.mark.parametrize("backend", ["scaled"], indirect=True)  # one process: its own count
async def test_the_lock_is_shared_by_workers_on_redis(
    backend: dict[str, Any], harness: Harness, clock: FakeClock
) -> None:
    create_user(harness, "li.na", "admin")
    async with serving(make_settings(**backend), clock) as second:
        for n in range(3):
            assert (await post_login(harness.client, "li.na", f"wrong {n}")).status_code == 401
        for n in range(2):
            last = await post_login(second.client, "li.na", f"wrong {n}")
        assert last.status_code == 429
        assert (await post_login(harness.client, "li.na", PASSWORD)).status_code == 429


@pytest.mark.parametrize("backend", ["scaled"], indirect=True)  # workers share only Redis
async def test_parallel_wrong_passwords_to_two_workers_get_five_checked(
    backend: dict[str, Any], harness: Harness, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: parallel attempts each read the lock before any of them had failed, so every
    one sent before the fifth failure was counted had its password checked: N workers, N times
    the tries. Now a name's attempts take turns across workers (the state store's lock), and a
    locked name's password is not checked."""
    create_user(harness, "li.na", "admin")
    checked: list[str] = []
    verify = accounts._verify

    def counting(password_hash: str, password: str) -> bool:
        checked.append(password)
        return verify(password_hash, password)

    monkeypatch.setattr(accounts, "_verify", counting)
    async with serving(make_settings(**backend), clock) as second:
        clients = [new_client(harness), new_client(second)]
        forms = [await c.get("/login") for c in clients]  # each browser's CSRF token
        tokens = [csrf_token(f.text) for f in forms]

        async def guess(n: int) -> httpx.Response:
            data = {"csrf_token": tokens[n % 2], "name": "li.na", "password": f"guess {n}"}
            return await clients[n % 2].post("/login", data=data)

        answers = await asyncio.gather(*(guess(n) for n in range(20)))
        for client in clients:
            await client.aclose()
    assert sorted(r.status_code for r in answers) == [401] * 4 + [429] * 16
    assert len(checked) == 5
    failures = [e for e in user_audit(harness) if e["action"] == "sign_in_failed"]
    reasons = sorted(e["reason"] for e in failures)
    assert reasons == ["locked"] * 15 + ["wrong_password"] * 5  # every attempt audited


# --- CSRF, headers, error pages -----------------------------------------------------------------


async def test_a_post_without_the_right_csrf_token_is_refused(harness: Harness) -> None:
    create_user(harness, "li.na", "admin")
    bare = await harness.client.post("/login", data={"name": "li.na", "password": PASSWORD})
    assert bare.status_code == 403
    assert gettext("zh_Hans_CN", "page.error.csrf") in bare.text
    assert_security_headers(bare)
    await harness.client.get("/login")  # the pre-session cookie is set; a guessed field is not it
    forged = await harness.client.post(
        "/login", data={"csrf_token": "guess", "name": "li.na", "password": PASSWORD}
    )
    assert forged.status_code == 403 and "ratebot_session" not in harness.client.cookies

    token = await sign_in(harness.client, "li.na")
    assert (await harness.client.post("/logout", data={})).status_code == 403
    async with new_client(harness) as other:  # another session's token is not this one's
        create_user(harness, "wang.fang", "admin")
        other_token = await sign_in(other, "wang.fang")
    assert other_token != token
    refused = await harness.client.post("/logout", data={"csrf_token": other_token})
    assert refused.status_code == 403
    assert (await harness.client.get("/account")).status_code == 200  # still signed in


async def test_every_page_response_carries_the_security_headers(harness: Harness) -> None:
    for path in ("/login", "/static/pages.css"):
        response = await harness.client.get(path)
        assert response.status_code == 200
        assert_security_headers(response)
    missing = await harness.client.get("/no/such/page", headers={"accept": "text/html"})
    assert missing.status_code == 404 and "<!DOCTYPE html>" in missing.text
    assert gettext("zh_Hans_CN", "page.error.not_found") in missing.text
    assert_security_headers(missing)


async def test_the_json_api_keeps_its_json_errors(harness: Harness) -> None:
    headers = {**harness.api_key("supervisor"), "accept": "text/html,*/*"}
    response = await harness.client.get("/api/v1/tickets/999999", headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert (await harness.client.get("/no/such/thing")).json() == {"detail": "Not Found"}


async def test_a_wrong_role_gets_the_403_page(harness: Harness) -> None:
    router = APIRouter()

    @router.get("/only-supervisors")
    def only_supervisors(request: Request, user: Actor = page_user("supervisor")) -> Response:  # noqa: B008
        return render(request, "error.html", {"status_code": 200, "message": user.name})

    assert harness.app is not None
    harness.app.include_router(router)
    create_user(harness, "li.na", "reviewer")
    create_user(harness, "boss", "admin")
    await sign_in(harness.client, "li.na")
    refused = await harness.client.get("/only-supervisors")
    assert refused.status_code == 403
    assert gettext("zh_Hans_CN", "page.error.role") in refused.text
    assert ">li.na</a>" in refused.text  # the nav still knows who it is
    async with new_client(harness) as admin:
        await sign_in(admin, "boss")
        assert (await admin.get("/only-supervisors")).status_code == 200  # admin: any page


async def test_names_are_shown_escaped(harness: Harness) -> None:
    create_user(harness, "<script>alert(1)</script>", "admin")
    await sign_in(harness.client, "<script>alert(1)</script>")
    page = (await harness.client.get("/account")).text
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- languages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
async def test_the_login_page_in_each_locale_has_no_untranslated_id(
    harness: Harness, locale: str
) -> None:
    response = await harness.client.get(f"/login?lang={locale}")
    text = response.text
    assert gettext(locale, "page.login.title") in text
    assert not re.search(r">[^<]*\bpage\.[a-z_.]+", text), "an id shown instead of its text"
    assert not re.search(r'(aria-label|title)="page\.', text)
    html_lang = {"zh_Hans_CN": "zh-Hans", "zh_Hant_TW": "zh-Hant", "en": "en"}[locale]
    assert f'<html lang="{html_lang}">' in text
    assert harness.client.cookies["ratebot_lang"] == locale  # remembered…
    again = await harness.client.get("/login")
    assert f'<html lang="{html_lang}">' in again.text  # …on the next page without ?lang


async def test_the_browser_language_chooses_when_nothing_else_does(harness: Harness) -> None:
    headers = {"accept-language": "fr-FR,zh-TW;q=0.8,en;q=0.9"}
    response = await harness.client.get("/login", headers=headers)
    assert '<html lang="en">' in response.text
    response = await harness.client.get("/login", headers={"accept-language": "zh-HK"})
    assert '<html lang="zh-Hant">' in response.text
    assert '<html lang="zh-Hans">' in (await harness.client.get("/login")).text  # the default
