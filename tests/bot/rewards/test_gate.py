"""The parking system's API, halls and the vouchers report, over HTTP as the gate and the operator
use them: every answer the issue names, exactly-once redemption under 50 concurrent requests,
idempotent retries, codes refused before lookup, and guessers slowed down."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bot import worker
from bot.app import create_app
from bot.cli import main
from bot.rewards.guesses import Guesses
from storage.memory import MemoryConversationStore
from storage.privacy import Privacy
from storage.redis import RedisConversationStore
from storage.tables import api_keys, vouchers
from tests.bot.conftest import FakeClock, Harness, make_settings, serving
from tests.bot.parking_support import (
    HALL,
    HALL_NAME,
    admin,
    earn_voucher,
    exit_body,
    parking_key,
    put_hall,
    recorded_waits,
    unknown_code,
)

RECORD = "370600-2026-000123"


@pytest.fixture
def voucher_queries(harness: Harness) -> Iterator[list[str]]:
    """The SQL statements that read or write the vouchers table while the test runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "vouchers" in statement:
            seen.append(statement)

    sa.event.listen(harness.rt.db, "before_cursor_execute", record)
    yield seen
    sa.event.remove(harness.rt.db, "before_cursor_execute", record)


# --- halls ----------------------------------------------------------------------------------


async def test_halls_are_created_updated_and_listed_by_admins(harness: Harness) -> None:
    created = await put_hall(harness, free_minutes=60, valid_hours=24)
    assert created["parking"] == {"enabled": True, "free_minutes": 60, "valid_hours": 24}
    body = {
        "name": "烟台市政务服务中心（新址）",
        "timezone": "Asia/Shanghai",
        "parking": {"enabled": False, "free_minutes": 0, "valid_hours": 24},
    }
    updated = await harness.client.put(f"/api/v1/halls/{HALL}", json=body, headers=admin(harness))
    assert updated.status_code == 200 and updated.json()["name"].endswith("（新址）")
    listed = await harness.client.get("/api/v1/halls", headers=admin(harness))
    assert [h["code"] for h in listed.json()["items"]] == [HALL]
    assert listed.json()["items"][0]["parking"]["enabled"] is False


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/api/v1/halls/YT 1", {}, "hall_code"),
        ("/api/v1/halls/YT-1", {"name": "x", "timezone": "Mars/Base", "parking": {}}, "timezone"),
        (
            "/api/v1/halls/YT-1",
            {
                "name": "x",
                "timezone": "Asia/Shanghai",
                "parking": {"enabled": True, "free_minutes": 0, "valid_hours": 24},
            },
            "free_minutes",
        ),
        (
            "/api/v1/halls/YT-1",
            {
                "name": "x",
                "timezone": "UTC",
                "parking": {"enabled": True, "free_minutes": 30, "valid_hours": 0},
            },
            "valid_hours",
        ),
    ],
)
async def test_bad_halls_are_refused_with_a_reason(
    harness: Harness, path: str, body: dict[str, Any], reason: str
) -> None:
    response = await harness.client.put(path, json=body, headers=admin(harness))
    assert response.status_code == 422 and reason in response.text


async def test_only_admins_configure_halls(harness: Harness) -> None:
    assert (await harness.client.get("/api/v1/halls")).status_code == 401
    for key in (harness.api_key("platform"), parking_key(harness)):
        assert (await harness.client.get("/api/v1/halls", headers=key)).status_code == 403


