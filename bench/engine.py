"""The pure dialog engine's speed: ``dialogs.engine.resume`` over whole conversations, no I/O.

    .venv/bin/python -m bench.engine [--seconds 5] [--repeat 3]

Replays the same conversations as ``bench/webhook.py`` (four good ratings ``5, 4, 5, 5, 很好``
for every bad review ``1 2 2 1, 13, details, 2``), each opened as an unsolicited conversation
(no session, the first message is a level), in a loop on the shipped default survey. Prints
steps (``resume`` calls) per second and microseconds per step, best of ``--repeat`` runs; then
the same with what the web app adds around each step without I/O (session from JSON, reply
rendered as SMS TwiML, session back to JSON), for scale.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count

from dialogs import engine
from dialogs.events import InboundEvent
from dialogs.session import Session
from dialogs.survey import default_survey

GOOD = ("5", "4", "5", "5", "很好")
BAD = ("1 2 2 1", "13", "材料被要求补交了三次", "2")
MIX = (GOOD, GOOD, GOOD, GOOD, BAD)  # as bench/webhook.py: every 5th conversation is bad
LOCALE = "zh_Hans_CN"
NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def check_conversations() -> None:
    """Each script really is one complete rating (so the loop measures what it claims)."""
    survey = default_survey()
    for script in (GOOD, BAD):
        session = None
        for text in script:
            event = InboundEvent(channel="sms", sender="bench", text=text, locale=LOCALE)
            sprint = engine.resume(survey, session, event, now=NOW, new_session_id="check")
            session = sprint.session
        assert session is not None and session.step is None and session.outcome == "complete", (
            script,
            session,
        )


def pure(seconds: float) -> tuple[int, float]:
    """(steps, elapsed): resume() only."""
    survey = default_survey()
    events = [
        [InboundEvent(channel="sms", sender="bench", text=t, locale=LOCALE) for t in script]
        for script in MIX
    ]
    ids = count()
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for script in events:
            session: Session | None = None
            for event in script:
                session = engine.resume(
                    survey, session, event, now=NOW, new_session_id=str(next(ids))
                ).session
            steps += len(script)
    return steps, time.perf_counter() - start


def with_app_work(seconds: float) -> tuple[int, float]:
    """(steps, elapsed): resume() plus the I/O-free work the web app does around it."""
    from channels.sms import render_text, twiml

    survey = default_survey()
    events = [
        [InboundEvent(channel="sms", sender="bench", text=t, locale=LOCALE) for t in script]
        for script in MIX
    ]
    ids = count()
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for script in events:
            stored: str | None = None
            for event in script:
                before = Session.model_validate(json.loads(stored)) if stored else None
                sprint = engine.resume(
                    survey, before, event, now=NOW, new_session_id=str(next(ids))
                )
                after = sprint.session
                twiml(render_text(sprint.events, (after or before or sprint.session).locale))  # type: ignore[union-attr]
                stored = (
                    json.dumps(after.model_dump(mode="json"), ensure_ascii=False) if after else None
                )
            steps += len(script)
    return steps, time.perf_counter() - start


def best(run: Callable[[float], tuple[int, float]], seconds: float, repeat: int) -> float:
    return max(steps / elapsed for steps, elapsed in (run(seconds) for _ in range(repeat)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per run (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts (default 3)")
    args = parser.parse_args()
    check_conversations()
    pure(0.5)  # warm up: catalogs loaded, caches filled
    rate = best(pure, args.seconds, args.repeat)
    print(f"engine.resume:                        {rate:10,.0f} steps/s  {1e6 / rate:7.1f} µs/step")
    rate = best(with_app_work, args.seconds, args.repeat)
    print(f"+ session JSON, render_text, TwiML:  {rate:10,.0f} steps/s  {1e6 / rate:7.1f} µs/step")


if __name__ == "__main__":
    main()
