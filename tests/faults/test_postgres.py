"""PostgreSQL (the records) refuses connections or restarts: webhooks that must write answer 503
with Retry-After, the API 503 with the reason, ``/readyz`` names the database, the pool
recovers by itself within seconds of the database coming back, and the worker's jobs resume
without running twice."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from bot import worker
from tests.faults.conftest import Deployment, sms_citizen
from tests.faults.servers import PostgresCluster
from tests.faults.test_redis import ATTITUDE, EFFICIENCY

pytestmark = [pytest.mark.slow, pytest.mark.faults]

POOL_RECOVERY_LIMIT = 5.0  # seconds after the database is back


async def first_answer_after(
    app: Deployment, limit: float = POOL_RECOVERY_LIMIT
) -> tuple[float, int]:
    """Poll /readyz every 50 ms until it answers 200: (seconds, 503s on the way)."""
    start, refused = time.monotonic(), 0
    while True:
        response = await app.h.client.get("/readyz")
        if response.status_code == 200:
            return time.monotonic() - start, refused
        assert response.status_code == 503, response.text
        refused += 1
        assert time.monotonic() - start < limit, response.text
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fault", ["refused", "restart"])
async def test_writes_answer_503_the_api_says_why_and_the_pool_recovers_by_itself(
    app: Deployment, pg: PostgresCluster, fault: str
) -> None:
    admin = app.h.api_key("admin")  # made while the database is up
    citizens = app.citizens()
    for c in citizens:
        if c.channel == "voice":
            await c.send("", "0")
        assert ATTITUDE in await c.say("5")
    newcomer = sms_citizen(app.h, "+8613700099999")
    ratings_before = app.count("SELECT count(*) FROM ratings")

    pg.stop("fast")  # every connection of the pool is cut; new ones are refused
    if fault == "restart":
        pg.start()  # back at once: the pool still holds the dead connections
    else:
        # A turn that needs no write goes on (the session is in Redis)...
        for c in citizens:
            assert EFFICIENCY in await c.say("4"), c.channel
        # ...a turn that must write (a new conversation's level) is refused, to be retried.
        delivery = newcomer.next_delivery()
        response, _ = await newcomer.send("5", delivery)
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        api = await app.h.client.get("/api/v1/ratings", headers=admin)
        assert api.status_code == 503 and api.json() == {"detail": "database unavailable"}
        assert api.headers["Retry-After"] == "5"
        ready = await app.h.client.get("/readyz")
        assert ready.status_code == 503
        assert set(ready.json()["problems"]) == {"database"}  # Redis is fine
        pg.start()
        seconds, _ = await first_answer_after(app)
        assert seconds < POOL_RECOVERY_LIMIT
        response, answer = await newcomer.send("5", delivery)  # the provider's retry
        assert response.status_code == 200 and answer is not None and ATTITUDE in answer

    # Stale connections are found out by the first use and the whole pool is renewed: after at
    # most one 503 per worker, every request is answered.
    statuses = [
        (await app.h.client.get("/api/v1/ratings", headers=admin)).status_code for _ in range(25)
    ]
    assert statuses.count(503) <= 1 and statuses[-24:] == [200] * 24, statuses
    assert app.count("SELECT count(*) FROM ratings") == ratings_before + (fault == "refused")


async def test_the_worker_s_jobs_resume_after_the_database_is_back_without_running_twice(
    pg: PostgresCluster, app: Deployment
) -> None:
    # Reported at night: the invitations wait for the morning (quiet hours).
    app.rt.settings.quiet_hours = "21:00-08:00"
    app.h.clock.now = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    for n in range(6):
        response = await app.h.report(f"370200-2026-W{n:03d}", phone=f"+861360000{n:04d}")
        assert response.status_code == 201, response.text
        assert response.json()["invitations"][0]["status"] == "scheduled"
    app.h.clock.advance(hours=10)  # 08:00: all six are due

    pg.stop("fast")
    with pytest.raises(sa.exc.OperationalError):
        await worker.run_due(app.rt)  # a tick while the database is away fails, and is logged

    # The database comes back in the middle of the next tick's work, and goes again.
    pg.start()
    commits = 0

    def stop_midway(_connection: object) -> None:
        nonlocal commits
        commits += 1
        if commits == 4:
            pg.stop("immediate")

    sa.event.listen(app.rt.db, "commit", stop_midway)
    try:
        with pytest.raises(sa.exc.OperationalError):
            await worker.run_due(app.rt)
    finally:
        sa.event.remove(app.rt.db, "commit", stop_midway)
    pg.start()
    started = time.monotonic()
    for _ in range(3):  # the pool's dead connections cost at most a tick
        try:
            await asyncio.gather(*(worker.run_due(app.rt) for _ in range(3)))
            break
        except sa.exc.OperationalError:
            continue
    recovered = time.monotonic() - started
    app.h.clock.advance(minutes=11)  # a send interrupted by the stop is now settled
    await asyncio.gather(*(worker.run_due(app.rt) for _ in range(3)))
    assert recovered < POOL_RECOVERY_LIMIT

    with app.rt.db.connect() as db:
        sent = dict(
            db.execute(
                sa.text(
                    "SELECT i.id, count(m.id) FROM invitations i LEFT JOIN outbound_messages m "
                    "ON m.invitation_id = i.id AND m.purpose = 'invitation' GROUP BY i.id"
                )
            ).all()
        )
        statuses = db.execute(sa.text("SELECT status FROM invitations")).scalars().all()
    assert len(sent) == 6 and all(n <= 1 for n in sent.values()), sent  # never twice
    # Each invitation ended sent, or failed as interrupted (sent or not, unknown: not resent).
    assert set(statuses) <= {"sent", "failed"} and statuses.count("sent") >= 5, statuses

    # The reminders are due five hours later; the database restarts just before that tick.
    app.h.clock.advance(hours=5)
    pg.stop("fast")
    pg.start()
    for _ in range(3):
        try:
            await asyncio.gather(*(worker.run_due(app.rt) for _ in range(3)))
            break
        except sa.exc.OperationalError:
            continue
    with app.rt.db.connect() as db:
        reminders = db.execute(
            sa.text(
                "SELECT invitation_id, count(*) FROM outbound_messages WHERE purpose = 'reminder' "
                "GROUP BY invitation_id"
            )
        ).all()
    assert len(reminders) == statuses.count("sent") and all(n == 1 for _, n in reminders)
