"""Every JSON route of the API, fuzzed from its own OpenAPI schema (schemathesis on hypothesis):
whatever a client sends, the answer is never a 500 and always matches the schema the API
publishes (status code, content type, headers, body).

Each request carries the key of a role drawn with it (every role of ``bot.web.keys.ROLES``, or
no key at all), so the routes are reached as each of their callers reaches them. The app runs
on the embedded stores (SQLite, in-process state), seeded with a case, its rating, a bad
review's ticket, a hall and a voucher, so that the lookups also find something.

CI runs ``RATEBOT_FUZZ_EXAMPLES`` (default 25) examples per route; a longer run::

    RATEBOT_FUZZ_EXAMPLES=1000 .venv/bin/pytest tests/bot/web/test_fuzz_api.py -p no:randomly
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import _get_portal, _start_lifespan, shutdown_lifespans
from sqlmodel import Session as DbSession

from bot.app import create_app
from bot.web.keys import ROLES, create_api_key
from storage.db import upgrade
from tests.bot.conftest import FakeClock, make_settings
from tests.samples import service_record

# No 500, and every answer as the schema documents it; a request the schema refuses is refused.
# Not positive_data_acceptance: the schema cannot say every rule (a voucher code's check symbol,
# a period that has closed, from before to), so a schema-valid request may get a documented 4xx.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
EXAMPLES = int(os.environ.get("RATEBOT_FUZZ_EXAMPLES", "25"))
HALL = "YT-01"
DEPARTMENT = "市自然资源局"
NO_KEY = "none"
KEYS: dict[str, str] = {}  # role → key, made by the fixture


# The schema as the app publishes it: create_app builds no engine and opens no store, so this
# costs nothing at collection. (schemathesis' fixture-based loader does not run on pytest 9.)
# A body over its route's limit is refused too: 413 is as good a refusal as a 422.
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
schema = schemathesis.openapi.from_dict(
    create_app(make_settings("sqlite://")).openapi(),
    config=SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REFUSED}}}
    ),
).include(path_regex="^/api/")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app under test, its lifespan started by schemathesis on its own event loop (kept
    for the module, then shut down), with a key per role and seeded records."""
    directory: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{directory}/ratebot.db"
    upgrade(url)
    app = create_app(make_settings(url), clock=FakeClock())
    _start_lifespan(app)
    app.state.guesses.sleep = _no_wait  # the gate's guess counter would slow the fuzzer's key
    KEYS.update(_keys(app))
    _seed(app, KEYS)
    yield app
    shutdown_lifespans()
    KEYS.clear()


async def _no_wait(seconds: float) -> None:
    pass


def _keys(app: Any) -> dict[str, str]:
    """A key per role (a parking key for the seeded hall, a department key for its
    department)."""
    rt = app.state.runtime
    keys = {}
    with DbSession(rt.db) as db:
        for role in ROLES:
            keys[role] = create_api_key(
                db,
                role=role,
                name=f"fuzz {role}",
                now=rt.clock(),
                halls=[HALL] if role == "parking" else [],
                departments=[DEPARTMENT] if role == "department" else [],
            )
    return keys


def _seed(app: Any, keys: dict[str, str]) -> None:
    """A hall with parking, a case rated badly by SMS (a ticket), a case rated well (a voucher)."""
    from twilio.request_validator import RequestValidator

    from tests.bot.conftest import AUTH_TOKEN, PUBLIC_URL

    transport = httpx.ASGITransport(app=app)

    async def seed() -> None:
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            admin = {"Authorization": f"Bearer {keys['admin']}"}
            hall = {"name": "烟台市政务服务中心", "free_minutes": 120, "valid_hours": 72}
            await client.put(f"/api/v1/halls/{HALL}", json=hall, headers=admin)
            for n, (phone, answers) in enumerate(
                (("+8613800000001", "1 1 1 1"), ("+8613800000002", "5 5 5 5"))
            ):
                record = service_record(f"370200-2026-{n:04d}", phone) | {"hall": HALL}
                await client.post("/api/v1/service-records", json=record, headers=admin)
                form = {"From": phone, "To": "+8610690000", "Body": answers}
                for reply in (answers, "1", "无", "否"):
                    form |= {"Body": reply, "MessageSid": f"SM{n}{reply.encode().hex():0>30}"}
                    signature = RequestValidator(AUTH_TOKEN).compute_signature(
                        PUBLIC_URL + "/channels/sms", form
                    )
                    await client.post(
                        "/channels/sms", data=form, headers={"X-Twilio-Signature": signature}
                    )

    _get_portal().call(seed)  # on the loop the app's lifespan runs on


@pytest.mark.slow
@schema.given(role=st.sampled_from([*ROLES, "admin", NO_KEY]))
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_answers_every_request_by_its_own_schema(app: Any, case: Any, role: str) -> None:
    headers = {} if role == NO_KEY else {"Authorization": f"Bearer {KEYS[role]}"}
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)
