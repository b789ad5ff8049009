"""Shared fixtures. Keep each area in its own section."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

# --- Services (Redis, PostgreSQL…): skip locally, fail on CI ------------------------------------


def require_service(name: str, check: Callable[[], object], *, where: str, hint: str) -> None:
    """Run ``check``; if it raises, skip the test with a clear message, or fail it on CI.

    A newcomer without the service gets a skip that says how to start it, not a traceback; CI
    (``CI`` set to anything non-empty, as GitHub Actions and GitLab do) must never go green by
    silently skipping the tests that talk to real services. Call it from a session-scoped
    fixture: pytest caches the skip/failure, so an absent service is probed only once.
    """
    try:
        check()
    except Exception as exc:
        message = f"{name} not reachable at {where} ({type(exc).__name__}: {exc}); {hint}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} [CI is set, so this fails instead of skipping]", pytrace=False)
        pytest.skip(message)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for test output and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --- Redis (storage) -----------------------------------------------------------------------------

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"  # db 15: away from a developer's data in 0


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis for tests (``RATEBOT_TEST_REDIS_URL``); skips/fails if unreachable."""
    import redis

    url = os.environ.get("RATEBOT_TEST_REDIS_URL") or DEFAULT_TEST_REDIS_URL

    def check() -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()

    require_service(
        "Redis",
        check,
        where=redact_url(url),
        hint=(
            "start it with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
            '--save "" --appendonly no` or set RATEBOT_TEST_REDIS_URL'
        ),
    )
    return url


# --- PostgreSQL (records) ------------------------------------------------------------------------

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on a real PostgreSQL (``RATEBOT_TEST_POSTGRES_URL`` names the server and
    the database to connect to first), migrated to head, dropped at the end; skips/fails if
    unreachable."""
    import sqlalchemy as sa

    from storage.db import normalize_url, upgrade

    admin_url = os.environ.get("RATEBOT_TEST_POSTGRES_URL") or DEFAULT_TEST_POSTGRES_URL
    admin = sa.create_engine(
        normalize_url(admin_url), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2}
    )

    def check() -> None:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    require_service(
        "PostgreSQL",
        check,
        where=redact_url(admin_url),
        hint=(
            "start it with `pg_ctlcluster --skip-systemctl-redirect "
            "$(ls /etc/postgresql) main start` or set RATEBOT_TEST_POSTGRES_URL"
        ),
    )
    name = f"ratebot_test_{os.getpid()}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = (
        sa.engine.make_url(normalize_url(admin_url))
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def truncate_all(url: str) -> None:
    """Empty every table of the ratebot schema (between tests sharing one database)."""
    import sqlalchemy as sa
    from sqlmodel import SQLModel

    import storage.models  # noqa: F401 - the tables

    engine = sa.create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
