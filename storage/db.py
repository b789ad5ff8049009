"""The database engine and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalize_url(url: str) -> str:
    """``postgresql://…`` (as operators write it) → the psycopg 3 driver that ratebot ships."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


# No pre-ping: it costs a round trip per checkout on the webhook path; stale connections are
# recycled instead, and a failed turn is retried by the provider. JIT off: ratebot's big reads (a
# month's export, a day's recount) cost enough for the planner to compile them with LLVM first,
# 2.1 s for an export query that then runs in 1.5 s (bench/results.py); its small ones never gain
# from it.
POSTGRES_POOL: dict[str, Any] = {"pool_size": 20, "max_overflow": 20, "pool_recycle": 1800}
POSTGRES_CONNECT = {"connect_timeout": 5, "options": "-c jit=off"}
SQLITE_CONNECT = {"check_same_thread": False, "timeout": 30}


def create_db_engine(url: str) -> sa.Engine:
    """An engine for ``url``, for the worker, the API and the pages. SQLite gets WAL and a busy
    timeout, so the worker thread and the request threads of one process can share the file."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args=SQLITE_CONNECT)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, connect_args=POSTGRES_CONNECT, **POSTGRES_POOL)


def create_async_db_engine(url: str) -> AsyncEngine:
    """The same database for a conversation's turn, on the event loop: psycopg's async driver
    (aiosqlite on SQLite), so a webhook writes without a hop to the thread pool. The turn's
    functions stay plain ``sa.Connection`` code, run with ``AsyncConnection.run_sync``."""
    from sqlalchemy.ext.asyncio import create_async_engine  # 50 ms a small command need not pay

    url = normalize_url(url)
    if url.startswith("sqlite"):
        url = url.replace("sqlite", "sqlite+aiosqlite", 1)
        engine = create_async_engine(url, connect_args=SQLITE_CONNECT)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No overflow: at 50 citizens at once, an overflow connection opened for a turn and closed
    # after it cost more than waiting for a pooled one (a PostgreSQL backend starts per connect).
    return create_async_engine(
        url, connect_args=POSTGRES_CONNECT, **{**POSTGRES_POOL, "max_overflow": 0}
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations to ``url`` (``ratebot db upgrade``)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def newest_revision() -> str:
    """The newest migration's revision, read from the file names: ``0008_rollup_kind_index.py``
    is revision 0008 (tests/storage/test_revisions.py holds every file to it and to Alembic's own
    head). Knowing it loads no Alembic, which takes a quarter of a small command's start."""
    return max(path.name.split("_")[0] for path in (MIGRATIONS / "versions").glob("[!_]*.py"))


def upgrade_if_behind(url: str) -> bool:
    """Apply the migrations unless ``url`` is at the newest revision already (one query);
    whether it upgraded."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            current = (
                conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
                if sa.inspect(conn).has_table("alembic_version")
                else []
            )
    finally:
        engine.dispose()
    if current == [newest_revision()]:
        return False
    upgrade(url)
    return True
