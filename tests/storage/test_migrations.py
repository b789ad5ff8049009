"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL,
and can be rolled back and re-applied."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import storage.models  # noqa: F401 - registers the tables on SQLModel.metadata
from storage.db import alembic_config, normalize_url, upgrade
from storage.models import UTCDateTime

TABLES = {t.name for t in SQLModel.metadata.sorted_tables}


def schema_differences(url: str) -> list[Any]:
    """What autogenerate would write to bring the live schema at ``url`` to the models."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def live_state(url: str) -> tuple[set[str], str | None]:
    """(the tables, the Alembic revision) of the database at ``url``."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            return tables, MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def check_round_trip(url: str) -> None:
    upgrade(url)
    tables, revision = live_state(url)
    assert tables >= TABLES and revision == head(url)
    assert schema_differences(url) == []

    command.downgrade(alembic_config(url), "base")
    tables, revision = live_state(url)
    assert tables - {"alembic_version"} == set() and revision is None

    upgrade(url)
    upgrade(url)  # idempotent at head
    assert live_state(url) == (tables | TABLES, head(url))
    assert schema_differences(url) == []


LOOK_AT = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)
BEFORE_RENAME = "0003"  # the last revision with ratings.expires_at (0004: next_look_at)


def check_next_look_survives(url: str) -> None:
    """An unfinished rating's next look, written before the column was renamed, is still there
    after the rename, and again after it is rolled back."""
    upgrade(url, BEFORE_RENAME)
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO ratings (conversation_id, conversation_key, evaluation_count,"
                    " channel, provider, locale, level, status, unsolicited, expires_at)"
                    " VALUES ('c-1', 'sms:h', 1, 'sms', 'twilio', 'en', 4, 'in_progress',"
                    " :unsolicited, :look_at)"
                ).bindparams(
                    sa.bindparam("look_at", type_=UTCDateTime),
                    sa.bindparam("unsolicited", type_=sa.Boolean),
                ),
                {"look_at": LOOK_AT, "unsolicited": False},
            )

        def stored(column: str) -> Any:
            with engine.connect() as connection:
                return connection.execute(
                    sa.text(f"SELECT {column} FROM ratings WHERE conversation_id = 'c-1'").columns(
                        sa.column(column, UTCDateTime)
                    )
                ).scalar_one()

        upgrade(url)
        assert stored("next_look_at") == LOOK_AT
        command.downgrade(alembic_config(url), BEFORE_RENAME)
        assert stored("expires_at") == LOOK_AT
    finally:
        engine.dispose()


# --- SQLite ----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/migrations.db"


def test_sqlite_schema_matches_models_and_round_trips(sqlite_url: str) -> None:
    check_round_trip(sqlite_url)


def test_sqlite_rename_of_the_next_look_keeps_the_data(sqlite_url: str) -> None:
    check_next_look_survives(sqlite_url)


def test_comparison_would_notice_a_drifted_schema(sqlite_url: str) -> None:
    """Guards the other tests: an empty diff means something only if a real drift shows up."""
    upgrade(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP INDEX ix_ratings_status_next_look"))
        connection.execute(sa.text("ALTER TABLE ratings ADD COLUMN stray INTEGER"))
    engine.dispose()
    kinds = {diff[0] for diff in schema_differences(sqlite_url) if isinstance(diff, tuple)}
    assert {"add_index", "remove_column"} <= kinds


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_shared_postgres_database_at_head_matches_models(postgres_url: str) -> None:
    # the session's database, migrated by the postgres_url fixture: only read here
    tables, revision = live_state(postgres_url)
    assert tables >= TABLES and revision == head(postgres_url)
    assert schema_differences(postgres_url) == []


@pytest.fixture
def own_postgres_url(postgres_url: str) -> Iterator[str]:
    """An empty database of this test's own, on the same server as ``postgres_url``."""
    server = sa.engine.make_url(normalize_url(postgres_url))
    name = f"ratebot_migrations_{os.getpid()}"
    admin = sa.create_engine(
        server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2}
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_schema_matches_models_and_round_trips(own_postgres_url: str) -> None:
    check_round_trip(own_postgres_url)


@pytest.mark.postgres
def test_postgres_rename_of_the_next_look_keeps_the_data(own_postgres_url: str) -> None:
    check_next_look_survives(own_postgres_url)
