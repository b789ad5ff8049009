"""A conversation's turn reads and writes the records on the event loop (the async engine), with
no hop to the thread pool: every statement of a whole rating — its first level, its end, the
voucher, the opt-out — runs on the loop's own thread, and none goes through the thread pool's
engine."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from tests.bot.conftest import Harness


def watch(engine: sa.Engine) -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []

    def executed(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append((threading.get_ident(), statement.split()[0].upper()))

    sa.event.listen(engine, "before_cursor_execute", executed)
    return seen


async def test_a_whole_rating_is_written_on_the_loop_thread(harness: Harness) -> None:
    on_loop = watch(harness.rt.async_db.sync_engine)
    in_pool = watch(harness.rt.db)
    for answer in ["5", "5", "4", "5", "very quick"]:
        response = await harness.sms(answer)
        assert response.status_code == 200, response.text
    assert await harness.reply_text("STOP")
    loop_thread = threading.get_ident()
    assert {thread for thread, _ in on_loop} == {loop_thread}
    assert "INSERT" in {verb for _, verb in on_loop}  # the rating (upserts), the opt-out
    assert in_pool == []
    with harness.rt.db.connect() as db:
        rating = db.execute(sa.text("SELECT level, status, comment FROM ratings")).one()
    assert tuple(rating) == (5, "complete", "very quick")
