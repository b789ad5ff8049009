"""Staff accounts: created, disabled and given new passwords through the functions and through
``ratebot user …``; only Argon2 hashes kept; every change an audit row; sessions end."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from bot.cli import main
from bot.pages.accounts import (
    AccountError,
    create_user,
    disable_user,
    find_user,
    password_matches,
    reset_password,
)
from bot.pages.sessions import current_session, open_session
from bot.web.audit import entries
from storage.db import create_db_engine, upgrade
from storage.tables import staff_sessions, user_departments, users

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
PASSWORD = "a long test password"  # noqa: S105
IDLE = NOW - NOW.replace(hour=0)  # 2 hours


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    url = f"sqlite:///{tmp_path}/accounts.db"
    upgrade(url)
    engine = create_db_engine(url)
    yield engine  # type: ignore[misc]
    engine.dispose()


def _create(engine: sa.Engine, name: str = "li.na", role: str = "admin", **kw: object) -> int:
    with engine.begin() as conn:
        return create_user(conn, name=name, role=role, password=PASSWORD, now=NOW, **kw)  # type: ignore[arg-type]


def test_create_keeps_only_an_argon2_hash_and_writes_an_audit_row(engine: sa.Engine) -> None:
    user_id = _create(engine, "wang.fang", "department", departments=["市税务局", "市税务局 "])
    with engine.connect() as conn:
        row = conn.execute(sa.select(users)).mappings().one()
        departments = conn.execute(sa.select(user_departments.c.department)).scalars().all()
        audit = entries(conn, entity="user")
    assert row["id"] == user_id and row["role"] == "department"
    assert row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in row["password_hash"]
    assert departments == ["市税务局"]  # stripped, once
    [entry] = audit
    assert entry["action"] == "create" and entry["entity_id"] == user_id
    assert entry["who"] == {"kind": "system", "id": None, "name": "ratebot", "role": "system"}
    assert entry["after"] == {
        "name": "wang.fang",
        "role": "department",
        "departments": ["市税务局"],
    }
    assert "password" not in str(entry).replace("password_hash", "")


@pytest.mark.parametrize(
    ("role", "departments", "password", "reason"),
    [
        ("department", [], PASSWORD, "needs --department"),
        ("supervisor", ["市税务局"], PASSWORD, "only a department account"),
        ("platform", [], PASSWORD, "role must be one of department, supervisor"),
        ("admin", [], "short", "at least 10 characters"),
        ("admin", [], "x" * 1025, "at most 1024 characters"),
    ],
)
def test_create_refuses_with_a_readable_reason(
    engine: sa.Engine, role: str, departments: list[str], password: str, reason: str
) -> None:
    with engine.begin() as conn, pytest.raises(AccountError, match=reason):
        create_user(conn, name="x", role=role, password=password, departments=departments, now=NOW)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() == 0


def test_a_name_is_taken_once(engine: sa.Engine) -> None:
    _create(engine, "li.na")
    with pytest.raises(AccountError, match="already an account called 'li.na'"):
        _create(engine, " li.na ")


def _sessions(engine: sa.Engine, user_id: int, count: int = 2) -> list[str]:
    with engine.begin() as conn:
        return [open_session(conn, user_id, NOW) for _ in range(count)]


def test_disable_ends_the_sessions_and_is_audited(engine: sa.Engine) -> None:
    user_id = _create(engine)
    tokens = _sessions(engine, user_id)
    with engine.begin() as conn:
        assert current_session(conn, tokens[0], NOW, IDLE) is not None
        disable_user(conn, name="li.na", now=NOW)
    with engine.begin() as conn:
        assert all(current_session(conn, t, NOW, IDLE) is None for t in tokens)
        ended = conn.execute(sa.select(staff_sessions.c.ended_at)).scalars().all()
        assert ended == [NOW, NOW]
        assert find_user(conn, "li.na")["disabled_at"] == NOW  # type: ignore[index]
        [_, entry] = entries(conn, entity="user")
    assert entry["action"] == "disable" and entry["after"] == {"sessions_ended": 2}
    with engine.begin() as conn, pytest.raises(AccountError, match="already disabled"):
        disable_user(conn, name="li.na", now=NOW)
    with engine.begin() as conn, pytest.raises(AccountError, match="no account called 'nobody'"):
        disable_user(conn, name="nobody", now=NOW)


def test_reset_password_changes_it_and_ends_the_sessions(engine: sa.Engine) -> None:
    user_id = _create(engine)
    tokens = _sessions(engine, user_id, 1)
    with engine.begin() as conn:
        reset_password(conn, name="li.na", password="another long password", now=NOW)
    with engine.begin() as conn:
        user = find_user(conn, "li.na")
        assert not password_matches(conn, user, PASSWORD)
        assert password_matches(conn, user, "another long password")
        assert current_session(conn, tokens[0], NOW, IDLE) is None
        assert [e["action"] for e in entries(conn, entity="user")] == ["create", "reset_password"]
    with engine.begin() as conn, pytest.raises(AccountError, match="at least 10"):
        reset_password(conn, name="li.na", password="short", now=NOW)


def test_a_hash_made_with_weaker_parameters_is_made_again_at_sign_in(engine: sa.Engine) -> None:
    _create(engine)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(sa.update(users).values(password_hash=weak))
    with engine.begin() as conn:
        assert password_matches(conn, find_user(conn, "li.na"), PASSWORD)
    with engine.connect() as conn:
        renewed = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert renewed != weak and renewed.startswith("$argon2id$")
    assert not PasswordHasher().check_needs_rehash(renewed)


def test_an_unknown_name_never_matches(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert not password_matches(conn, None, PASSWORD)


# --- ratebot user … ----------------------------------------------------------------------------


@pytest.fixture
def cli_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for name in list(os.environ):
        if name.startswith("RATEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("RATEBOT_DATABASE_URL", url)
    upgrade(url)
    return url


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def _account(url: str, name: str) -> sa.RowMapping | None:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return find_user(conn, name)
    finally:
        engine.dispose()


def test_cli_creates_disables_and_resets_with_password_stdin(
    cli_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, PASSWORD + "\n")
    main(["user", "create", "--role", "department", "--department", "市税务局",
          "--name", "zhao.lei", "--password-stdin"])  # fmt: skip
    assert "account 'zhao.lei' created (role department)" in capsys.readouterr().out
    engine = create_db_engine(cli_db)
    with engine.begin() as conn:
        user = find_user(conn, "zhao.lei")
        assert user is not None and password_matches(conn, user, PASSWORD)
        token = open_session(conn, user["id"], NOW)
    engine.dispose()

    _stdin(monkeypatch, "a brand new password\r\n")
    main(["user", "reset-password", "zhao.lei", "--password-stdin"])
    assert "password of 'zhao.lei' changed" in capsys.readouterr().out
    main(["user", "disable", "zhao.lei"])
    assert "disabled" in capsys.readouterr().out

    engine = create_db_engine(cli_db)
    with engine.begin() as conn:
        user = find_user(conn, "zhao.lei")
        assert user is not None and user["disabled_at"] is not None
        assert password_matches(conn, user, "a brand new password")
        assert current_session(conn, token, NOW, IDLE) is None
        actions = [(e["action"], e["who"]["kind"]) for e in entries(conn, entity="user")]
    engine.dispose()
    assert actions == [("create", "system"), ("reset_password", "system"), ("disable", "system")]


def test_cli_asks_twice_and_refuses_two_different_passwords(
    cli_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["first long password", "second long password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(SystemExit, match="the two passwords differ"):
        main(["user", "create", "--role", "admin", "--name", "root"])
    assert _account(cli_db, "root") is None

    monkeypatch.setattr("getpass.getpass", lambda prompt="": "the same long password")
    main(["user", "create", "--role", "admin", "--name", "root"])
    assert _account(cli_db, "root") is not None


@pytest.mark.parametrize(
    ("args", "stdin", "reason"),
    [
        (["create", "--role", "admin", "--name", "root"], "short\n", "at least 10 characters"),
        (["create", "--role", "department", "--name", "d"], PASSWORD, "needs --department"),
        (["disable", "nobody"], "", "no account called 'nobody'"),
        (["reset-password", "nobody"], PASSWORD, "no account called 'nobody'"),
    ],
)
def test_cli_refusals_name_the_reason(
    cli_db: str, monkeypatch: pytest.MonkeyPatch, args: list[str], stdin: str, reason: str
) -> None:
    _stdin(monkeypatch, stdin)
    if args[0] != "disable":
        args = [*args, "--password-stdin"]
    with pytest.raises(SystemExit, match=f"ratebot user {args[0]}: .*{reason}"):
        main(["user", *args])