async def test_halls_are_loaded_from_a_file_at_start(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    halls = tmp_path / "halls.yaml"
    halls.write_text(
        "- code: YT-001\n  name: 烟台市政务服务中心\n  timezone: Asia/Shanghai\n"
        "  parking: {enabled: true, free_minutes: 120, valid_hours: 48}\n",
        encoding="utf-8",
    )
    app = create_app(make_settings(**backend, halls_file=halls))
    async with app.router.lifespan_context(app):
        with app.state.runtime.db.connect() as conn:
            row = conn.execute(sa.text("SELECT name, free_minutes FROM halls")).one()
    assert tuple(row) == ("烟台市政务服务中心", 120)


async def test_a_bad_halls_file_stops_the_start(backend: dict[str, Any], tmp_path: Path) -> None:
    halls = tmp_path / "halls.json"
    halls.write_text('[{"code": "YT-001", "name": "x"}]', encoding="utf-8")
    app = create_app(make_settings(**backend, halls_file=halls))
    with pytest.raises(ValueError, match="RATEBOT_HALLS_FILE"):
        async with app.router.lifespan_context(app):
            pass


# --- parking keys ---------------------------------------------------------------------------


def test_the_cli_creates_parking_keys_for_their_halls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("RATEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("RATEBOT_DATABASE_URL", url)
    argv = ["apikey", "create", "--role", "parking", "--name", "gate", "--hall", "YT-001"]
    main([*argv, "--hall", "YT-002"])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("rbk_")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        halls = conn.execute(sa.text("SELECT hall_code FROM api_key_halls ORDER BY 1")).all()
    engine.dispose()
    assert [h[0] for h in halls] == ["YT-001", "YT-002"]
    with pytest.raises(SystemExit, match="needs --hall"):
        main(["apikey", "create", "--role", "parking"])
    with pytest.raises(SystemExit, match="needs --hall"):
        main(["apikey", "create", "--role", "platform", "--hall", "YT-001"])


# --- checking a voucher ---------------------------------------------------------------------


async def test_the_gate_sees_state_hall_minutes_and_times_but_no_personal_data(
    harness: Harness,
) -> None:
    await put_hall(harness, free_minutes=120)
    code = await earn_voucher(harness, RECORD)
    response = await harness.client.get(
        f"/api/v1/parking/vouchers/{code.lower()}", headers=parking_key(harness)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "issued" and body["hall"] == {"code": HALL, "name": HALL_NAME}
    assert body["free_minutes"] == 120 and body["code"] == f"{code[:4]}-{code[4:8]}-{code[8:]}"
    assert body["issued_at"].startswith("2026-11-27T02:00")
    assert body["expires_at"].startswith("2026-11-29T02:00")
    for personal in ("1234", "138", RECORD, "citizen", "phone", "plate"):
        assert personal not in response.text


async def test_keys_are_good_only_for_their_own_halls(harness: Harness) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    path = f"/api/v1/parking/vouchers/{code}"
    other = parking_key(harness, "YT-999", name="another hall's gate")
    assert (await harness.client.get(path, headers=other)).status_code == 403
    redeem = await harness.client.post(f"{path}/redeem", json=exit_body(), headers=other)
    assert redeem.status_code == 403
    assert (await harness.client.get(path)).status_code == 401
    bogus = {"Authorization": "Bearer rbk_nope"}
    assert (await harness.client.get(path, headers=bogus)).status_code == 401
    platform = harness.api_key("platform")
    assert (await harness.client.get(path, headers=platform)).status_code == 403
    both = parking_key(harness, "YT-999", HALL, name="two halls' gate")
    assert (await harness.client.get(path, headers=both)).status_code == 200
    assert (await harness.client.get(path, headers=admin(harness))).status_code == 200


async def test_an_unknown_code_is_404(harness: Harness) -> None:
    response = await harness.client.get(
        f"/api/v1/parking/vouchers/{unknown_code()}", headers=parking_key(harness)
    )
    assert response.status_code == 404 and response.json()["detail"]


@pytest.mark.parametrize("typed", ["ABC", "0OIL0OIL0OI", "%E6%B5%8B", "X" * 300, "checksum"])
async def test_malformed_and_checksum_failing_codes_are_refused_before_any_lookup(
    harness: Harness, voucher_queries: list[str], typed: str
) -> None:
    if typed == "checksum":
        code = unknown_code()
        typed = code[:-1] + next(s for s in "23456789" if s != code[-1])
    key = parking_key(harness)
    for response in (
        await harness.client.get(f"/api/v1/parking/vouchers/{typed}", headers=key),
        await harness.client.post(
            f"/api/v1/parking/vouchers/{typed}/redeem", json=exit_body(), headers=key
        ),
    ):
        assert response.status_code == 422 and "malformed voucher code" in response.text
    assert voucher_queries == []


# --- redeeming ------------------------------------------------------------------------------


async def test_redeeming_grants_the_parked_minutes_up_to_the_voucher_once(
    harness: Harness,
) -> None:
    await put_hall(harness, free_minutes=120)
    code = await earn_voucher(harness, RECORD)
    key = parking_key(harness)
    path = f"/api/v1/parking/vouchers/{code}/redeem"
    first = await harness.client.post(path, json=exit_body(95), headers=key)
    assert first.status_code == 200, first.text
    assert first.json()["minutes_granted"] == 95 and first.json()["state"] == "redeemed"
    again = await harness.client.post(path, json=exit_body(95), headers=key)
    assert again.status_code == 409
    assert again.json()["state"] == "redeemed"
    assert again.json()["redeemed_at"] == first.json()["redeemed_at"]
    with harness.rt.db.connect() as conn:
        row = conn.execute(sa.select(vouchers)).one()
    assert row.lot == "P1" and row.minutes_granted == 95
    assert row.plate_hash and "12345" not in row.plate_hash  # a plate is personal: hashed


async def test_a_longer_stay_is_granted_the_voucher_s_minutes(harness: Harness) -> None:
    await put_hall(harness, free_minutes=120)
    code = await earn_voucher(harness, RECORD)
    response = await harness.client.post(
        f"/api/v1/parking/vouchers/{code}/redeem",
        json=exit_body(300),
        headers=parking_key(harness),
    )
    assert response.json()["minutes_granted"] == 120


async def test_fifty_concurrent_redemptions_let_exactly_one_through(harness: Harness) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    keys = [parking_key(harness, name=f"gate {i}") for i in range(5)]

    async def redeem(i: int) -> httpx.Response:
        return await harness.client.post(
            f"/api/v1/parking/vouchers/{code}/redeem",
            json=exit_body(30 + i),
            headers=keys[i % len(keys)],
        )

    responses = await asyncio.gather(*(redeem(i) for i in range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 49, statuses
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert {r.json()["redeemed_at"] for r in responses if r.status_code == 409} == {
        winner["redeemed_at"]
    }
    with harness.rt.db.connect() as conn:
        row = conn.execute(sa.select(vouchers)).one()
    assert row.state == "redeemed" and row.minutes_granted == winner["minutes_granted"]


async def test_a_retry_with_the_idempotency_key_gets_the_first_answer(harness: Harness) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    key = parking_key(harness)
    path = f"/api/v1/parking/vouchers/{code}/redeem"
    retry = {**key, "Idempotency-Key": "gate-P1-exit-0001"}
    first = await harness.client.post(path, json=exit_body(), headers=retry)
    harness.clock.advance(seconds=30)
    again = await harness.client.post(path, json=exit_body(), headers=retry)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    without = await harness.client.post(path, json=exit_body(), headers=key)
    assert without.status_code == 409
    other_body = await harness.client.post(path, json=exit_body(40), headers=retry)
    assert other_body.status_code == 422 and "Idempotency-Key" in other_body.text


async def test_concurrent_retries_with_one_idempotency_key_all_get_the_200(
    harness: Harness,
) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    retry = {**parking_key(harness), "Idempotency-Key": "exit-42"}
    responses = await asyncio.gather(
        *(
            harness.client.post(
                f"/api/v1/parking/vouchers/{code}/redeem", json=exit_body(), headers=retry
            )
            for _ in range(20)
        )
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1


async def test_an_expired_voucher_is_410_and_the_worker_marks_it(harness: Harness) -> None:
    await put_hall(harness, valid_hours=48)
    code = await earn_voucher(harness, RECORD)
    key = parking_key(harness)
    harness.clock.advance(hours=48)
    got = await harness.client.get(f"/api/v1/parking/vouchers/{code}", headers=key)
    assert got.json()["state"] == "expired"
    await worker.run_due(harness.rt)
    with harness.rt.db.connect() as conn:
        assert conn.execute(sa.select(vouchers.c.state)).scalar() == "expired"
    response = await harness.client.post(
        f"/api/v1/parking/vouchers/{code}/redeem", json=exit_body(), headers=key
    )
    assert response.status_code == 410
    assert response.json()["expires_at"].startswith("2026-11-29T02:00")


async def test_a_revoked_voucher_is_409_with_the_reason(harness: Harness) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    revoke = await harness.client.post(
        f"/api/v1/vouchers/{code}/revoke",
        json={"reason": "appeal upheld: fraudulent rating"},
        headers=admin(harness),
    )
    assert revoke.status_code == 200 and revoke.json()["state"] == "revoked"
    response = await harness.client.post(
        f"/api/v1/parking/vouchers/{code}/redeem", json=exit_body(), headers=parking_key(harness)
    )
    assert response.status_code == 409
    assert response.json()["reason"] == "appeal upheld: fraudulent rating"
    audit = await harness.client.get(
        "/api/v1/audit", params={"entity": "voucher"}, headers=admin(harness)
    )
    [entry] = audit.json()["items"]
    assert entry["action"] == "revoked" and entry["reason"] == "appeal upheld: fraudulent rating"
    assert entry["who"]["role"] == "admin" and entry["before"] == {"state": "issued"}


async def test_a_redeemed_voucher_cannot_be_revoked(harness: Harness) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    await harness.client.post(
        f"/api/v1/parking/vouchers/{code}/redeem", json=exit_body(), headers=parking_key(harness)
    )
    revoke = await harness.client.post(
        f"/api/v1/vouchers/{code}/revoke", json={"reason": "late"}, headers=admin(harness)
    )
    assert revoke.status_code == 409 and "redeemed" in revoke.json()["detail"]
    for key in (None, parking_key(harness)):
        denied = await harness.client.post(
            f"/api/v1/vouchers/{code}/revoke", json={"reason": "x"}, headers=key
        )
        assert denied.status_code == (401 if key is None else 403)


@pytest.mark.parametrize(
    "body",
    [
        {},
        exit_body(plate=""),
        exit_body(lot="P1\x00"),
        exit_body(entered_at="2026-11-27T09:00:00"),  # no time zone
        exit_body(exited_at="2026-11-27T08:00:00+08:00"),  # before it entered
        exit_body(gate="extra"),
        exit_body(entered_at="0001-01-01T00:00:00+05:00"),  # overflows UTC
        exit_body(exited_at="9999-12-31T23:59:59-05:00"),
        exit_body(entered_at="2001-01-01T00:00:00Z"),  # a 25-year stay
        [1, 2],
    ],
)
async def test_a_malformed_redemption_body_is_422(harness: Harness, body: Any) -> None:
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    response = await harness.client.post(
        f"/api/v1/parking/vouchers/{code}/redeem", json=body, headers=parking_key(harness)
    )
    assert response.status_code == 422 and response.json()["detail"]
    with harness.rt.db.connect() as conn:
        assert conn.execute(sa.select(vouchers.c.state)).scalar() == "issued"


# --- guessing -------------------------------------------------------------------------------


async def test_a_key_guessing_codes_is_slowed_down_and_logged(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    guesser = parking_key(harness, name="gate of a guesser")
    honest = parking_key(harness, name="honest gate")
    waits = recorded_waits(harness)
    guesses = [unknown_code() for _ in range(12)] + ["0OIL0OIL0OI"]  # malformed ones count too
    asked = []
    with caplog.at_level(logging.WARNING, logger="ratebot.parking"):
        for code in guesses:
            before = len(waits)
            response = await harness.client.get(f"/api/v1/parking/vouchers/{code}", headers=guesser)
            assert response.status_code == (422 if code == guesses[-1] else 404)
            asked.append(waits[before:])
        before = len(waits)
        response = await harness.client.get(
            f"/api/v1/parking/vouchers/{unknown_code()}", headers=honest
        )
        assert response.status_code == 404 and waits[before:] == []  # another key is not slowed
    # five misses are free; then one wait per request, doubling from 0.25 s up to 10 s
    assert asked == [[]] * 5 + [[0.25], [0.5], [1.0], [2.0], [4.0], [8.0], [10.0], [10.0]]
    warnings = [r.getMessage() for r in caplog.records if r.name == "ratebot.parking"]
    assert len(warnings) == len(guesses) - 4  # from the fifth miss on
    assert all("'gate of a guesser'" in w for w in warnings)
    assert not any(code in w for w in warnings for code in guesses)  # never the code in full


async def test_workers_sharing_the_state_store_share_a_guesser_s_count(
    harness: Harness, backend: dict[str, Any], clock: FakeClock
) -> None:
    """Two apps on one database and one state store, as two workers: on Redis a key's misses
    add up across them; the embedded store is each process's own."""
    async with serving(make_settings(**backend), clock) as other:
        guesser = parking_key(harness, name="gate of a guesser")
        waits = [recorded_waits(harness), recorded_waits(other)]
        for i in range(5):
            worker = (harness, other)[i % 2]
            response = await worker.client.get(
                f"/api/v1/parking/vouchers/{unknown_code()}", headers=guesser
            )
            assert response.status_code == 404
        for worker in (harness, other):
            await worker.client.get(f"/api/v1/parking/vouchers/{unknown_code()}", headers=guesser)
    # The last two requests: on Redis they follow 5 and 6 misses, in memory each worker's own 3
    # and 2.
    assert waits == ([[0.25], [0.5]] if backend["redis_url"] else [[], []])


async def test_the_gate_works_on_while_the_state_store_is_down(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The guess counter protects; it does not keep a car in the lot when Redis is down."""
    await put_hall(harness)
    code = await earn_voucher(harness, RECORD)
    assert harness.app is not None
    down = RedisConversationStore.from_url("redis://127.0.0.1:1/0")
    harness.app.state.guesses.store = down
    key = parking_key(harness)
    with caplog.at_level(logging.WARNING, logger="ratebot.parking"):
        missing = await harness.client.get(
            f"/api/v1/parking/vouchers/{unknown_code()}", headers=key
        )
        redeemed = await harness.client.post(
            f"/api/v1/parking/vouchers/{code}/redeem", json=exit_body(), headers=key
        )
    assert missing.status_code == 404
    assert redeemed.status_code == 200, redeemed.text
    assert any("guess counter unavailable" in r.getMessage() for r in caplog.records)
    await down.close()


async def test_a_slowed_client_s_requests_wait_one_at_a_time() -> None:
    guesses = Guesses(MemoryConversationStore(), Privacy("test-secret-key-" + "0" * 32))
    for _ in range(5):
        async with guesses.turn("ip:a") as guess:
            await guess.missed("address a", "ABC")
    waiting, most = 0, 0

    async def sleep(seconds: float) -> None:
        nonlocal waiting, most
        waiting += 1
        most = max(most, waiting)
        await asyncio.sleep(0.01)
        waiting -= 1

    async def look_up(who: str) -> None:
        async with guesses.turn(who):
            pass

    guesses.sleep = sleep
    await asyncio.gather(*(look_up("ip:a") for _ in range(3)), look_up("ip:b"))
    assert most == 1  # ip:b is not slowed; ip:a's three requests took turns


@pytest.mark.parametrize("backend", ["scaled"], indirect=True)  # workers share only Redis
async def test_two_workers_give_a_guesser_no_more_tries_than_one(
    harness: Harness, backend: dict[str, Any], clock: FakeClock
) -> None:
    """Regression: a guesser's parallel requests each read the count before any of them had
    missed, and each worker queued them on its own: N workers, N times the tries. Now a key's
    requests take turns across workers (the state store's lock), each reading the misses of the
    ones before it: 20 parallel guesses to two workers wait exactly as 20 guesses in a row to
    one."""
    async with serving(make_settings(**backend), clock) as other:
        guesser = parking_key(harness, name="gate of a guesser")
        waits = [recorded_waits(harness), recorded_waits(other)]
        answers = await asyncio.gather(
            *(
                (harness, other)[i % 2].client.get(
                    f"/api/v1/parking/vouchers/{unknown_code()}", headers=guesser
                )
                for i in range(20)
            )
        )
    assert [r.status_code for r in answers] == [404] * 20
    # the delays of 20 misses in a row, whichever worker waited them
    expected = [min(10.0, 0.25 * 2**n) for n in range(15)]
    assert sorted(waits[0] + waits[1]) == sorted(expected)


async def test_a_request_that_cannot_have_its_turn_is_429_without_a_look_up(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    guesser = parking_key(harness, name="gate of a guesser")
    assert harness.app is not None
    guesses: Guesses = harness.app.state.guesses
    guesses.store.lock_timeout = 0.05
    release = asyncio.Event()

    async def slow(seconds: float) -> None:
        await release.wait()

    for _ in range(5):
        await harness.client.get(f"/api/v1/parking/vouchers/{unknown_code()}", headers=guesser)
    guesses.sleep = slow
    waiting = asyncio.create_task(
        harness.client.get(f"/api/v1/parking/vouchers/{unknown_code()}", headers=guesser)
    )
    await asyncio.sleep(0.02)
    refused = await harness.client.get(
        f"/api/v1/parking/vouchers/{unknown_code()}", headers=guesser
    )
    release.set()
    assert (await waiting).status_code == 404
    assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
    assert "too many" in refused.json()["detail"]
    with harness.rt.db.connect() as conn:
        key_id = conn.execute(
            sa.select(api_keys.c.id).where(api_keys.c.name == "gate of a guesser")
        ).scalar_one()
    assert await guesses.count(f"key:{key_id}", miss=False) == 6  # the refused one not counted


# --- the report -----------------------------------------------------------------------------


async def test_the_report_counts_per_hall_and_local_day(harness: Harness) -> None:
    await put_hall(harness, valid_hours=48)
    codes = [await earn_voucher(harness, f"R-{i}", phone=f"+861380000000{i}") for i in range(1, 4)]
    key = parking_key(harness)
    await harness.client.post(
        f"/api/v1/parking/vouchers/{codes[0]}/redeem", json=exit_body(), headers=key
    )
    harness.clock.advance(days=1)
    await harness.client.post(
        f"/api/v1/vouchers/{codes[1]}/revoke", json={"reason": "fraud"}, headers=admin(harness)
    )
    harness.clock.advance(days=2)  # the third expired on the 29th, unused
    response = await harness.client.get(
        "/api/v1/reports/vouchers",
        params={"hall": HALL, "from": "2026-11-26", "to": "2026-11-30"},
        headers=admin(harness),
    )
    assert response.status_code == 200, response.text
    [hall] = response.json()["halls"]
    zero = {"issued": 0, "redeemed": 0, "expired": 0, "revoked": 0}
    assert hall["days"] == [
        {"date": "2026-11-27", **zero, "issued": 3, "redeemed": 1},
        {"date": "2026-11-28", **zero, "revoked": 1},
        {"date": "2026-11-29", **zero, "expired": 1},
    ]
    assert hall["totals"] == {"issued": 3, "redeemed": 1, "expired": 1, "revoked": 1}
    assert hall["redemption_rate"] == pytest.approx(1 / 3, abs=1e-4)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from": "2026-11-30", "to": "2026-11-01"}, 422),
        ({"from": "2025-01-01", "to": "2026-11-30"}, 422),
        ({"from": "yesterday"}, 422),
        ({"from": "0001-01-01", "to": "0001-01-02"}, 422),  # the calendar's edge
        ({"from": "9999-12-30", "to": "9999-12-31"}, 422),
        ({"hall": "NOPE"}, 404),
        ({"hall": "YT\x00001"}, 422),
    ],
)
async def test_bad_report_requests_are_refused(
    harness: Harness, params: dict[str, str], status: int
) -> None:
    response = await harness.client.get(
        "/api/v1/reports/vouchers", params=params, headers=admin(harness)
    )
    assert response.status_code == status and response.json()["detail"]


async def test_only_admins_read_the_report(harness: Harness) -> None:
    response = await harness.client.get("/api/v1/reports/vouchers", headers=parking_key(harness))
    assert response.status_code == 403
