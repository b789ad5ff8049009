"""``ratebot apikey list`` and ``revoke``: what a key may do, never the key; a revoked key stops
working at once; creating and revoking are audit rows."""

from __future__ import annotations

import re

import httpx
import pytest
import sqlalchemy as sa

from bot.app import create_app
from bot.cli import _width, main
from storage.tables import audit_log
from tests.bot.conftest import PUBLIC_URL, make_settings

pytestmark = pytest.mark.usefixtures("cli_env")


def created(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    main(["apikey", "create", *argv])
    return capsys.readouterr().out.strip().splitlines()[-1]


def audit_rows(url: str) -> list[tuple[str, int, str | None, dict[str, object] | None]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.entity_id, audit_log.c.actor_kind)
            .where(audit_log.c.entity == "api_key")
            .order_by(audit_log.c.id)
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_list_shows_what_each_key_may_do_and_never_the_key(
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["apikey", "list"])
    assert capsys.readouterr().out.startswith("no API keys; create one: ratebot apikey create")
    keys = [
        created(capsys, "--role", "platform", "--name", "queue"),
        created(
            capsys, "--role", "parking", "--hall", "YT-01", "--hall", "YT-02", "--name", "gate"
        ),
        created(capsys, "--role", "department", "--department", "市税务局", "--name", "desk"),
    ]
    main(["apikey", "list"])
    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert header.split() == ["ID", "NAME", "ROLE", "HALLS/DEPARTMENTS", "CREATED", "REVOKED"]
    assert [line.split()[:4] for line in lines] == [
        ["1", "queue", "platform", "-"],
        ["2", "gate", "parking", "YT-01,"],
        ["3", "desk", "department", "市税务局"],
    ]
    assert "YT-01, YT-02" in lines[1] and all(line.rstrip().endswith("-") for line in lines)
    created_at = [_width(line[: re.search(r"\d{4}-\d\d-\d\d", line).start()]) for line in lines]  # type: ignore[union-attr]
    assert len(set(created_at)) == 1, out  # one column, whatever the width of 市税务局
    assert not any(key in out or key.removeprefix("rbk_")[:12] in out for key in keys)


async def test_revoke_by_name_stops_the_key_at_once_and_is_audited(
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = created(capsys, "--role", "platform", "--name", "queue")
    main(["apikey", "revoke", "queue"])
    assert capsys.readouterr().out.strip() == (
        "API key 'queue' (id 1, role platform) revoked; it no longer works"
    )
    main(["apikey", "list"])
    assert capsys.readouterr().out.splitlines()[1].rstrip().endswith("UTC")  # its revoked time
    assert audit_rows(cli_env) == [("create", 1, "system"), ("revoke", 1, "system")]

    app = create_app(make_settings(cli_env))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            response = await client.get(
                "/api/v1/service-records/none", headers={"Authorization": f"Bearer {key}"}
            )
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_revoke_refuses_what_it_cannot_tell_or_find(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("same", "same", "gone"):
        created(capsys, "--role", "platform", "--name", name)
    main(["apikey", "revoke", "3"])
    for which, refusal in (
        ("same", "2 keys are named 'same' (ids 1, 2): give the id"),
        ("nobody", "no API key named 'nobody'"),
        ("9", "no API key with id 9"),
        ("3", "the API key 'gone' (id 3) was revoked already"),
        ("gone", "the API key 'gone' (id 3) was revoked already"),
    ):
        with pytest.raises(SystemExit) as refused:
            main(["apikey", "revoke", which])
        assert str(refused.value.code) == f"ratebot apikey revoke: {refusal}"
    assert [row[0] for row in audit_rows(cli_env)].count("revoke") == 1  # nothing more changed


def test_revoke_by_id_picks_one_of_two_of_a_name(
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    created(capsys, "--role", "platform", "--name", "same")
    created(capsys, "--role", "platform", "--name", "same")
    main(["apikey", "revoke", "2"])
    main(["apikey", "revoke", "same"])  # now one of that name is left
    assert capsys.readouterr().out.count("revoked; it no longer works") == 2
