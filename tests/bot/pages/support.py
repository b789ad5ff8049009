"""Staff accounts and signing in, for the page tests: ``create_user`` then ``sign_in``; the
CSRF token ``sign_in`` returns goes into every POST form (``data={"csrf_token": token, ...}``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import httpx

from bot.pages.accounts import create_user as create_account
from tests.bot.conftest import Harness

PASSWORD = "a long test password"  # noqa: S105 - a test fixture
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def create_user(
    harness: Harness,
    name: str,
    role: str,
    departments: Sequence[str] = (),
    password: str = PASSWORD,
) -> int:
    """A new account (as ``ratebot user create`` makes it); its id."""
    with harness.rt.db.begin() as conn:
        return create_account(
            conn,
            name=name,
            role=role,
            password=password,
            departments=departments,
            now=harness.clock(),
        )


def csrf_token(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF_FIELD.search(html)
    assert found is not None, "no form with a csrf_token on this page"
    return found.group(1)


async def post_login(
    client: httpx.AsyncClient, name: str, password: str, **fields: str
) -> httpx.Response:
    """Fill in and send the sign-in form, as a browser would (the form's token included)."""
    form = await client.get("/login")
    assert form.status_code == 200, form.text
    data = {"csrf_token": csrf_token(form.text), "name": name, "password": password, **fields}
    return await client.post("/login", data=data)


async def sign_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> str:
    """Sign ``client`` in as ``name``; the CSRF token of its session's forms."""
    response = await post_login(client, name, password)
    assert response.status_code == 303, response.text
    account = await client.get("/account")
    assert account.status_code == 200, account.text
    return csrf_token(account.text)
