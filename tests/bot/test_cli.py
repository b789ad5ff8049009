"""The ``ratebot`` command: API keys, migrations, the terminal chat, and configuration errors.

The installed console script runs as a subprocess where what matters is the real process (its
last line of stdout, its exit status, no traceback); the rest calls ``bot.cli.main`` in-process,
which is quicker. Both run in a temporary directory with every ``RATEBOT_*`` variable removed,
so neither a developer's environment nor a ``.env`` file leaks in.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from sqlmodel import Session as DbSession
from sqlmodel import SQLModel, select

from bot.app import create_app
from bot.cli import main
from storage.models import ApiKey, utcnow
from tests.bot.conftest import PUBLIC_URL, make_settings
from tests.fakes.twilio_api import FakeTwilio

RATEBOT = shutil.which("ratebot", path=str(Path(sys.executable).parent)) or "ratebot"
TABLES = {t.name for t in SQLModel.metadata.sorted_tables}


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEBOT_")}
    env.update(values)
    return env


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RATEBOT, *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=60
    )


def tables_and_revision(url: str) -> tuple[set[str], str | None]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            names = set(sa.inspect(connection).get_table_names())
            return names, MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


# --- apikey create ---------------------------------------------------------------------------


async def test_apikey_create_prints_key_last_stores_only_its_hash_and_key_works(
    tmp_path: Path, sqlite_url: str
) -> None:
    done = run(
        ["apikey", "create", "--role", "platform", "--name", "x"],
        tmp_path,
        RATEBOT_DATABASE_URL=sqlite_url,
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("rbk_") and " " not in key and len(key) > 40

    engine = sa.create_engine(sqlite_url)
    with DbSession(engine) as db:
        stored = db.exec(select(ApiKey)).all()
    with engine.connect() as connection:  # the key appears nowhere in the database file's rows
        dump = repr([tuple(row) for row in connection.execute(sa.text("SELECT * FROM api_keys"))])
    engine.dispose()
    assert len(stored) == 1
    assert stored[0].name == "x" and stored[0].role == "platform" and stored[0].revoked_at is None
    assert stored[0].key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in dump

    app = create_app(make_settings(sqlite_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            auth = {"Authorization": f"Bearer {key}"}
            known = await client.get("/api/v1/service-records/none-such", headers=auth)
            assert known.status_code == 404, known.text  # authenticated: the record is missing
            admin_only = await client.get("/api/v1/ratings", headers=auth)
            assert admin_only.status_code == 403  # the platform role, not admin
            wrong = await client.get(
                "/api/v1/service-records/none-such", headers={"Authorization": f"Bearer {key}x"}
            )
            assert wrong.status_code == 401


def test_a_department_key_names_its_departments(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["apikey", "create", "--role", "department", "--department", "市自然资源局",
          "--department", "市税务局", "--name", "desk"])  # fmt: skip
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("rbk_")
    engine = sa.create_engine(cli_env)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT department FROM api_key_departments")).all()
    engine.dispose()
    assert sorted(row[0] for row in rows) == ["市税务局", "市自然资源局"]
    for argv in (
        ["apikey", "create", "--role", "department"],
        ["apikey", "create", "--role", "supervisor", "--department", "市税务局"],
    ):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        assert "department key needs --department" in str(refused.value)


def test_apikey_create_with_unknown_role_is_a_usage_error(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["apikey", "create", "--role", "nonsense"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ratebot apikey create")
    assert "invalid choice: 'nonsense'" in err
    assert tables_and_revision(cli_env)[0] == set()  # refused before touching the database


# --- db upgrade ------------------------------------------------------------------------------


def test_db_upgrade_creates_the_tables_and_is_idempotent(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["db", "upgrade"])
    assert "database at revision head" in capsys.readouterr().out
    tables, revision = tables_and_revision(cli_env)
    assert tables >= TABLES and revision is not None

    main(["db", "upgrade"])
    assert tables_and_revision(cli_env) == (tables, revision)


# --- chat ------------------------------------------------------------------------------------


def chat(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], script: str, *args: str
) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    main(["chat", *args])
    return capsys.readouterr().out


def test_chat_in_english_runs_the_whole_survey(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = chat(monkeypatch, capsys, "5\n4\n5\n5\ngreat\n", "--record-no", "R1", "--locale", "en")
    banner, first_question = out.splitlines()[:2]
    assert banner.startswith("(ratebot chat: sms, en;")  # before the first question
    assert first_question == "How would you rate this service overall?"
    for prompt in (
        "staff's attitude",
        "efficiency of the service",
        "How convenient",
        "Reply 0 to skip",
    ):
        assert prompt in out
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in out), "Chinese text in an English chat"
    notes = [line.strip() for line in out.splitlines() if line.strip().startswith("·")]
    assert notes[-1] == (
        "· rating complete (finished): {'level': 5, 'dimensions': "
        "{'attitude': 4, 'efficiency': 5, 'convenience': 5}, 'comment': 'great'}"
    )


def test_chat_in_chinese_accepts_stars(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = chat(monkeypatch, capsys, "五星\n", "--record-no", "R1", "--locale", "zh_Hans_CN")
    assert "总体评价" in out and "服务态度" in out  # the opening question, then the next one
    assert "· level = 5" in out


def test_chat_shows_each_answers_trace_under_its_own_question(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: the trace of an answer was printed after the next question, as if it were
    that question's."""
    out = chat(monkeypatch, capsys, "5\n4\n", "--record-no", "R1", "--locale", "en")
    order = [
        out.index("rate this service overall"),
        out.index("· level = 5"),
        out.index("staff's attitude"),
        out.index("· dimensions.attitude = 4"),
        out.index("efficiency of the service"),
    ]
    assert order == sorted(order), out


