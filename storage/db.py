"""The database engine and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalize_url(url: str) -> str:
    """``postgresql://…`` (as operators write it) → the psycopg 3 driver that ratebot ships."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_db_engine(url: str) -> sa.Engine:
    """An engine for ``url``. SQLite gets WAL and a busy timeout, so the worker thread and the
    request threads of one process can share the file."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # No pre-ping: it costs a round trip per checkout on the webhook path; stale connections
    # are recycled instead, and a failed turn is retried by the provider.
    return sa.create_engine(
        url,
        pool_size=20,
        max_overflow=20,
        pool_recycle=1800,
        # JIT off: ratebot's big reads (a month's export, a day's recount) cost enough for the
        # planner to compile them with LLVM first, 2.1 s for an export query that then runs in
        # 1.5 s (bench/results.py); its small ones never gain from it.
        connect_args={"connect_timeout": 5, "options": "-c jit=off"},
    )


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
