"""A worker killed between the database commit and the reply, on every channel: the provider's
retry, taken by another worker, gets the same answer as a conversation nothing happened to, and
nothing is written twice.

The kill is made at the exact point: worker A's turn commits its transaction, and from that
instant A does nothing more — its state store refuses every call, as a process that is gone
would make none (its lock stays in Redis until it expires, as a dead process's does). Worker B,
on the same PostgreSQL and Redis, then gets the provider's retry of the same delivery.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from storage.base import ConversationStore
from tests.bot.conftest import FakeClock
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.wechat_api import FakeWeChat
from tests.faults.conftest import LOCK_EXPIRY, Citizen, Deployment, deployment
from tests.faults.servers import PostgresCluster, RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.faults]


class Killed(Exception):
    """Worker A is gone: nothing it does after the commit reaches anybody."""


def die_after_commit(store: ConversationStore, db: sa.Engine) -> list[bool]:
    """From A's next commit on, A's state store refuses everything."""
    dead: list[bool] = []

    def commit(_connection: Any) -> None:
        dead.append(True)

    async def refuse(*_args: Any, **_kwargs: Any) -> Any:
        if dead:
            raise Killed
        raise AssertionError("unreachable")

    original = store._write_and_unlock

    async def write_and_unlock(*args: Any, **kwargs: Any) -> Any:
        if dead:
            raise Killed
        return await original(*args, **kwargs)

    sa.event.listen(db, "commit", commit)
    store._write_and_unlock = write_and_unlock  # type: ignore[method-assign]
    return dead


def row_counts(d: Deployment) -> dict[str, int]:
    return {
        t: d.count(f"SELECT count(*) FROM {t}")
        for t in ("ratings", "rating_dimensions", "complaints", "tickets", "audit_log")
    }


async def converse(c: Citizen, texts: list[str]) -> list[str]:
    if c.channel == "voice":
        response, _ = await c.send("", "0")
        assert response.status_code == 200
    return [await c.say(t) for t in texts]


# A bad review, one answer per question: the level 1 (the rating is written), three dimensions,
# a problem, no details, no callback (the rating is finished and its ticket opened).
BAD_REVIEW = ["1", "1", "1", "1", "1", "0", "2"]
KILLS = [
    ("sms", 0),
    ("sms", 6),
    ("voice", 0),  # the phone's text questions are recordings; its last commit is a hang-up
    ("wechat", 0),
    ("wechat", 6),
    ("telegram", 0),
    ("telegram", 6),
]


@pytest.mark.parametrize(("channel", "kill_at"), KILLS)
async def test_the_retry_of_a_turn_whose_worker_died_after_the_commit_gets_the_same_answer(
    pg: PostgresCluster,
    redis_server: RedisServer,
    clock: FakeClock,
    fake_telegram: FakeTelegram,
    fake_wechat: FakeWeChat,
    channel: str,
    kill_at: int,
) -> None:
    servers = (pg, redis_server, clock, fake_telegram, fake_wechat)
    async with deployment(*servers) as a, deployment(*servers) as b:
        index = ["sms", "voice", "wechat", "telegram"].index(channel)
        control = b.citizens(1)[index]  # nothing happens to this one
        expected = await converse(control, BAD_REVIEW[: kill_at + 1])
        once = row_counts(b)
        assert once["ratings"] == 1 and once["tickets"] == (1 if kill_at == 6 else 0)

        victim_a = a.citizens(2)[index]
        await converse(victim_a, BAD_REVIEW[:kill_at])
        dead = die_after_commit(a.rt.store, a.rt.async_db.sync_engine)  # the turn's engine
        delivery = victim_a.next_delivery()
        with pytest.raises(Killed):
            await victim_a.send(BAD_REVIEW[kill_at], delivery)
        assert dead, "the turn did not commit"

        # The provider retries the same delivery; B takes it once A's lock has expired.
        await asyncio.sleep(LOCK_EXPIRY)
        victim_b = b.citizens(2)[index]
        if victim_a.call is not None:  # the same phone call, at the same turn
            assert victim_b.call is not None
            victim_b.call.sid, victim_b.call.action = victim_a.call.sid, victim_a.call.action
        response, answer = await victim_b.send(BAD_REVIEW[kill_at], delivery)
        assert response.status_code == 200, response.text
        assert answer == expected[-1]
        again, twice = await victim_b.send(BAD_REVIEW[kill_at], delivery)  # and once more
        assert again.status_code == 200
        assert twice == ("" if channel == "telegram" else expected[-1])  # Telegram: sent once

        # Everything the victim's conversation wrote, once: as much as the control's.
        assert row_counts(b) == {table: 2 * n for table, n in once.items()}
        with b.rt.db.connect() as db:
            rows = db.execute(sa.text("SELECT level, status FROM ratings ORDER BY id")).all()
        assert rows[0] == rows[1]