# --- configuration errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RATEBOT_TIMEZONE": "Mars/Base"}, ["RATEBOT_TIMEZONE", "unknown time zone 'Mars/Base'"]),
        ({"RATEBOT_ENVIRONMENT": "production"}, ["RATEBOT_SECRET_KEY is a placeholder"]),
    ],
    ids=["unknown-timezone", "production-with-placeholder-secret"],
)
def test_bad_configuration_is_a_clear_message_not_a_traceback(
    tmp_path: Path, sqlite_url: str, env: dict[str, str], expected: list[str]
) -> None:
    done = run(["db", "upgrade"], tmp_path, RATEBOT_DATABASE_URL=sqlite_url, **env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("ratebot: bad configuration:")
    assert all(text in done.stderr for text in expected), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "cli.db").exists()  # nothing was done


def test_bad_configuration_message_does_not_echo_secrets(
    cli_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message names the variable and the reason, never a value (pydantic's own str() of
    the error echoes the input, secrets included)."""
    monkeypatch.setenv("RATEBOT_ENVIRONMENT", "production")
    monkeypatch.setenv("RATEBOT_SECRET_KEY", "too-short-but-secret")
    monkeypatch.setenv("RATEBOT_TWILIO_AUTH_TOKEN", "twilio-token-0123456789")
    with pytest.raises(SystemExit) as exited:
        main(["db", "upgrade"])
    message = str(exited.value.code)
    assert "RATEBOT_SECRET_KEY" in message
    for secret in ("too-short-but-secret", "twilio-token-0123456789"):
        pieces = {secret[i : i + 8] for i in range(len(secret) - 7)}  # a truncated echo leaks too
        assert not any(piece in message for piece in pieces), message


def test_chat_as_a_phone_call_speaks_first_and_takes_keys(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = chat(monkeypatch, capsys, "5\n*\n4\n", "--channel", "voice", "--locale", "zh_Hans_CN")
    banner, *first = out.splitlines()[:4]
    assert banner.startswith("(ratebot chat: voice, zh_Hans_CN;")
    assert first[0] == "🔊 您好，这里是政务服务“好差评”评价热线。"
    assert "总体评价" in first[1] and "非常满意请按5" in first[2]
    assert out.count("服务态度") == 2  # asked, then repeated by *
    assert "· level = 5" in out and "· dimensions.attitude = 4" in out


# --- call ------------------------------------------------------------------------------------


def test_call_places_a_call_about_a_case(
    cli_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_twilio: FakeTwilio,
) -> None:
    import asyncio

    from bot.web.keys import create_api_key
    from storage.db import upgrade
    from tests.samples import PHONE, service_record

    twilio = {
        "twilio_account_sid": fake_twilio.account_sid,
        "twilio_auth_token": fake_twilio.auth_token,
        "twilio_from": "+8653112345",
        "twilio_api_url": fake_twilio.url,  # type: ignore[attr-defined]
        "calling_hours": "",
        "secret_key": "test-secret-key-0123456789abcdef0123456789",  # make_settings' own
    }
    for name, value in twilio.items():
        monkeypatch.setenv(f"RATEBOT_{name.upper()}", value)
    monkeypatch.setenv("RATEBOT_PUBLIC_URL", PUBLIC_URL)
    upgrade(cli_env)

    async def report() -> None:
        app = create_app(make_settings(cli_env, **twilio))
        async with app.router.lifespan_context(app):
            with DbSession(app.state.runtime.db) as db:
                key = create_api_key(db, role="platform", name="t", now=utcnow())
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
                response = await client.post(
                    "/api/v1/service-records",
                    json=service_record("R-CALL"),
                    headers={"Authorization": f"Bearer {key}"},
                )
        assert response.status_code == 201, response.text

    asyncio.run(report())
    fake_twilio.requests.clear()  # the SMS invitation

    main(["call", "--record-no", "R-CALL"])
    assert capsys.readouterr().out.strip() == "call queued"
    [placed] = fake_twilio.calls
    assert placed["To"] == PHONE and "record_no=R-CALL" in placed["Url"]
    with pytest.raises(SystemExit) as refused:
        main(["call", "--record-no", "R-CALL"])
    assert "already under way" in str(refused.value)
    with pytest.raises(SystemExit) as unknown:
        main(["call", "--record-no", "NO-SUCH"])
    assert "no service record 'NO-SUCH'" in str(unknown.value)
